//! `/admin/mail` and `/admin/mail/:id`: the built-in mailbox. With the default
//! file transport (no `SMTP_URL`) the product writes each email as an `.eml`
//! file; these pages list them and show each one as a mail client would (the
//! transfer encoding undone, links clickable), so a newcomer never opens a raw
//! `.eml` file. With an SMTP server configured the page says where mail goes.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use proto::mail::v1 as pb;
use proto::mail::v1::mailbox_service_client::MailboxServiceClient;

use super::SuperAdminOnly;
use crate::pages::hangfire::time;

/// `/admin/mail`.
#[component]
pub fn MailboxPage() -> impl IntoView {
    view! { <Title text="Mailbox"/><SuperAdminOnly><Mailbox/></SuperAdminOnly> }
}

#[component]
fn Mailbox() -> impl IntoView {
    let list = crate::grpc::resource(
        || (),
        |ch, ()| async move { MailboxServiceClient::new(ch).list_mail(pb::ListMailRequest {}).await },
    );
    view! {
        <section class="card">
            <h1>"Mailbox"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <p class="notice" role="status" data-testid="mail-elsewhere">{e.message}</p> }.into_any(),
                        Ok(r) => view! {
                            <p class="muted">"Emails the product wrote to " <code>{r.folder.clone()}</code> ", newest first."</p>
                            {r.messages.is_empty().then(|| view! { <p class="muted">"No emails yet."</p> })}
                            <table class="grid cards" aria-label="Emails">
                                <thead><tr><th>"Subject"</th><th>"To"</th><th>"Written (UTC)"</th></tr></thead>
                                <tbody>
                                    {r.messages.into_iter().map(|m| view! {
                                        <tr data-testid="mail-row">
                                            <td data-label="Subject"><a href=format!("/admin/mail/{}", m.id)>{m.subject.clone()}</a></td>
                                            <td data-label="To">{m.to.clone()}</td>
                                            <td data-label="Written" class="muted">{time(m.written_at_unix_ms)}</td>
                                        </tr>
                                    }).collect::<Vec<_>>()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// `/admin/mail/:id`.
#[component]
pub fn MailPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    view! { <SuperAdminOnly>{move || view! { <Mail id=id.get()/> }}</SuperAdminOnly> }
}

#[component]
fn Mail(id: String) -> impl IntoView {
    let mail = crate::grpc::resource(
        move || id.clone(),
        |ch, id| async move { MailboxServiceClient::new(ch).get_mail(pb::GetMailRequest { id }).await },
    );
    view! {
        <Suspense fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match mail.await {
                    Err(e) if e.is_not_found() => view! { <super::NotFound/> }.into_any(),
                    Err(e) => view! { <section class="card"><p class="error" role="alert">{e.message}</p></section> }.into_any(),
                    Ok(m) => {
                        let s = m.summary.unwrap_or_default();
                        view! {
                            <Title text=s.subject.clone()/>
                            <section class="card">
                                <p><a href="/admin/mail">"← Mailbox"</a></p>
                                <h1 data-testid="mail-subject">{s.subject.clone()}</h1>
                                <dl class="pairs">
                                    <dt>"From"</dt><dd>{s.from.clone()}</dd>
                                    <dt>"To"</dt><dd>{s.to.clone()}</dd>
                                    <dt>"Written (UTC)"</dt><dd>{time(s.written_at_unix_ms)}</dd>
                                </dl>
                                <div class="mail-body" data-testid="mail-body">{linkify(&m.text)}</div>
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// The text with each `http(s)://` URL made a link; everything stays text (no
/// HTML from the email is ever interpreted). Rendered as one kind of view per
/// piece (a span, then maybe a link), so server and browser build the same
/// nodes and hydration lines up.
fn linkify(text: &str) -> impl IntoView + use<> {
    pieces(text)
        .into_iter()
        .map(|(before, url)| {
            view! {
                <span>{before}</span>
                {(!url.is_empty()).then(|| view! { <a href=url.clone()>{url.clone()}</a> })}
            }
        })
        .collect::<Vec<_>>()
}

/// `(text, url)` pairs: text up to a link, then the link (empty at the end).
fn pieces(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|p| rest.find(p)).min() {
        let (before, from) = rest.split_at(at);
        let end = from.find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>').unwrap_or(from.len());
        // Trailing punctuation ends the sentence, not the link.
        let url = from[..end].trim_end_matches(['.', ',', ')', ';']);
        out.push((before.to_owned(), url.to_owned()));
        rest = &from[url.len()..];
    }
    out.push((rest.to_owned(), String::new()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_found_and_text_kept() {
        let p = super::pieces("Go to http://a.test/x?t=1.\nThen https://b.test");
        assert_eq!(p[0], ("Go to ".to_owned(), "http://a.test/x?t=1".to_owned()));
        assert_eq!(p[1], (".\nThen ".to_owned(), "https://b.test".to_owned()));
        assert_eq!(p[2], (String::new(), String::new()));
    }
}
