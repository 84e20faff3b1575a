//! The start page: what the product is, and where to go.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::session::use_session;

/// `/`.
#[component]
pub fn HomePage() -> impl IntoView {
    // Becomes true only in the browser, once hydration has run this component.
    let (interactive, set_interactive) = signal(false);
    Effect::new(move |_| set_interactive.set(true));
    let next = match use_session() {
        Some(s) if s.is_super_admin() => view! {
            <p><a class="button" href="/admin/tenants">"Manage tenants"</a> " " <a href="/hangfire">"Job dashboard"</a></p>
        }
        .into_any(),
        Some(_) => view! { <p><a class="button" href="/app">"Open my workspace"</a></p> }.into_any(),
        None => view! {
            <p><a class="button" href="/signup">"Register"</a> " or " <a href="/login">"sign in"</a></p>
        }
        .into_any(),
    };
    view! {
        <Title text=""/>
        <section class="card">
            <h1>"Back office"</h1>
            <p>"Your own workspace with its own database, ready in seconds. Tenants are provisioned by durable background jobs that survive restarts."</p>
            {next}
            <p class="status" data-testid="hydrated">
                {move || if interactive.get() { "interactive" } else { "server-rendered" }}
            </p>
        </section>
    }
}
