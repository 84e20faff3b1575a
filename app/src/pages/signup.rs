//! `/signup` and `/signup/thanks`: the public sign-up.

use leptos::prelude::*;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use super::{FieldError, FormError, form_value, submitted_form};

/// What every sign-up is told.
pub const THANKS: &str = "Thanks for signing up! Check your email shortly for your login details.";

/// `/signup`: company name and email.
#[component]
pub fn SignUpPage() -> impl IntoView {
    let (errors, set_errors) = signal(Vec::<(String, String)>::new());
    let (busy, set_busy) = signal(false);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        let req =
            pb::SignUpRequest { company_name: form_value(&form, "company_name"), email: form_value(&form, "email") };
        set_busy.set(true);
        crate::grpc::spawn(async move {
            match TenantServiceClient::new(crate::grpc::channel()).sign_up(req).await {
                Ok(_) => crate::grpc::go("/signup/thanks"),
                Err(status) => {
                    set_errors.set(crate::grpc::field_errors(&status));
                    set_busy.set(false);
                }
            }
        });
    };
    view! {
        <section class="card narrow">
            <h1>"Start your workspace"</h1>
            <p class="muted">"We create your own database and email you your login details."</p>
            <form on:submit=on_submit novalidate>
                <label for="company_name">"Company name"</label>
                <input id="company_name" name="company_name" autocomplete="organization"
                    aria-describedby="company_name-error" required/>
                <FieldError id="company_name-error" errors field="company_name"/>
                <label for="email">"Work email"</label>
                <input id="email" name="email" type="email" autocomplete="email" aria-describedby="email-error" required/>
                <FieldError id="email-error" errors field="email"/>
                <FormError errors fields=&["company_name", "email"]/>
                <button type="submit" disabled=move || busy.get()>"Sign up"</button>
            </form>
        </section>
    }
}

/// `/signup/thanks`.
#[component]
pub fn ThanksPage() -> impl IntoView {
    view! {
        <section class="card narrow">
            <h1>"Thank you"</h1>
            <p role="status" data-testid="thanks">{THANKS}</p>
        </section>
    }
}
