//! `/app`: a tenant admin's home: their workspace, who administers it, and what
//! to do next; its roles and settings are read from the tenant's own database.

use leptos::prelude::*;
use leptos_meta::Title;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use crate::session::use_session;

/// `/app`.
#[component]
pub fn TenantHomePage() -> impl IntoView {
    let session = use_session();
    let me = session.as_ref().map(|s| s.email.clone()).unwrap_or_default();
    let data = crate::grpc::resource(
        || (),
        |ch, ()| async move { TenantServiceClient::new(ch).get_my_tenant(pb::GetMyTenantRequest {}).await },
    );
    view! {
        <Title text="My workspace"/>
        <Suspense fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
            {move || {
                let me = me.clone();
                Suspend::new(async move {
                    match data.await {
                        Err(e) => view! {
                            <section class="card">
                                <h1>"Your workspace"</h1>
                                <p class="error" role="alert">{e.message}</p>
                            </section>
                        }.into_any(),
                        Ok(d) => {
                            let t = d.tenant.unwrap_or_default();
                            let you_admin = t.admin_email == me;
                            view! {
                                <section class="card">
                                    <h1>{t.name.clone()}</h1>
                                    <dl class="pairs" data-testid="tenant-facts">
                                        <dt>"Workspace"</dt><dd>{t.name.clone()}</dd>
                                        <dt>"Administrator"</dt>
                                        <dd data-testid="tenant-admin">{t.admin_email.clone()} {you_admin.then_some(" (you)")}</dd>
                                        <dt>"Ready since"</dt><dd>{crate::pages::hangfire::time(t.activated_at_unix_ms)} " UTC"</dd>
                                    </dl>
                                </section>
                                <section class="card" data-testid="next-steps">
                                    <h2>"What to do next"</h2>
                                    <ol>
                                        <li>"Bookmark this page: sign in at " <code>"/login"</code> " with " {t.admin_email.clone()} "."</li>
                                        <li>"Check the settings below (time zone, locale); they apply to everyone in the workspace."</li>
                                        <li>"Decide who needs which role: admins change settings, viewers only read."</li>
                                    </ol>
                                </section>
                                <section class="card">
                                    <h2>"Roles"</h2>
                                    <ul data-testid="tenant-roles">
                                        {d.roles.into_iter().map(|r| view! {
                                            <li><strong>{r.name}</strong> " – " {r.description}</li>
                                        }).collect::<Vec<_>>()}
                                    </ul>
                                    <h2>"Settings"</h2>
                                    <dl class="pairs" data-testid="tenant-settings">
                                        {d.settings.into_iter().map(|s| view! { <dt>{s.key}</dt><dd>{s.value}</dd> }).collect::<Vec<_>>()}
                                    </dl>
                                </section>
                            }.into_any()
                        }
                    }
                })
            }}
        </Suspense>
    }
}
