//! `/admin/tenants` and `/admin/tenants/:id`: super admins create tenants and
//! follow their provisioning live (`WatchTenant` per provisioning tenant).

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use super::{FieldError, FormError, SuperAdminOnly, form_value, submitted_form};

/// What the form says at once after a create.
pub const STARTED: &str = "Tenant creation started. You will be notified when complete.";

fn client() -> TenantServiceClient<tonic_web_wasm_client::Client> {
    TenantServiceClient::new(crate::grpc::channel())
}

fn status_name(s: i32) -> &'static str {
    match pb::TenantStatus::try_from(s) {
        Ok(pb::TenantStatus::Provisioning) => "provisioning",
        Ok(pb::TenantStatus::Active) => "active",
        Ok(pb::TenantStatus::Failed) => "failed",
        _ => "unknown",
    }
}

/// Most `WatchTenant` streams a page holds at once. Without TLS the browser
/// speaks HTTP/1.1 to the server and allows 6 connections per origin, each open
/// stream holding one; the toast stream needs one and calls need one, so the
/// rest wait their turn.
const MAX_WATCHES: usize = 3;

thread_local! {
    static WATCHING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Follows `WatchTenant` for `id`, applying each progress to the tenant in
/// `rows` until it is active or failed (at most [`MAX_WATCHES`] at a time).
fn watch(id: String, rows: RwSignal<Vec<pb::Tenant>>) {
    crate::grpc::spawn(async move {
        while WATCHING.with(std::cell::Cell::get) >= MAX_WATCHES {
            crate::grpc::sleep_ms(300).await;
        }
        WATCHING.with(|w| w.set(w.get() + 1));
        follow(id, rows).await;
        WATCHING.with(|w| w.set(w.get().saturating_sub(1)));
    });
}

async fn follow(id: String, rows: RwSignal<Vec<pb::Tenant>>) {
    for _ in 0..5 {
        let Ok(resp) = client().watch_tenant(pb::WatchTenantRequest { id: id.clone() }).await else {
            crate::grpc::sleep_ms(1000).await;
            continue;
        };
        let mut s = resp.into_inner();
        while let Ok(Some(p)) = s.message().await {
            rows.update(|rows| {
                if let Some(t) = rows.iter_mut().find(|t| t.id == p.tenant_id) {
                    t.status = p.status;
                    t.step = p.step.clone();
                    t.last_error = p.last_error.clone();
                }
            });
            if p.status != pb::TenantStatus::Provisioning as i32 {
                return;
            }
        }
        crate::grpc::sleep_ms(1000).await;
    }
}

/// A tenant's status badge, with the step while provisioning.
#[component]
fn Badge(status: i32, step: String) -> impl IntoView {
    let name = status_name(status);
    let steps = ["creating database", "migrating", "seeding", "activating"];
    let done = steps.iter().position(|s| *s == step).unwrap_or(0);
    view! {
        <span class=format!("badge badge-{name}") data-testid="status">{name}</span>
        {(status == pb::TenantStatus::Provisioning as i32).then(|| view! {
            <span class="progress">
                <progress max="4" value=done.to_string() aria-label="provisioning progress"></progress>
                <span class="muted" data-testid="step">{if step.is_empty() { "waiting for a worker".to_owned() } else { step.clone() }}</span>
            </span>
        })}
    }
}

/// `/admin/tenants`.
#[component]
pub fn TenantsPage() -> impl IntoView {
    view! { <SuperAdminOnly><TenantsBody/></SuperAdminOnly> }
}

#[component]
fn TenantsBody() -> impl IntoView {
    let rows = RwSignal::new(Vec::<pb::Tenant>::new());
    let (next_page, set_next_page) = signal(String::new());
    let (loaded, set_loaded) = signal(false);
    let (errors, set_errors) = signal(Vec::<(String, String)>::new());
    let (started, set_started) = signal(false);
    let (busy, set_busy) = signal(false);
    let load = move |token: String| {
        crate::grpc::spawn(async move {
            let req = pb::ListTenantsRequest { page_size: 25, page_token: token, ..Default::default() };
            match client().list_tenants(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    for t in r.tenants.iter().filter(|t| t.status == pb::TenantStatus::Provisioning as i32) {
                        watch(t.id.clone(), rows);
                    }
                    rows.update(|v| v.extend(r.tenants));
                    set_next_page.set(r.next_page_token);
                    set_loaded.set(true);
                }
                Err(s) => set_errors.set(vec![(String::new(), crate::grpc::message(&s))]),
            }
        });
    };
    Effect::new(move |_| load(String::new()));
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        let req =
            pb::CreateTenantRequest { name: form_value(&form, "name"), admin_email: form_value(&form, "admin_email") };
        set_busy.set(true);
        set_started.set(false);
        crate::grpc::spawn(async move {
            match client().create_tenant(req).await {
                Ok(r) => {
                    if let Some(t) = r.into_inner().tenant {
                        let id = t.id.clone();
                        rows.update(|v| v.insert(0, t));
                        watch(id, rows);
                    }
                    set_errors.set(Vec::new());
                    set_started.set(true);
                    form.reset();
                }
                Err(s) => set_errors.set(crate::grpc::field_errors(&s)),
            }
            set_busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h1>"Tenants"</h1>
            <form class="inline-form" on:submit=on_submit novalidate aria-label="Create tenant">
                <div>
                    <label for="name">"Name"</label>
                    <input id="name" name="name" aria-describedby="name-error" required/>
                    <FieldError id="name-error" errors field="name"/>
                </div>
                <div>
                    <label for="admin_email">"Tenant admin's email"</label>
                    <input id="admin_email" name="admin_email" type="email" aria-describedby="admin_email-error" required/>
                    <FieldError id="admin_email-error" errors field="admin_email"/>
                </div>
                <button type="submit" disabled=move || busy.get()>"Create tenant"</button>
            </form>
            <FormError errors fields=&["name", "admin_email"]/>
            <Show when=move || started.get()>
                <p class="notice" role="status" data-testid="started">{STARTED}</p>
            </Show>
        </section>
        <section class="card">
            <table class="grid" aria-label="Tenants">
                <thead><tr><th>"Name"</th><th>"Status"</th><th>"Admin"</th><th>"Created"</th></tr></thead>
                <tbody>
                    <For each=move || rows.get() key=|t| (t.id.clone(), t.status, t.step.clone()) let:t>
                        <tr data-testid="tenant-row" data-id=t.id.clone()>
                            <td><a href=format!("/admin/tenants/{}", t.id)>{t.name.clone()}</a></td>
                            <td><Badge status=t.status step=t.step.clone()/></td>
                            <td>{t.admin_email.clone()}</td>
                            <td class="muted">{crate::pages::hangfire::time(t.created_at_unix_ms)}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
            <Show when=move || loaded.get() && rows.with(Vec::is_empty)>
                <p class="muted">"No tenants yet."</p>
            </Show>
            <Show when=move || !next_page.get().is_empty()>
                <button type="button" on:click=move |_| load(next_page.get_untracked())>"Older tenants"</button>
            </Show>
        </section>
    }
}

/// `/admin/tenants/:id`.
#[component]
pub fn TenantPage() -> impl IntoView {
    view! { <SuperAdminOnly><TenantBody/></SuperAdminOnly> }
}

#[component]
fn TenantBody() -> impl IntoView {
    let id = use_params_map().with_untracked(|p| p.get("id").unwrap_or_default());
    let rows = RwSignal::new(Vec::<pb::Tenant>::new());
    let (error, set_error) = signal(None::<String>);
    {
        let id = id.clone();
        Effect::new(move |_| {
            let id = id.clone();
            crate::grpc::spawn(async move {
                match client().get_tenant(pb::GetTenantRequest { id: id.clone() }).await {
                    Ok(t) => {
                        let t = t.into_inner();
                        let provisioning = t.status == pb::TenantStatus::Provisioning as i32;
                        rows.set(vec![t]);
                        if provisioning {
                            watch(id, rows);
                        }
                    }
                    Err(s) => set_error.set(Some(crate::grpc::message(&s))),
                }
            });
        });
    }
    view! {
        <section class="card">
            <p><a href="/admin/tenants">"← Tenants"</a></p>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get()}</p>
            </Show>
            {move || rows.get().into_iter().next().map(|t| view! {
                <h1>{t.name.clone()}</h1>
                <p><Badge status=t.status step=t.step.clone()/></p>
                <dl class="pairs">
                    <dt>"Id"</dt><dd><code>{t.id.clone()}</code></dd>
                    <dt>"Slug"</dt><dd>{t.slug.clone()}</dd>
                    <dt>"Created by"</dt><dd>{t.origin.clone()}</dd>
                    <dt>"Admin"</dt><dd>{t.admin_email.clone()}</dd>
                    <dt>"Created"</dt><dd>{crate::pages::hangfire::time(t.created_at_unix_ms)}</dd>
                    <dt>"Provisioning job"</dt><dd><a href=format!("/hangfire/job/{}", t.job_id)>{format!("#{}", t.job_id)}</a></dd>
                </dl>
                {(!t.last_error.is_empty()).then(|| view! {
                    <h2>"Last error"</h2>
                    <pre class="error" data-testid="tenant-error">{t.last_error.clone()}</pre>
                })}
            })}
        </section>
    }
}
