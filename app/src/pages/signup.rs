//! `/signup` and `/signup/thanks`: the public sign-up.

use leptos::prelude::*;
use leptos_meta::Title;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use super::{Field, FormError, first_invalid, focus_first_error, form_value, submitted, submitted_form};

/// What every sign-up is told.
pub const THANKS: &str = "Thanks for signing up! Check your email shortly for your login details.";

/// The sign-up form's fields, in order.
const FIELDS: &[&str] = &["company_name", "email"];

/// `/signup`: company name and email.
#[component]
pub fn SignUpPage() -> impl IntoView {
    let sent = submitted("signup");
    let errors = RwSignal::new(sent.errors.clone());
    let (busy, set_busy) = signal(false);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let req =
            pb::SignUpRequest { company_name: form_value(&form, "company_name"), email: form_value(&form, "email") };
        set_busy.set(true);
        crate::grpc::spawn(async move {
            match TenantServiceClient::new(crate::grpc::channel()).sign_up(req).await {
                Ok(_) => crate::grpc::go("/signup/thanks"),
                Err(status) => {
                    errors.set(crate::grpc::field_errors(&status));
                    set_busy.set(false);
                    focus_first_error(form);
                }
            }
        });
    };
    let first = first_invalid(&sent.errors, FIELDS);
    view! {
        <Title text="Register"/>
        <section class="card narrow">
            <h1>"Start your workspace"</h1>
            <p class="muted">"We create your own database and email you your login details."</p>
            <form method="post" action="/signup" data-form="signup" on:submit=on_submit novalidate>
                <Field name="company_name" label="Company name" autocomplete="organization" errors
                    value=sent.value("company_name") autofocus=first == Some("company_name")/>
                <Field name="email" label="Work email" kind="email" autocomplete="email" errors
                    value=sent.value("email") autofocus=first == Some("email")/>
                <FormError errors fields=FIELDS autofocus=!sent.errors.is_empty() && first.is_none()/>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Register"</button>
            </form>
        </section>
    }
}

/// `/signup/thanks`.
#[component]
pub fn ThanksPage() -> impl IntoView {
    view! {
        <Title text="Thank you"/>
        <section class="card narrow">
            <h1>"Thank you"</h1>
            <p role="status" data-testid="thanks">{THANKS}</p>
        </section>
    }
}
