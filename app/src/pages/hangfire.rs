//! `/hangfire`: the job dashboard, super admins only.
//!
//! - `/hangfire`: counts per state (live, `WatchCounts`), jobs finished per
//!   minute as an SVG chart, live workers with their last heartbeat;
//! - `/hangfire/jobs/:state`: one state's jobs, newest first, paged, filtered by
//!   type and text, with trigger / requeue / delete on a selection; refreshed
//!   live when the counts change;
//! - `/hangfire/job/:id`: arguments, state history, the error chain of each
//!   failure, the tenant it concerns, and the actions.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;

use super::SuperAdminOnly;

fn client() -> JobServiceClient<tonic_web_wasm_client::Client> {
    JobServiceClient::new(crate::grpc::channel())
}

/// The states, as (URL name, label, proto value). "failed" is the dead-letter queue.
pub const STATES: [(&str, &str, pb::JobState); 6] = [
    ("enqueued", "Enqueued", pb::JobState::Enqueued),
    ("processing", "Processing", pb::JobState::Processing),
    ("scheduled", "Scheduled / retrying", pb::JobState::Scheduled),
    ("succeeded", "Succeeded", pb::JobState::Succeeded),
    ("failed", "Failed (dead letters)", pb::JobState::Dead),
    ("deleted", "Deleted", pb::JobState::Deleted),
];

fn state_label(state: i32) -> &'static str {
    STATES.iter().find(|s| s.2 as i32 == state).map_or("unknown", |s| s.0)
}

/// A Unix-milliseconds time as `YYYY-MM-DD HH:MM:SS` UTC (the same on server and
/// browser, so hydration agrees).
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "–".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The dashboard's own navigation.
#[component]
fn DashNav(counts: ReadSignal<Option<pb::JobCounts>>) -> impl IntoView {
    let count = move |s: pb::JobState| {
        counts.get().map(|c| match s {
            pb::JobState::Enqueued => c.enqueued,
            pb::JobState::Processing => c.processing,
            pb::JobState::Scheduled => c.scheduled,
            pb::JobState::Succeeded => c.succeeded,
            pb::JobState::Dead => c.dead,
            pb::JobState::Deleted => c.deleted,
            pb::JobState::Unspecified => 0,
        })
    };
    view! {
        <nav class="dash-nav" aria-label="Job states">
            <a href="/hangfire">"Overview"</a>
            {STATES.iter().map(|(name, label, state)| {
                let state = *state;
                view! {
                    <a href=format!("/hangfire/jobs/{name}") data-testid=format!("nav-{name}")>
                        {*label} " " <span class="pill" data-testid=format!("count-{name}")>
                            {move || count(state).map(|n| n.to_string()).unwrap_or_else(|| "–".into())}
                        </span>
                    </a>
                }
            }).collect::<Vec<_>>()}
        </nav>
    }
}

/// Follows `WatchCounts` into `set`, reconnecting after a pause.
fn follow_counts(set: WriteSignal<Option<pb::JobCounts>>, set_updates: WriteSignal<u64>) {
    crate::grpc::spawn(async move {
        loop {
            if let Ok(resp) = client().watch_counts(pb::WatchCountsRequest { interval_ms: 500 }).await {
                let mut s = resp.into_inner();
                while let Ok(Some(c)) = s.message().await {
                    set.set(Some(c));
                    set_updates.update(|n| *n += 1);
                }
            }
            crate::grpc::sleep_ms(2000).await;
        }
    });
}

/// `/hangfire`.
#[component]
pub fn OverviewPage() -> impl IntoView {
    view! { <SuperAdminOnly><Overview/></SuperAdminOnly> }
}

#[component]
fn Overview() -> impl IntoView {
    let (counts, set_counts) = signal(None::<pb::JobCounts>);
    let (updates, set_updates) = signal(0u64);
    let (buckets, set_buckets) = signal(Vec::<pb::ThroughputBucket>::new());
    let (workers, set_workers) = signal(Vec::<pb::WorkerInfo>::new());
    Effect::new(move |_| {
        follow_counts(set_counts, set_updates);
        crate::grpc::spawn(async move {
            loop {
                if let Ok(t) = client().get_throughput(pb::GetThroughputRequest { minutes: 60 }).await {
                    set_buckets.set(t.into_inner().buckets);
                }
                if let Ok(w) = client().list_workers(pb::ListWorkersRequest {}).await {
                    set_workers.set(w.into_inner().workers);
                }
                crate::grpc::sleep_ms(5000).await;
            }
        });
    });
    view! {
        <DashNav counts/>
        <section class="card">
            <h1>"Jobs"</h1>
            <dl class="counts">
                {STATES.iter().map(|(name, label, state)| {
                    let state = *state as i32;
                    view! {
                        <div class="count">
                            <dt><a href=format!("/hangfire/jobs/{name}")>{*label}</a></dt>
                            <dd data-testid=format!("total-{name}")>
                                {move || counts.get().map(|c| match pb::JobState::try_from(state) {
                                    Ok(pb::JobState::Enqueued) => c.enqueued,
                                    Ok(pb::JobState::Processing) => c.processing,
                                    Ok(pb::JobState::Scheduled) => c.scheduled,
                                    Ok(pb::JobState::Succeeded) => c.succeeded,
                                    Ok(pb::JobState::Dead) => c.dead,
                                    Ok(pb::JobState::Deleted) => c.deleted,
                                    _ => 0,
                                }.to_string()).unwrap_or_else(|| "–".into())}
                            </dd>
                        </div>
                    }
                }).collect::<Vec<_>>()}
            </dl>
            <p class="muted" data-testid="updates">"live updates: " {move || updates.get()}</p>
        </section>
        <section class="card">
            <h2>"Finished per minute, last hour"</h2>
            <Chart buckets/>
        </section>
        <section class="card">
            <h2>"Workers"</h2>
            <table class="grid" aria-label="Workers">
                <thead><tr><th>"Worker"</th><th>"Queues"</th><th>"Running"</th><th>"Started"</th><th>"Last heartbeat"</th></tr></thead>
                <tbody>
                    <For each=move || workers.get() key=|w| (w.id.clone(), w.last_heartbeat_unix_ms, w.running) let:w>
                        <tr data-testid="worker-row">
                            <td><code>{w.id.clone()}</code></td>
                            <td>{w.queues.join(", ")}</td>
                            <td>{w.running} " / " {w.concurrency}</td>
                            <td class="muted">{time(w.started_at_unix_ms)}</td>
                            <td>{time(w.last_heartbeat_unix_ms)}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
    }
}

/// Succeeded (green) and failed (red) jobs per minute, as an SVG line chart.
#[component]
fn Chart(buckets: ReadSignal<Vec<pb::ThroughputBucket>>) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    let line = move |pick: fn(&pb::ThroughputBucket) -> u64| {
        buckets.with(|b| {
            let max = b.iter().map(|x| x.succeeded.max(x.dead)).max().unwrap_or(0).max(1) as f64;
            let step = if b.len() > 1 { W / (b.len() - 1) as f64 } else { W };
            b.iter()
                .enumerate()
                .map(|(i, x)| format!("{:.1},{:.1}", i as f64 * step, H - pick(x) as f64 / max * (H - 10.0)))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let total = move |pick: fn(&pb::ThroughputBucket) -> u64| buckets.with(|b| b.iter().map(pick).sum::<u64>());
    view! {
        <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" data-testid="throughput"
            aria-label=move || format!("Last hour: {} succeeded, {} failed", total(|b| b.succeeded), total(|b| b.dead))>
            <line x1="0" y1=H x2=W y2=H class="axis"/>
            <polyline class="ok" fill="none" points=move || line(|b| b.succeeded)/>
            <polyline class="bad" fill="none" points=move || line(|b| b.dead)/>
        </svg>
        <p class="legend">
            <span class="ok">"■ succeeded " {move || total(|b| b.succeeded)}</span>
            " "
            <span class="bad">"■ failed " {move || total(|b| b.dead)}</span>
        </p>
    }
}

/// The actions a dashboard user can take on jobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Trigger,
    Requeue,
    Delete,
}

/// Runs `action` on each id in turn; returns the messages of failures.
async fn act(action: Action, ids: Vec<i64>) -> Vec<String> {
    let mut failures = Vec::new();
    for id in ids {
        let req = pb::JobIdRequest { id };
        let r = match action {
            Action::Trigger => client().trigger_job(req).await,
            Action::Requeue => client().requeue_job(req).await,
            Action::Delete => client().delete_job(req).await,
        };
        if let Err(s) = r {
            failures.push(format!("#{id}: {}", crate::grpc::message(&s)));
        }
    }
    failures
}

/// `/hangfire/jobs/:state`.
#[component]
pub fn JobListPage() -> impl IntoView {
    view! { <SuperAdminOnly><JobList/></SuperAdminOnly> }
}

#[component]
fn JobList() -> impl IntoView {
    let name = use_params_map().with_untracked(|p| p.get("state").unwrap_or_default());
    let Some(&(name, label, state)) = STATES.iter().find(|s| s.0 == name) else {
        return view! { <super::NotFound/> }.into_any();
    };
    let (counts, set_counts) = signal(None::<pb::JobCounts>);
    let (updates, set_updates) = signal(0u64);
    let (jobs, set_jobs) = signal(Vec::<pb::JobSummary>::new());
    let (pages, set_pages) = signal(vec![String::new()]);
    let (next, set_next) = signal(String::new());
    let (kind, set_kind) = signal(String::new());
    let (text, set_text) = signal(String::new());
    let selected = RwSignal::new(std::collections::BTreeSet::<i64>::new());
    let (message, set_message) = signal(None::<String>);
    let load = move || {
        let token = pages.with_untracked(|p| p.last().cloned().unwrap_or_default());
        let req = pb::ListJobsRequest {
            state: state as i32,
            page_size: 20,
            page_token: token,
            kind: kind.get_untracked(),
            text: text.get_untracked(),
        };
        crate::grpc::spawn(async move {
            match client().list_jobs(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    set_jobs.set(r.jobs);
                    set_next.set(r.next_page_token);
                }
                Err(s) => set_message.set(Some(crate::grpc::message(&s))),
            }
        });
    };
    Effect::new(move |_| follow_counts(set_counts, set_updates));
    // Live: reload whenever the counts move (and once at the start).
    Effect::new(move |prev: Option<Option<pb::JobCounts>>| {
        let now = counts.get().map(|c| pb::JobCounts { at_unix_ms: 0, ..c });
        if prev.as_ref() != Some(&now) {
            load();
        }
        now
    });
    let run = move |action: Action| {
        let ids: Vec<i64> = selected.get_untracked().into_iter().collect();
        if ids.is_empty() {
            set_message.set(Some("select jobs first".into()));
            return;
        }
        crate::grpc::spawn(async move {
            let n = ids.len();
            let failures = act(action, ids).await;
            selected.set(Default::default());
            set_message.set(Some(if failures.is_empty() {
                format!("done: {n} job(s)")
            } else {
                format!("{} of {n} failed: {}", failures.len(), failures.join("; "))
            }));
            load();
        });
    };
    let on_filter = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = super::submitted_form(&ev) else { return };
        set_kind.set(super::form_value(&form, "kind"));
        set_text.set(super::form_value(&form, "text"));
        set_pages.set(vec![String::new()]);
        load();
    };
    view! {
        <DashNav counts/>
        <section class="card">
            <h1>{label}</h1>
            <form class="inline-form" on:submit=on_filter aria-label="Filter jobs">
                <div><label for="kind">"Type"</label><input id="kind" name="kind" placeholder="tenants.provision"/></div>
                <div><label for="text">"Text"</label><input id="text" name="text" placeholder="in arguments or errors"/></div>
                <button type="submit">"Filter"</button>
            </form>
            <div class="actions" role="group" aria-label="Actions on selected jobs">
                <button type="button" on:click=move |_| run(Action::Trigger)>"Trigger now"</button>
                <button type="button" on:click=move |_| run(Action::Requeue)>"Requeue"</button>
                <button type="button" class="danger" on:click=move |_| run(Action::Delete)>"Delete"</button>
                <span class="muted" role="status" data-testid="list-message">{move || message.get()}</span>
            </div>
            <table class="grid" aria-label=format!("{label} jobs") data-testid=format!("jobs-{name}")>
                <thead><tr>
                    <th><input type="checkbox" aria-label="Select all" on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selected.set(if on { jobs.get_untracked().iter().map(|j| j.id).collect() } else { Default::default() });
                    } prop:checked=move || !jobs.with(Vec::is_empty) && jobs.with(|j| j.iter().all(|x| selected.with(|s| s.contains(&x.id))))/></th>
                    <th>"Id"</th><th>"Type"</th><th>"Attempt"</th><th>"Created"</th><th>"Last error / step"</th>
                </tr></thead>
                <tbody>
                    <For each=move || jobs.get() key=|j| (j.id, j.state, j.attempt, j.progress.clone()) let:j>
                        <tr data-testid="job-row" data-id=j.id.to_string()>
                            <td><input type="checkbox" aria-label=format!("Select job {}", j.id)
                                prop:checked=move || selected.with(|s| s.contains(&j.id))
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    selected.update(|s| { if on { s.insert(j.id); } else { s.remove(&j.id); } });
                                }/></td>
                            <td><a href=format!("/hangfire/job/{}", j.id)>{format!("#{}", j.id)}</a></td>
                            <td>{j.kind.clone()}</td>
                            <td>{j.attempt} " / " {j.max_attempts}</td>
                            <td class="muted">{time(j.created_at_unix_ms)}</td>
                            <td class="clip">{if j.last_error.is_empty() { j.progress.clone() } else { j.last_error.clone() }}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
            <Show when=move || jobs.with(Vec::is_empty)><p class="muted">"No jobs here."</p></Show>
            <div class="pager">
                <button type="button" disabled=move || pages.with(|p| p.len() <= 1) on:click=move |_| {
                    set_pages.update(|p| { p.pop(); });
                    load();
                }>"Newer"</button>
                <button type="button" disabled=move || next.get().is_empty() on:click=move |_| {
                    let n = next.get_untracked();
                    set_pages.update(|p| p.push(n));
                    load();
                }>"Older"</button>
            </div>
            <p class="muted">"live updates: " <span data-testid="updates">{move || updates.get()}</span></p>
        </section>
    }
    .into_any()
}

/// `/hangfire/job/:id`.
#[component]
pub fn JobPage() -> impl IntoView {
    view! { <SuperAdminOnly><JobDetail/></SuperAdminOnly> }
}

#[component]
fn JobDetail() -> impl IntoView {
    let id: i64 = use_params_map().with_untracked(|p| p.get("id").and_then(|s| s.parse().ok()).unwrap_or(0));
    let (detail, set_detail) = signal(None::<pb::JobDetail>);
    let (message, set_message) = signal(None::<String>);
    let load = move || {
        crate::grpc::spawn(async move {
            match client().get_job(pb::GetJobRequest { id }).await {
                Ok(d) => set_detail.set(Some(d.into_inner())),
                Err(s) => set_message.set(Some(crate::grpc::message(&s))),
            }
        });
    };
    Effect::new(move |_| load());
    let run = move |action: Action| {
        crate::grpc::spawn(async move {
            let failures = act(action, vec![id]).await;
            set_message.set(Some(if failures.is_empty() { "done".into() } else { failures.join("; ") }));
            load();
        });
    };
    let tenant = move || {
        detail.get().and_then(|d| {
            let v: serde_json::Value = serde_json::from_str(&d.args_json).ok()?;
            v.get("tenant_id")?.as_str().map(str::to_owned)
        })
    };
    view! {
        <section class="card">
            <p><a href="/hangfire">"← Dashboard"</a></p>
            <h1>"Job #" {id}</h1>
            <p class="muted" role="status" data-testid="job-message">{move || message.get()}</p>
            {move || detail.get().map(|d| {
                let j = d.job.clone().unwrap_or_default();
                view! {
                    <dl class="pairs">
                        <dt>"Type"</dt><dd>{j.kind.clone()}</dd>
                        <dt>"State"</dt><dd data-testid="job-state">{state_label(j.state)}</dd>
                        <dt>"Attempt"</dt><dd>{j.attempt} " of " {j.max_attempts}</dd>
                        <dt>"Queue"</dt><dd>{j.queue.clone()}</dd>
                        <dt>"Created"</dt><dd>{time(j.created_at_unix_ms)}</dd>
                        <dt>"Due"</dt><dd>{time(j.run_at_unix_ms)}</dd>
                    </dl>
                    <h2>"Arguments"</h2>
                    <pre data-testid="job-args">{d.args_json.clone()}</pre>
                }
            })}
            {move || tenant().map(|t| view! { <p>"Concerns tenant " <a href=format!("/admin/tenants/{t}") data-testid="job-tenant">{t.clone()}</a></p> })}
            <div class="actions" role="group" aria-label="Actions">
                <button type="button" on:click=move |_| run(Action::Trigger)>"Trigger now"</button>
                <button type="button" on:click=move |_| run(Action::Requeue)>"Requeue"</button>
                <button type="button" class="danger" on:click=move |_| run(Action::Delete)>"Delete"</button>
            </div>
        </section>
        <section class="card">
            <h2>"History"</h2>
            <table class="grid" aria-label="State history" data-testid="history">
                <thead><tr><th>"When"</th><th>"State"</th><th>"Attempt"</th><th>"Worker"</th><th>"Why"</th></tr></thead>
                <tbody>
                    {move || detail.get().map(|d| d.history.into_iter().map(|h| view! {
                        <tr>
                            <td class="muted">{time(h.at_unix_ms)}</td>
                            <td>{state_label(h.state)}</td>
                            <td>{h.attempt}</td>
                            <td><code>{h.worker_id.clone()}</code></td>
                            <td>
                                {h.reason.clone()}
                                {(!h.error_chain.is_empty()).then(|| view! {
                                    <ol class="error-chain" data-testid="error-chain">
                                        {h.error_chain.iter().map(|e| view! { <li>{e.clone()}</li> }).collect::<Vec<_>>()}
                                    </ol>
                                })}
                            </td>
                        </tr>
                    }).collect::<Vec<_>>())}
                </tbody>
            </table>
        </section>
    }
}
