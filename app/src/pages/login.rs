//! `/login` and `/set-password` (its "send me a new link" is `super::new_link`).

use leptos::prelude::*;
use leptos_meta::Title;
use proto::auth::v1 as pb;
use proto::auth::v1::auth_service_client::AuthServiceClient;

use super::{Field, FormError, first_invalid, focus_first_error, form_value, query_param, submitted, submitted_form};
use crate::session::use_session;

/// Where a signed-in user of `role` starts.
pub fn home_of(role: i32) -> &'static str {
    if role == pb::Role::SuperAdmin as i32 { "/admin/tenants" } else { "/app" }
}

/// `next` if it is a path on this site, else `fallback`: no open redirect.
///
/// Checked the way a browser will read it, not by prefix alone: anything but
/// visible ASCII is refused outright (browsers drop tab and newline, so
/// `/%09/evil.example` would become `//evil.example`; the paths we link to are
/// percent-encoded ASCII anyway), and what is left is
/// resolved against a placeholder origin with the WHATWG URL parser (which
/// treats `\` as `/`, as browsers do); only a result on that same origin is
/// kept, re-serialized as path, query and fragment.
pub fn safe_next(next: &str, fallback: &str) -> String {
    const BASE: &str = "http://next.invalid/";
    let plausible = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    let resolved = plausible
        .then(|| url::Url::parse(BASE).and_then(|b| b.join(next)).ok())
        .flatten()
        .filter(|u| u.scheme() == "http" && u.host_str() == Some("next.invalid") && u.port().is_none());
    match resolved {
        Some(u) => u.as_str().trim_start_matches("http://next.invalid").to_owned(),
        None => fallback.to_owned(),
    }
}

/// The login form's fields, in order.
const LOGIN_FIELDS: &[&str] = &["email", "password"];

/// `/login`: email and password; then back where the visitor was going.
#[component]
pub fn LoginPage() -> impl IntoView {
    let sent = submitted("login");
    let errors = RwSignal::new(sent.errors.clone());
    let (busy, set_busy) = signal(false);
    let already = use_session();
    let next = {
        let (from_url, from_form) = (query_param("next"), sent.value("next"));
        Memo::new(move |_| if from_form.is_empty() { from_url.get() } else { from_form.clone() })
    };
    let password_set = query_param("password_set");
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let (email, password) = (form_value(&form, "email"), form_value(&form, "password"));
        let next = next.get_untracked();
        set_busy.set(true);
        crate::grpc::spawn(async move {
            let mut auth = AuthServiceClient::new(crate::grpc::channel());
            match auth.login(pb::LoginRequest { email, password }).await {
                Ok(resp) => {
                    let role = resp.into_inner().user.map(|u| u.role).unwrap_or_default();
                    crate::grpc::go(&safe_next(&next, home_of(role)));
                }
                Err(status) => {
                    errors.set(vec![(String::new(), crate::grpc::message(&status))]);
                    set_busy.set(false);
                    focus_first_error(form);
                }
            }
        });
    };
    let focus_general = !sent.errors.is_empty() && first_invalid(&sent.errors, LOGIN_FIELDS).is_none();
    view! {
        <Title text="Sign in"/>
        <section class="card narrow">
            <h1>"Sign in"</h1>
            {already.map(|s| view! { <p class="muted">"You are signed in as " {s.email} "."</p> })}
            <Show when=move || !password_set.get().is_empty()>
                <p class="notice" role="status" data-testid="password-set">"Your password is set. Sign in with it now."</p>
            </Show>
            <form method="post" action="/login" data-form="login" on:submit=on_submit novalidate>
                <input type="hidden" name="next" value=move || next.get()/>
                <Field name="email" label="Email" kind="email" autocomplete="username" errors value=sent.value("email")
                    autofocus=first_invalid(&sent.errors, LOGIN_FIELDS) == Some("email")/>
                <Field name="password" label="Password" kind="password" autocomplete="current-password" errors
                    autofocus=first_invalid(&sent.errors, LOGIN_FIELDS) == Some("password")/>
                <FormError errors fields=LOGIN_FIELDS autofocus=focus_general/>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Sign in"</button>
            </form>
            <p class="muted">"New here? " <a href="/signup">"Register"</a></p>
        </section>
    }
}

/// The set-password form's fields, in order.
const SET_FIELDS: &[&str] = &["password", "again"];

/// `/set-password?token=…`: the welcome email's link. The token travels in the
/// form's body from here on, never in another URL.
#[component]
pub fn SetPasswordPage() -> impl IntoView {
    let sent = submitted("set-password");
    let errors = RwSignal::new(sent.errors.clone());
    let (busy, set_busy) = signal(false);
    let url_token = query_param("token");
    let token = {
        let from_form = sent.value("token");
        move || if from_form.is_empty() { url_token.get() } else { from_form.clone() }
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let (password, again, token) =
            (form_value(&form, "password"), form_value(&form, "again"), form_value(&form, "token"));
        if password != again {
            errors.set(vec![("again".into(), "the two passwords differ".into())]);
            focus_first_error(form);
            return;
        }
        set_busy.set(true);
        crate::grpc::spawn(async move {
            let mut auth = AuthServiceClient::new(crate::grpc::channel());
            match auth.set_password(pb::SetPasswordRequest { token, password }).await {
                Ok(_) => crate::grpc::go("/login?password_set=1"),
                Err(status) => {
                    errors.set(crate::grpc::field_errors(&status));
                    set_busy.set(false);
                    focus_first_error(form);
                }
            }
        });
    };
    view! {
        <Title text="Choose your password"/>
        <section class="card narrow">
            <h1>"Choose your password"</h1>
            <form method="post" action="/set-password" data-form="set-password" on:submit=on_submit novalidate>
                <input type="hidden" name="token" value=token/>
                <Field name="password" label="New password (at least 10 characters)" kind="password"
                    autocomplete="new-password" errors autofocus=first_invalid(&sent.errors, SET_FIELDS) == Some("password")/>
                <Field name="again" label="Repeat it" kind="password" autocomplete="new-password" errors
                    autofocus=first_invalid(&sent.errors, SET_FIELDS) == Some("again")/>
                <FormError errors fields=SET_FIELDS
                    autofocus=!sent.errors.is_empty() && first_invalid(&sent.errors, SET_FIELDS).is_none()/>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Set password"</button>
            </form>
            // A used or expired link answers with an error on `token`: say so plainly
            // and offer the way out (a plain link: it works before hydration).
            <Show when=move || errors.with(|e| e.iter().any(|(f, _)| f == "token"))>
                <p class="error" role="alert" data-testid="link-expired">
                    "This link has expired or was already used. "
                    <a href="/set-password/new-link">"Send me a new link"</a>
                </p>
            </Show>
            <p class="muted">"Link expired? " <a href="/set-password/new-link">"Send me a new link"</a></p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        for ok in ["/hangfire/jobs/failed", "/admin/tenants?x=1#y", "/", "/a/../b"] {
            assert!(safe_next(ok, "/home").starts_with('/'), "{ok}");
            assert_ne!(safe_next(ok, "/home"), "/home", "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            " /x",
            "",
            "evil.example",
            "/x\u{0}",
            "/\u{fffd}/evil.example",
        ] {
            assert_eq!(safe_next(bad, "/home"), "/home", "{bad:?}");
        }
        assert_eq!(safe_next("/a/../b", "/home"), "/b");
    }
}
