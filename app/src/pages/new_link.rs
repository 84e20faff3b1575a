//! `/set-password/new-link`: "send me a new link" for an expired or used
//! set-password link. The answer is the same for every address (the server does
//! not say whether it has an account); the email is the proof.

use leptos::prelude::*;
use leptos_meta::Title;
use proto::auth::v1 as pb;
use proto::auth::v1::auth_service_client::AuthServiceClient;

use super::{Field, FormError, first_invalid, focus_first_error, form_value, query_param, submitted, submitted_form};

/// The form's fields.
const FIELDS: &[&str] = &["email"];

/// What the page says once a request was taken, whatever the address (the
/// server's own words come back over gRPC; this is the no-JavaScript path's copy
/// of them, shown after the form's redirect).
pub const SENT: &str =
    "If this address belongs to an account, we have sent it a new link. It works once and expires in 24 hours.";

/// The page.
#[component]
pub fn NewLinkPage() -> impl IntoView {
    let sent = submitted("new-link");
    let errors = RwSignal::new(sent.errors.clone());
    let (busy, set_busy) = signal(false);
    let done_url = query_param("sent");
    let done = RwSignal::new(None::<String>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let email = form_value(&form, "email");
        set_busy.set(true);
        crate::grpc::spawn(async move {
            let mut auth = AuthServiceClient::new(crate::grpc::channel());
            match auth.request_password_link(pb::RequestPasswordLinkRequest { email }).await {
                Ok(resp) => {
                    errors.set(Vec::new());
                    done.set(Some(resp.into_inner().message));
                    set_busy.set(false);
                }
                Err(status) => {
                    errors.set(crate::grpc::field_errors(&status));
                    set_busy.set(false);
                    focus_first_error(form);
                }
            }
        });
    };
    let message = move || done.get().or_else(|| (!done_url.get().is_empty()).then(|| SENT.to_owned()));
    view! {
        <Title text="Get a new link"/>
        <section class="card narrow">
            <h1>"Get a new link"</h1>
            <p>"Set-password links work once and expire after 24 hours. Enter your email and we will send a new one."</p>
            {move || message().map(|m| view! { <p class="notice" role="status" data-testid="link-sent">{m}</p> })}
            <form method="post" action="/set-password/new-link" data-form="new-link" on:submit=on_submit novalidate>
                <Field name="email" label="Email" kind="email" autocomplete="username" errors value=sent.value("email")
                    autofocus=first_invalid(&sent.errors, FIELDS) == Some("email")/>
                <FormError errors fields=FIELDS
                    autofocus=!sent.errors.is_empty() && first_invalid(&sent.errors, FIELDS).is_none()/>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Send me a new link"</button>
            </form>
            <p class="muted"><a href="/login">"Back to sign in"</a></p>
        </section>
    }
}
