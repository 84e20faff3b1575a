//! `/hangfire/batches`: job batches (jobs enqueued together, counted as they end,
//! with a completion job run once when the last one ends), super admins only.
//!
//! - `/hangfire/batches`: newest first, each with its progress, refreshed every
//!   two seconds;
//! - `/hangfire/batches/:id`: one batch's counts and its completion job, refreshed
//!   every second until it has finished. 404 for an id that does not parse or
//!   does not exist.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;

use super::SuperAdminOnly;
use super::hangfire::time;
use crate::grpc::Channel;

fn client(ch: Channel) -> JobServiceClient<Channel> {
    JobServiceClient::new(ch)
}

/// Calls `f` every `ms` in the browser while `go` says so, for as long as the
/// page is shown.
fn every_while(ms: i32, go: impl Fn() -> bool + Clone + 'static, f: impl Fn() + Clone + 'static) {
    Effect::new(move |_| {
        let (go, f) = (go.clone(), f.clone());
        crate::grpc::spawn_scoped(async move {
            loop {
                crate::grpc::sleep_ms(ms).await;
                if go() {
                    f();
                }
            }
        });
    });
}

/// A batch's progress: a bar and its counts ("12 of 50 ended: 11 succeeded,
/// 1 failed, 0 deleted").
#[component]
pub fn BatchProgress(
    /// The batch as last read.
    batch: pb::Batch,
) -> impl IntoView {
    let ended = batch.succeeded + batch.dead + batch.deleted;
    let state = if batch.finished_at_unix_ms > 0 { "finished" } else { "running" };
    view! {
        <div class="batch-progress" data-testid="batch-progress" data-state=state>
            <progress max=batch.total.max(1).to_string() value=ended.to_string()
                aria-label=format!("Batch {} progress", batch.id)></progress>
            <span data-testid="batch-counts">
                {format!(
                    "{ended} of {} ended: {} succeeded, {} failed, {} deleted, {} pending",
                    batch.total, batch.succeeded, batch.dead, batch.deleted, batch.pending
                )}
            </span>
        </div>
    }
}

/// `/hangfire/batches`.
#[component]
pub fn BatchesPage() -> impl IntoView {
    let (tick, set_tick) = signal(0u64);
    let list = crate::grpc::resource(
        move || tick.get(),
        |ch, _| async move {
            client(ch).list_batches(pb::ListBatchesRequest { page_size: 50, page_token: String::new() }).await
        },
    );
    every_while(2000, || true, move || set_tick.update(|n| *n += 1));
    view! {
        <Title text="Batches"/>
        <SuperAdminOnly>
            <section class="card">
                <nav class="pager" aria-label="Dashboard"><a href="/hangfire">"← Dashboard"</a></nav>
                <h1>"Batches"</h1>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match list.await {
                            Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                            Ok(r) if r.batches.is_empty() => view! { <p class="muted" data-testid="no-batches">"No batches yet."</p> }.into_any(),
                            Ok(r) => view! {
                                <table class="grid cards" aria-label="Batches" data-testid="batches">
                                    <thead><tr><th>"Batch"</th><th>"What"</th><th>"Created (UTC)"</th><th>"Progress"</th><th>"Finished (UTC)"</th></tr></thead>
                                    <tbody>
                                        {r.batches.into_iter().map(|b| {
                                            let finished = if b.finished_at_unix_ms > 0 { time(b.finished_at_unix_ms) } else { "–".to_owned() };
                                            view! {
                                                <tr>
                                                    <td data-label="Batch"><a href=format!("/hangfire/batches/{}", b.id)>{format!("#{}", b.id)}</a></td>
                                                    <td data-label="What">{b.label.clone()}</td>
                                                    <td data-label="Created" class="muted">{time(b.created_at_unix_ms)}</td>
                                                    <td data-label="Progress"><BatchProgress batch=b.clone()/></td>
                                                    <td data-label="Finished" class="muted">{finished}</td>
                                                </tr>
                                            }
                                        }).collect::<Vec<_>>()}
                                    </tbody>
                                </table>
                            }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </SuperAdminOnly>
    }
}

/// `/hangfire/batches/:id`.
#[component]
pub fn BatchPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).filter(|n| *n > 0));
    view! {
        <SuperAdminOnly>
            {move || match id.get() {
                Some(id) => view! { <BatchDetail id/> }.into_any(),
                None => view! { <super::NotFound/> }.into_any(),
            }}
        </SuperAdminOnly>
    }
}

/// One batch, live until it has finished; also the import form's progress.
#[component]
pub fn BatchDetail(
    /// The batch's id.
    id: i64,
) -> impl IntoView {
    let (tick, set_tick) = signal(0u64);
    let finished = RwSignal::new(false);
    let batch = crate::grpc::resource(
        move || tick.get(),
        move |ch, _| async move { client(ch).get_batch(pb::GetBatchRequest { id }).await },
    );
    every_while(1000, move || !finished.get_untracked(), move || set_tick.update(|n| *n += 1));
    view! {
        <Title text=format!("Batch #{id}")/>
        <section class="card" data-testid="batch">
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match batch.await {
                        Err(e) if e.is_not_found() => view! { <super::NotFound/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(b) => {
                            if b.finished_at_unix_ms > 0 {
                                finished.set(true);
                            }
                            view! {
                                <h2>{format!("Batch #{}", b.id)}</h2>
                                <p>{b.label.clone()}</p>
                                <BatchProgress batch=b.clone()/>
                                <dl class="pairs">
                                    <dt>"Created (UTC)"</dt><dd>{time(b.created_at_unix_ms)}</dd>
                                    <dt>"Finished (UTC)"</dt>
                                    <dd data-testid="batch-finished">{if b.finished_at_unix_ms > 0 { time(b.finished_at_unix_ms) } else { "not yet".to_owned() }}</dd>
                                    {(b.completion_job_id > 0).then(|| view! {
                                        <dt>"Completion job"</dt>
                                        <dd><a href=format!("/hangfire/job/{}", b.completion_job_id)>{format!("#{}", b.completion_job_id)}</a></dd>
                                    })}
                                </dl>
                                {(b.dead > 0).then(|| view! {
                                    <p><a href="/hangfire/jobs/failed">"See the failed jobs"</a> " · "
                                       <a href="/admin/tenants">"the tenants"</a></p>
                                })}
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}
