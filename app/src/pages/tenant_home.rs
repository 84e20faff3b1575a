//! `/app`: a tenant admin's home, with data read from the tenant's own database.

use leptos::prelude::*;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use crate::session::use_session;

/// `/app`.
#[component]
pub fn TenantHomePage() -> impl IntoView {
    let session = use_session();
    let (data, set_data) = signal(None::<pb::MyTenant>);
    let (error, set_error) = signal(None::<String>);
    Effect::new(move |_| {
        crate::grpc::spawn(async move {
            match TenantServiceClient::new(crate::grpc::channel()).get_my_tenant(pb::GetMyTenantRequest {}).await {
                Ok(r) => set_data.set(Some(r.into_inner())),
                Err(s) => set_error.set(Some(crate::grpc::message(&s))),
            }
        });
    });
    view! {
        <section class="card">
            <h1>
                {move || data.get().and_then(|d| d.tenant).map(|t| t.name).unwrap_or_else(|| "Your workspace".into())}
            </h1>
            <p class="muted">"Signed in as " {session.map(|s| s.email)}</p>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get()}</p>
            </Show>
            <Show when=move || data.get().is_some() fallback=|| view! { <p class="muted">"Loading…"</p> }>
                <p data-testid="tenant-db">"Database: " <code>{move || data.get().map(|d| d.database)}</code></p>
                <h2>"Roles"</h2>
                <ul data-testid="tenant-roles">
                    {move || data.get().map(|d| d.roles.into_iter().map(|r| view! {
                        <li><strong>{r.name}</strong> " – " {r.description}</li>
                    }).collect::<Vec<_>>())}
                </ul>
                <h2>"Settings"</h2>
                <dl class="pairs" data-testid="tenant-settings">
                    {move || data.get().map(|d| d.settings.into_iter().map(|s| view! {
                        <dt>{s.key}</dt><dd>{s.value}</dd>
                    }).collect::<Vec<_>>())}
                </dl>
            </Show>
        </section>
    }
}
