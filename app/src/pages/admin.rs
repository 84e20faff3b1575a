//! `/admin/tenants` and `/admin/tenants/:id`: super admins create tenants and
//! follow their provisioning live (`WatchTenant` per provisioning tenant).
//!
//! The list and the tenant come from resources, so the server's first paint has
//! them; what changes afterwards (progress, tenants created from this page) is
//! laid over them by signals the browser updates.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use super::{
    Field, FormError, SuperAdminOnly, first_invalid, focus_first_error, focus_id, form_value, query_param, submitted,
    submitted_form,
};
use crate::grpc::Channel;

/// What the form says at once after a create.
pub const STARTED: &str = "Tenant creation started. You will be notified when complete.";

fn client(ch: Channel) -> TenantServiceClient<Channel> {
    TenantServiceClient::new(ch)
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

/// Live progress laid over loaded tenants, by tenant id.
type Overlay = RwSignal<HashMap<String, pb::TenantProgress>>;

/// One of the [`MAX_WATCHES`] slots, given back when dropped (also when the
/// page is left and its watches are cut short).
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        WATCHING.with(|w| w.set(w.get().saturating_sub(1)));
    }
}

/// Follows `WatchTenant` for `id` into `overlay` until it is active or failed
/// (at most [`MAX_WATCHES`] at a time), or until the page is left. Browser only.
fn watch(id: String, overlay: Overlay) {
    crate::grpc::spawn_scoped(async move {
        while WATCHING.with(std::cell::Cell::get) >= MAX_WATCHES {
            crate::grpc::sleep_ms(300).await;
        }
        WATCHING.with(|w| w.set(w.get() + 1));
        let _slot = Slot;
        follow(id, overlay).await;
    });
}

async fn follow(id: String, overlay: Overlay) {
    for _ in 0..5 {
        let Ok(resp) = client(crate::grpc::channel()).watch_tenant(pb::WatchTenantRequest { id: id.clone() }).await
        else {
            crate::grpc::sleep_ms(1000).await;
            continue;
        };
        let mut s = resp.into_inner();
        while let Ok(Some(p)) = s.message().await {
            let done = p.status != pb::TenantStatus::Provisioning as i32;
            overlay.update(|o| {
                o.insert(p.tenant_id.clone(), p);
            });
            if done {
                return;
            }
        }
        crate::grpc::sleep_ms(1000).await;
    }
}

/// `t` with its live progress applied.
fn with_overlay(mut t: pb::Tenant, overlay: &HashMap<String, pb::TenantProgress>) -> pb::Tenant {
    if let Some(p) = overlay.get(&t.id) {
        t.status = p.status;
        t.step = p.step.clone();
        t.last_error = p.last_error.clone();
    }
    t
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
    view! { <Title text="Tenants"/><SuperAdminOnly><TenantsBody/></SuperAdminOnly> }
}

/// The create form's fields, in order.
const FIELDS: &[&str] = &["name", "admin_email"];

#[component]
fn TenantsBody() -> impl IntoView {
    let sent = submitted("create-tenant");
    let errors = RwSignal::new(sent.errors.clone());
    let after = query_param("after");
    let created_param = query_param("created");
    let list = crate::grpc::resource(
        move || after.get(),
        |ch, token| async move {
            client(ch)
                .list_tenants(pb::ListTenantsRequest { page_size: 25, page_token: token, ..Default::default() })
                .await
        },
    );
    let overlay: Overlay = RwSignal::new(HashMap::new());
    let created = RwSignal::new(Vec::<pb::Tenant>::new());
    let (started, set_started) = signal(false);
    let (busy, set_busy) = signal(false);
    // Browser: follow the loaded tenants that are still provisioning.
    Effect::new(move |seen: Option<Vec<String>>| {
        let mut seen = seen.unwrap_or_default();
        if let Some(Ok(r)) = list.get() {
            for t in r.tenants.iter().filter(|t| t.status == pb::TenantStatus::Provisioning as i32) {
                if !seen.contains(&t.id) {
                    seen.push(t.id.clone());
                    watch(t.id.clone(), overlay);
                }
            }
        }
        seen
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let req =
            pb::CreateTenantRequest { name: form_value(&form, "name"), admin_email: form_value(&form, "admin_email") };
        set_busy.set(true);
        set_started.set(false);
        crate::grpc::spawn(async move {
            match client(crate::grpc::channel()).create_tenant(req).await {
                Ok(r) => {
                    if let Some(t) = r.into_inner().tenant {
                        let id = t.id.clone();
                        created.update(|v| v.insert(0, t));
                        watch(id, overlay);
                    }
                    errors.set(Vec::new());
                    set_started.set(true);
                    form.reset();
                    focus_id("started");
                }
                Err(s) => {
                    errors.set(crate::grpc::field_errors(&s));
                    focus_first_error(form);
                }
            }
            set_busy.set(false);
        });
    };
    let first = first_invalid(&sent.errors, FIELDS);
    let show_started = move || started.get() || !created_param.get().is_empty();
    view! {
        <section class="card">
            <h1>"Tenants"</h1>
            <form class="inline-form" method="post" action="/admin/tenants" data-form="create-tenant"
                on:submit=on_submit novalidate aria-label="Create tenant">
                <div>
                    <Field name="name" label="Name" errors value=sent.value("name") autofocus=first == Some("name")/>
                </div>
                <div>
                    <Field name="admin_email" label="Tenant admin's email" kind="email" errors
                        value=sent.value("admin_email") autofocus=first == Some("admin_email")/>
                </div>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Create tenant"</button>
                <FormError errors fields=FIELDS autofocus=!sent.errors.is_empty() && first.is_none()/>
            </form>
            <Show when=show_started>
                <p class="notice" role="status" id="started" tabindex="-1" data-testid="started">{STARTED}</p>
            </Show>
        </section>
        <super::admin_import::BulkImport/>
        <section class="card">
            <h2>"All tenants"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(r) => {
                            let next = r.next_page_token.clone();
                            let loaded = r.tenants;
                            let empty = loaded.is_empty();
                            let rows = move || {
                                let o = overlay.get();
                                let mut all = created.get();
                                all.extend(loaded.iter().filter(|t| !all.iter().any(|c| c.id == t.id)).cloned().collect::<Vec<_>>());
                                all.into_iter().map(|t| with_overlay(t, &o)).collect::<Vec<_>>()
                            };
                            view! {
                                <table class="grid cards" aria-label="Tenants">
                                    <thead><tr><th>"Name"</th><th>"Status"</th><th>"Admin"</th><th>"Created (UTC)"</th></tr></thead>
                                    <tbody>
                                        <For each=rows key=|t| (t.id.clone(), t.status, t.step.clone()) let:t>
                                            <tr data-testid="tenant-row" data-id=t.id.clone()>
                                                <td data-label="Name"><a href=format!("/admin/tenants/{}", t.id)>{t.name.clone()}</a></td>
                                                <td data-label="Status"><Badge status=t.status step=t.step.clone()/></td>
                                                <td data-label="Admin">{t.admin_email.clone()}</td>
                                                <td data-label="Created" class="muted">{crate::pages::hangfire::time(t.created_at_unix_ms)}</td>
                                            </tr>
                                        </For>
                                    </tbody>
                                </table>
                                <Show when=move || empty && created.with(Vec::is_empty)>
                                    <p class="muted">"No tenants yet."</p>
                                </Show>
                                <p class="pager">
                                    {(!after.get_untracked().is_empty()).then(|| view! { <a href="/admin/tenants">"Newest tenants"</a> })}
                                    {(!next.is_empty()).then(|| view! {
                                        <a href=format!("/admin/tenants?after={}", super::encode(&next))>"Older tenants"</a>
                                    })}
                                </p>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

/// `/admin/tenants/:id`: follows its route parameter, so going from one
/// tenant to another (a toast's "Open") shows the other.
#[component]
pub fn TenantPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    view! { <SuperAdminOnly>{move || view! { <TenantBody id=id.get()/> }}</SuperAdminOnly> }
}

#[component]
fn TenantBody(id: String) -> impl IntoView {
    let tenant = crate::grpc::resource(
        move || id.clone(),
        |ch, id| async move { client(ch).get_tenant(pb::GetTenantRequest { id }).await },
    );
    let overlay: Overlay = RwSignal::new(HashMap::new());
    Effect::new(move |started: Option<bool>| {
        if started == Some(true) {
            return true;
        }
        match tenant.get() {
            Some(Ok(t)) if t.status == pb::TenantStatus::Provisioning as i32 => {
                watch(t.id, overlay);
                true
            }
            _ => false,
        }
    });
    view! {
        <Suspense fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match tenant.await {
                    Err(e) if e.is_not_found() => view! { <super::NotFound/> }.into_any(),
                    Err(e) => view! { <section class="card"><p class="error" role="alert">{e.message}</p></section> }.into_any(),
                    Ok(t) => {
                        let name = t.name.clone();
                        let live = move || with_overlay(t.clone(), &overlay.get());
                        view! {
                            <Title text=name/>
                            <section class="card">
                                <p><a href="/admin/tenants">"← Tenants"</a></p>
                                {move || {
                                    let t = live();
                                    let created_by = if t.origin == "signup" {
                                        "public sign-up".to_owned()
                                    } else if t.created_by.is_empty() {
                                        "a super admin".to_owned()
                                    } else {
                                        t.created_by.clone()
                                    };
                                    view! {
                                        <h1>{t.name.clone()}</h1>
                                        <p><Badge status=t.status step=t.step.clone()/></p>
                                        <dl class="pairs">
                                            <dt>"Id"</dt><dd><code>{t.id.clone()}</code></dd>
                                            <dt>"Slug"</dt><dd>{t.slug.clone()}</dd>
                                            <dt>"Created by"</dt><dd data-testid="created-by">{created_by}</dd>
                                            <dt>"Admin"</dt><dd>{t.admin_email.clone()}</dd>
                                            <dt>"Created"</dt><dd>{crate::pages::hangfire::time(t.created_at_unix_ms)} " UTC"</dd>
                                            <dt>"Provisioning job"</dt><dd><a href=format!("/hangfire/job/{}", t.job_id)>{format!("#{}", t.job_id)}</a></dd>
                                        </dl>
                                        {(!t.last_error.is_empty()).then(|| view! {
                                            <h2>"Last error"</h2>
                                            <pre class="error" data-testid="tenant-error">{t.last_error.clone()}</pre>
                                        })}
                                    }
                                }}
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}
