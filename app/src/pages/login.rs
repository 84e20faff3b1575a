//! `/login` and `/set-password`.

use leptos::prelude::*;
use proto::auth::v1 as pb;
use proto::auth::v1::auth_service_client::AuthServiceClient;

use super::{FieldError, FormError, form_value, query_param, submitted_form};
use crate::session::use_session;

/// Where a signed-in user of `role` starts.
pub fn home_of(role: i32) -> &'static str {
    if role == pb::Role::SuperAdmin as i32 { "/admin/tenants" } else { "/app" }
}

/// `next` if it is a path on this site, else `fallback` (no open redirects).
fn safe_next(next: &str, fallback: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// `/login`: email and password; then back where the visitor was going.
#[component]
pub fn LoginPage() -> impl IntoView {
    let (errors, set_errors) = signal(Vec::<(String, String)>::new());
    let (busy, set_busy) = signal(false);
    let already = use_session();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        let (email, password) = (form_value(&form, "email"), form_value(&form, "password"));
        let next = query_param("next");
        set_busy.set(true);
        crate::grpc::spawn(async move {
            let mut auth = AuthServiceClient::new(crate::grpc::channel());
            match auth.login(pb::LoginRequest { email, password }).await {
                Ok(resp) => {
                    let role = resp.into_inner().user.map(|u| u.role).unwrap_or_default();
                    crate::grpc::go(&safe_next(&next, home_of(role)));
                }
                Err(status) => {
                    set_errors.set(vec![(String::new(), crate::grpc::message(&status))]);
                    set_busy.set(false);
                }
            }
        });
    };
    view! {
        <section class="card narrow">
            <h1>"Sign in"</h1>
            {already.map(|s| view! { <p class="muted">"You are signed in as " {s.email} "."</p> })}
            <form on:submit=on_submit novalidate>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <FormError errors fields=&[]/>
                <button type="submit" disabled=move || busy.get()>"Sign in"</button>
            </form>
            <p class="muted">"New here? " <a href="/signup">"Sign up"</a></p>
        </section>
    }
}

/// `/set-password?token=…`: the welcome email's link.
#[component]
pub fn SetPasswordPage() -> impl IntoView {
    let (errors, set_errors) = signal(Vec::<(String, String)>::new());
    let (done, set_done) = signal(None::<String>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        let (password, again) = (form_value(&form, "password"), form_value(&form, "again"));
        if password != again {
            set_errors.set(vec![("again".into(), "the two passwords differ".into())]);
            return;
        }
        let token = query_param("token");
        crate::grpc::spawn(async move {
            let mut auth = AuthServiceClient::new(crate::grpc::channel());
            match auth.set_password(pb::SetPasswordRequest { token, password }).await {
                Ok(resp) => set_done.set(Some(resp.into_inner().user.map(|u| u.email).unwrap_or_default())),
                Err(status) => set_errors.set(crate::grpc::field_errors(&status)),
            }
        });
    };
    view! {
        <section class="card narrow">
            <h1>"Choose your password"</h1>
            <Show
                when=move || done.get().is_none()
                fallback=move || view! {
                    <p role="status" data-testid="password-set">
                        "Your password is set. " <a href="/login">"Sign in"</a> " as " {done.get().unwrap_or_default()} "."
                    </p>
                }
            >
                <form on:submit=on_submit novalidate>
                    <label for="password">"New password (at least 10 characters)"</label>
                    <input id="password" name="password" type="password" autocomplete="new-password"
                        aria-describedby="password-error" required/>
                    <FieldError id="password-error" errors field="password"/>
                    <label for="again">"Repeat it"</label>
                    <input id="again" name="again" type="password" autocomplete="new-password"
                        aria-describedby="again-error" required/>
                    <FieldError id="again-error" errors field="again"/>
                    <FormError errors fields=&["password", "again"]/>
                    <button type="submit">"Set password"</button>
                </form>
            </Show>
        </section>
    }
}
