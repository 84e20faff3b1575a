//! `/hangfire`: the job dashboard, super admins only.
//!
//! - `/hangfire`: counts per state (live, `WatchCounts`), two charts (finished
//!   per second over the last minutes, per hour over the last 7 days), live
//!   workers with their last heartbeat;
//! - `/hangfire/jobs/:state`: one state's jobs, newest first, paged, filtered by
//!   type and text (a GET form: the filter is in the address), with trigger /
//!   requeue / delete on a selection (a POST form); refreshed live when the
//!   counts change. `dead` is another name for `failed`, as in the API;
//! - `/hangfire/recurring`: the recurring (cron) jobs, in
//!   `super::hangfire_recurring`;
//! - `/hangfire/job/:id`: arguments, state history, the error chain of each
//!   failure, the tenant it concerns, and the actions. 404 for an id that does
//!   not parse or does not exist.
//!
//! All three read their route parameters reactively: clicking from one tab or
//! job to another renders the other.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_location, use_params_map};
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;

use super::{SuperAdminOnly, query_param};
use crate::grpc::{Channel, Loaded};

fn client(ch: Channel) -> JobServiceClient<Channel> {
    JobServiceClient::new(ch)
}

/// The states, as (URL name, label, proto value). "failed" is the dead-letter queue;
/// "awaiting" holds continuations and batch completion jobs waiting for another
/// job to end (not due at any time, so not in Scheduled).
pub const STATES: [(&str, &str, pb::JobState); 7] = [
    ("enqueued", "Enqueued", pb::JobState::Enqueued),
    ("processing", "Processing", pb::JobState::Processing),
    ("scheduled", "Scheduled / retrying", pb::JobState::Scheduled),
    ("awaiting", "Awaiting", pb::JobState::Awaiting),
    ("succeeded", "Succeeded", pb::JobState::Succeeded),
    ("failed", "Failed (dead letters)", pb::JobState::Dead),
    ("deleted", "Deleted", pb::JobState::Deleted),
];

/// The list a URL name shows (`dead` is the API's name for `failed`).
pub fn find_state(name: &str) -> Option<(&'static str, &'static str, pb::JobState)> {
    let name = if name == "dead" { "failed" } else { name };
    STATES.iter().find(|s| s.0 == name).copied()
}

/// The URL name of a job state (`enqueued`, `failed`, ...).
pub fn state_label(state: i32) -> &'static str {
    STATES.iter().find(|s| s.2 as i32 == state).map_or("unknown", |s| s.0)
}

/// `ms` as a UTC date-time (`None` out of range), formatted with `format`.
fn utc(ms: i64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "–".into())
}

/// A Unix-milliseconds time as `YYYY-MM-DD HH:MM:SS` UTC (the same on server and
/// browser, so hydration agrees).
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "–".into();
    }
    utc(ms, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
}

/// `HH:MM:SS` UTC.
fn clock(ms: i64) -> String {
    utc(ms, time::macros::format_description!("[hour]:[minute]:[second]"))
}

/// `HH:MM` UTC.
fn hm(ms: i64) -> String {
    utc(ms, time::macros::format_description!("[hour]:[minute]"))
}

/// `MM-DD` UTC.
fn day(ms: i64) -> String {
    utc(ms, time::macros::format_description!("[month]-[day]"))
}

/// `MM-DD HH:00` UTC.
fn day_hour(ms: i64) -> String {
    utc(ms, time::macros::format_description!("[month]-[day] [hour]:00"))
}

fn count_of(c: &pb::JobCounts, s: pb::JobState) -> u64 {
    match s {
        pb::JobState::Enqueued => c.enqueued,
        pb::JobState::Processing => c.processing,
        pb::JobState::Scheduled => c.scheduled,
        pb::JobState::Awaiting => c.awaiting,
        pb::JobState::Succeeded => c.succeeded,
        pb::JobState::Dead => c.dead,
        pb::JobState::Deleted => c.deleted,
        pb::JobState::Unspecified => 0,
    }
}

/// The counts shown: live ones once the stream has sent any, else the loaded ones.
#[derive(Clone, Copy)]
pub struct Counts {
    loaded: Resource<Loaded<pb::JobCounts>, crate::grpc::ProtoCodec>,
    live: RwSignal<Option<pb::JobCounts>>,
}

impl Counts {
    /// Loads the counts for the first paint and follows `WatchCounts` in the
    /// browser, reconnecting after a pause.
    #[allow(clippy::new_without_default, reason = "it starts loading and a stream: not a plain default value")]
    pub fn new() -> Self {
        let loaded =
            crate::grpc::resource(|| (), |ch, ()| async move { client(ch).get_counts(pb::GetCountsRequest {}).await });
        let live = RwSignal::new(None);
        Effect::new(move |_| {
            crate::grpc::spawn_scoped(async move {
                loop {
                    let req = pb::WatchCountsRequest { interval_ms: 500 };
                    if let Ok(resp) = client(crate::grpc::channel()).watch_counts(req).await {
                        let mut s = resp.into_inner();
                        while let Ok(Some(c)) = s.message().await {
                            live.set(Some(c));
                        }
                    }
                    crate::grpc::sleep_ms(2000).await;
                }
            });
        });
        Self { loaded, live }
    }

    /// Inside a `Suspense`: the counts to show.
    fn get(&self) -> Option<pb::JobCounts> {
        self.live.get().or_else(|| self.loaded.get().and_then(Result::ok))
    }
}

/// The dashboard's own navigation; the current tab is `aria-current="page"`.
#[component]
pub fn DashNav(
    /// The counts shown beside each state.
    counts: Counts,
) -> impl IntoView {
    let location = use_location();
    let current = move |href: String| {
        let path = location.pathname.get();
        let path = if path == "/hangfire/jobs/dead" { "/hangfire/jobs/failed".to_owned() } else { path };
        (path == href).then_some("page")
    };
    view! {
        <nav class="dash-nav" aria-label="Job states">
            <a href="/hangfire" aria-current=move || current("/hangfire".into())>"Overview"</a>
            {STATES.iter().map(|(name, label, state)| {
                let (name, state) = (*name, *state);
                let href = format!("/hangfire/jobs/{name}");
                view! {
                    <a href=href.clone() data-testid=format!("nav-{name}") aria-current=move || current(href.clone())>
                        {*label} " "
                        <Suspense fallback=|| view! { <span class="pill">"–"</span> }>
                            <span class="pill" data-testid=format!("count-{name}")>
                                {move || counts.get().map(|c| count_of(&c, state).to_string()).unwrap_or_else(|| "–".into())}
                            </span>
                        </Suspense>
                    </a>
                }
            }).collect::<Vec<_>>()}
            <a href="/hangfire/recurring" data-testid="nav-recurring" aria-current=move || current("/hangfire/recurring".into())>"Recurring"</a>
            <a href="/hangfire/batches" data-testid="nav-batches" aria-current=move || current("/hangfire/batches".into())>"Batches"</a>
        </nav>
    }
}

/// `/hangfire`.
#[component]
pub fn OverviewPage() -> impl IntoView {
    view! { <Title text="Jobs"/><SuperAdminOnly><Overview/></SuperAdminOnly> }
}

/// Seconds per bucket and minutes shown by the realtime chart.
const REALTIME: (u32, u32) = (1, 5);
/// Seconds per bucket and minutes shown by the history chart (7 days).
const HISTORY: (u32, u32) = (3600, 7 * 24 * 60);

fn throughput(
    (bucket_seconds, minutes): (u32, u32),
    tick: ReadSignal<u64>,
) -> Resource<Loaded<pb::Throughput>, crate::grpc::ProtoCodec> {
    crate::grpc::resource(
        move || tick.get(),
        move |ch, _| async move { client(ch).get_throughput(pb::GetThroughputRequest { minutes, bucket_seconds }).await },
    )
}

/// Calls `f` every `ms` in the browser, for as long as the page is shown.
fn every(ms: i32, f: impl Fn() + Clone + 'static) {
    Effect::new(move |_| {
        let f = f.clone();
        crate::grpc::spawn_scoped(async move {
            loop {
                crate::grpc::sleep_ms(ms).await;
                f();
            }
        });
    });
}

#[component]
fn Overview() -> impl IntoView {
    let counts = Counts::new();
    let (rt_tick, set_rt_tick) = signal(0u64);
    let (hist_tick, set_hist_tick) = signal(0u64);
    let (workers_tick, set_workers_tick) = signal(0u64);
    let realtime = throughput(REALTIME, rt_tick);
    let history = throughput(HISTORY, hist_tick);
    let workers = crate::grpc::resource(
        move || workers_tick.get(),
        |ch, _| async move { client(ch).list_workers(pb::ListWorkersRequest {}).await },
    );
    every(2000, move || set_rt_tick.update(|n| *n += 1));
    every(60_000, move || set_hist_tick.update(|n| *n += 1));
    every(5000, move || set_workers_tick.update(|n| *n += 1));
    view! {
        <DashNav counts/>
        <section class="card">
            <h1>"Jobs"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                <dl class="counts">
                    {STATES.iter().map(|(name, label, state)| {
                        let (name, state) = (*name, *state);
                        view! {
                            <div class="count">
                                <dt><a href=format!("/hangfire/jobs/{name}")>{*label}</a></dt>
                                <dd data-testid=format!("total-{name}")>
                                    {move || counts.get().map(|c| count_of(&c, state).to_string()).unwrap_or_else(|| "–".into())}
                                </dd>
                            </div>
                        }
                    }).collect::<Vec<_>>()}
                </dl>
            </Suspense>
        </section>
        <section class="card">
            <h2 id="realtime-title">"Realtime: finished per second, last 5 minutes"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match realtime.await {
                        Ok(t) => view! { <Chart buckets=t.buckets bucket_ms=1000 tick_ms=60_000 tick_label=hm hover_label=clock testid="realtime" labelled_by="realtime-title"/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2 id="history-title">"History: finished per hour, last 7 days"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match history.await {
                        Ok(t) => view! { <Chart buckets=t.buckets bucket_ms=3_600_000 tick_ms=86_400_000 tick_label=day hover_label=day_hour testid="history" labelled_by="history-title"/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2>"Workers"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let rows = workers.await.map(|w| w.workers).unwrap_or_default();
                    view! {
                        <table class="grid cards" aria-label="Workers">
                            <thead><tr><th>"Worker"</th><th>"Queues"</th><th>"Running"</th><th>"Started (UTC)"</th><th>"Last heartbeat"</th></tr></thead>
                            <tbody>
                                {rows.into_iter().map(|w| view! {
                                    <tr data-testid="worker-row">
                                        <td data-label="Worker"><code>{w.id.clone()}</code></td>
                                        <td data-label="Queues">{w.queues.join(", ")}</td>
                                        <td data-label="Running">{w.running} " / " {w.concurrency}</td>
                                        <td data-label="Started" class="muted">{time(w.started_at_unix_ms)}</td>
                                        <td data-label="Heartbeat">{time(w.last_heartbeat_unix_ms)}</td>
                                    </tr>
                                }).collect::<Vec<_>>()}
                            </tbody>
                        </table>
                    }
                })}
            </Transition>
        </section>
    }
}

/// The largest of 1, 2, 5 × 10ⁿ steps that splits `max` into at most 4 parts,
/// and the axis top it gives.
fn nice_axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut step = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let s = step * m;
            if max.div_ceil(s) <= 4 {
                return (s, max.div_ceil(s) * s);
            }
        }
        step *= 10;
    }
}

/// Succeeded (green) and failed (red) jobs per bucket as an SVG line chart with
/// axes, ticks, grid lines and a value on hover (and in each point's tooltip).
#[component]
fn Chart(
    buckets: Vec<pb::ThroughputBucket>,
    bucket_ms: i64,
    tick_ms: i64,
    tick_label: fn(i64) -> String,
    hover_label: fn(i64) -> String,
    testid: &'static str,
    labelled_by: &'static str,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 26.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let n = buckets.len().max(1);
    let max = buckets.iter().map(|b| b.succeeded.max(b.dead)).max().unwrap_or(0);
    let (step, top) = nice_axis(max);
    let x = move |i: usize| LEFT + pw * (i as f64 + 0.5) / n as f64;
    let y = move |v: u64| TOP + ph - ph * v as f64 / top as f64;
    let line = |pick: fn(&pb::ThroughputBucket) -> u64| {
        buckets.iter().enumerate().map(|(i, b)| format!("{:.1},{:.1}", x(i), y(pick(b)))).collect::<Vec<_>>().join(" ")
    };
    let (ok_line, bad_line) = (line(|b| b.succeeded), line(|b| b.dead));
    let (ok_total, bad_total): (u64, u64) =
        (buckets.iter().map(|b| b.succeeded).sum(), buckets.iter().map(|b| b.dead).sum());
    let y_ticks = (0..=top / step).map(|k| k * step).collect::<Vec<_>>();
    let first = buckets.first().map_or(0, |b| b.at_unix_ms);
    let x_ticks = buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.at_unix_ms % tick_ms == 0 && b.at_unix_ms != first)
        .map(|(i, b)| (i, b.at_unix_ms))
        .collect::<Vec<_>>();
    let hovered = RwSignal::new(None::<usize>);
    let readout = {
        let buckets = buckets.clone();
        move || {
            hovered
                .get()
                .and_then(|i| buckets.get(i))
                .map(|b| format!("{} UTC: {} succeeded, {} failed", hover_label(b.at_unix_ms), b.succeeded, b.dead))
        }
    };
    let hit_w = pw / n as f64;
    view! {
        <figure class="chart-box" data-testid=testid>
            <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby=labelled_by
                aria-describedby=format!("{testid}-summary") data-testid="throughput">
                <g class="grid-lines">
                    {y_ticks.iter().map(|v| view! {
                        <line x1=LEFT x2=W - RIGHT y1=y(*v) y2=y(*v)/>
                        <text class="tick" x=LEFT - 6.0 y=y(*v) + 4.0 text-anchor="end">{v.to_string()}</text>
                    }).collect::<Vec<_>>()}
                </g>
                <g class="x-ticks">
                    {x_ticks.iter().map(|(i, at)| view! {
                        <line class="tick-mark" x1=x(*i) x2=x(*i) y1=TOP + ph y2=TOP + ph + 4.0/>
                        <text class="tick" x=x(*i) y=H - 8.0 text-anchor="middle" data-testid="x-tick">{tick_label(*at)}</text>
                    }).collect::<Vec<_>>()}
                </g>
                <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=TOP + ph/>
                <line class="axis" x1=LEFT x2=W - RIGHT y1=TOP + ph y2=TOP + ph/>
                <polyline class="ok" fill="none" points=ok_line/>
                <polyline class="bad" fill="none" points=bad_line/>
                {move || hovered.get().map(|i| view! { <line class="guide" x1=x(i) x2=x(i) y1=TOP y2=TOP + ph/> })}
                <g class="hits">
                    {buckets.iter().enumerate().map(|(i, b)| view! {
                        <rect x=LEFT + hit_w * i as f64 y=TOP width=hit_w height=ph data-testid="point"
                            on:mouseenter=move |_| hovered.set(Some(i))
                            on:mouseleave=move |_| hovered.set(None)>
                            <title>{format!("{} UTC: {} succeeded, {} failed", hover_label(b.at_unix_ms), b.succeeded, b.dead)}</title>
                        </rect>
                    }).collect::<Vec<_>>()}
                </g>
            </svg>
            <figcaption class="legend">
                <span class="ok">"■ succeeded " {ok_total}</span>
                " "
                <span class="bad">"■ failed " {bad_total}</span>
                " "
                <span class="muted" id=format!("{testid}-summary")>{format!("{ok_total} succeeded, {bad_total} failed; one point per {}", if bucket_ms >= 3_600_000 { "hour" } else { "second" })}</span>
                <span class="readout" data-testid="readout">{readout}</span>
            </figcaption>
        </figure>
    }
}

/// `/hangfire/jobs/:state`.
#[component]
pub fn JobListPage() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.read().get("state").unwrap_or_default());
    view! {
        <SuperAdminOnly>
            {move || match find_state(&name.get()) {
                Some(entry) => view! { <JobList entry/> }.into_any(),
                None => view! { <super::NotFound/> }.into_any(),
            }}
        </SuperAdminOnly>
    }
}

/// What the last column of a state's list shows.
fn detail_of(state: pb::JobState, j: &pb::JobSummary) -> (&'static str, String) {
    let first_line = |s: &str| s.lines().next().unwrap_or_default().to_owned();
    match state {
        pb::JobState::Enqueued => ("Due (UTC)", time(j.run_at_unix_ms)),
        pb::JobState::Processing => ("Step", j.progress.clone()),
        // When it is due comes first, as a `Due` (see `JobList`); the error of the
        // attempt it retries, if any, follows.
        pb::JobState::Scheduled => ("Due · last error", first_line(&j.last_error)),
        // What it waits for is on the job's page; here, since when.
        pb::JobState::Awaiting | pb::JobState::Succeeded => ("Created (UTC)", time(j.created_at_unix_ms)),
        pb::JobState::Dead | pb::JobState::Deleted => ("Last error", first_line(&j.last_error)),
        pb::JobState::Unspecified => ("", String::new()),
    }
}

#[component]
fn JobList(entry: (&'static str, &'static str, pb::JobState)) -> impl IntoView {
    let (name, label, state) = entry;
    let counts = Counts::new();
    let now = super::when::now();
    let kind = query_param("kind");
    let text = query_param("text");
    let before = query_param("before");
    let done = query_param("done");
    let failed = query_param("failed");
    let (refresh, set_refresh) = signal(0u64);
    let jobs = crate::grpc::resource(
        move || (kind.get(), text.get(), before.get(), refresh.get()),
        move |ch, (kind, text, before, _)| async move {
            let req = pb::ListJobsRequest { state: state as i32, page_size: 20, page_token: before, kind, text };
            client(ch).list_jobs(req).await
        },
    );
    // Live: reload when the counts move after the first paint.
    Effect::new(move |prev: Option<Option<pb::JobCounts>>| {
        let now = counts.live.get().map(|c| pb::JobCounts { at_unix_ms: 0, ..c });
        let base = counts.loaded.get_untracked().and_then(Result::ok).map(|c| pb::JobCounts { at_unix_ms: 0, ..c });
        let before = prev.flatten().or(base);
        if now.is_some() && before.is_some() && now != before {
            set_refresh.update(|n| *n += 1);
        }
        now.or(before)
    });
    let selected = RwSignal::new(std::collections::BTreeSet::<i64>::new());
    let (message, set_message) = signal(None::<String>);
    let (pending, set_pending) = signal("requeue");
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(_form) = super::submitted_form(&ev) else { return };
        let ids: Vec<i64> = selected.get_untracked().into_iter().collect();
        let action = pending.get_untracked();
        if ids.is_empty() {
            set_message.set(Some("select jobs first".into()));
            return;
        }
        crate::grpc::spawn(async move {
            let n = ids.len();
            let failures = act(action, ids).await;
            selected.set(Default::default());
            set_message.set(Some(outcome(n, &failures)));
            set_refresh.update(|n| *n += 1);
            super::focus_id("list-message");
        });
    };
    let shown_message = move || {
        message.get().or_else(|| {
            let (d, f) = (done.get(), failed.get());
            (!d.is_empty()).then(|| {
                let (d, f) = (d.parse::<usize>().unwrap_or(0), f.parse::<usize>().unwrap_or(0));
                if f == 0 { format!("done: {d} job(s)") } else { format!("{f} of {d} failed") }
            })
        })
    };
    let (detail_label, _) = detail_of(state, &pb::JobSummary::default());
    view! {
        <Title text=label/>
        <DashNav counts/>
        <section class="card">
            <h1>{label}</h1>
            <form class="inline-form" method="get" action=format!("/hangfire/jobs/{name}") aria-label="Filter jobs">
                <div>
                    <label for="kind">"Type"</label>
                    <input id="kind" name="kind" value=move || kind.get() placeholder="any type" aria-describedby="kind-hint"/>
                    <p class="hint" id="kind-hint">"exact job type, e.g. tenants.provision or mail.send"</p>
                </div>
                <div>
                    <label for="text">"Text"</label>
                    <input id="text" name="text" value=move || text.get() placeholder="any text" aria-describedby="text-hint"/>
                    <p class="hint" id="text-hint">"found in arguments or errors"</p>
                </div>
                <button type="submit">"Filter"</button>
            </form>
            <form method="post" action=format!("/hangfire/jobs/{name}") data-form="bulk" on:submit=on_submit>
                <div class="actions" role="group" aria-label="Actions on selected jobs">
                    <button type="submit" name="action" value="trigger" on:click=move |_| set_pending.set("trigger")>"Trigger now"</button>
                    <button type="submit" name="action" value="requeue" on:click=move |_| set_pending.set("requeue")>"Requeue"</button>
                    <button type="submit" name="action" value="delete" class="danger" on:click=move |_| set_pending.set("delete")>"Delete"</button>
                    <span class="muted" role="status" id="list-message" tabindex="-1" data-testid="list-message">{shown_message}</span>
                </div>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match jobs.await {
                            Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                            Ok(r) => {
                                let rows = r.jobs;
                                let ids: Vec<i64> = rows.iter().map(|j| j.id).collect();
                                let next = r.next_page_token;
                                let empty = rows.is_empty();
                                let all_ids = ids.clone();
                                view! {
                                    <table class="grid cards" aria-label=format!("{label} jobs") data-testid=format!("jobs-{name}")>
                                        <thead><tr>
                                            <th><input type="checkbox" aria-label="Select all" on:change=move |ev| {
                                                let on = event_target_checked(&ev);
                                                selected.set(if on { all_ids.iter().copied().collect() } else { Default::default() });
                                            } prop:checked=move || !ids.is_empty() && ids.iter().all(|x| selected.with(|s| s.contains(x)))/></th>
                                            <th>"Id"</th><th>"Type"</th><th>"Attempt"</th><th>{detail_label}</th>
                                        </tr></thead>
                                        <tbody>
                                            {rows.into_iter().map(|j| {
                                                let (_, detail) = detail_of(state, &j);
                                                let id = j.id;
                                                view! {
                                                    <tr data-testid="job-row" data-id=id.to_string()>
                                                        <td><input type="checkbox" name="id" value=id.to_string() aria-label=format!("Select job {id}")
                                                            prop:checked=move || selected.with(|s| s.contains(&id))
                                                            on:change=move |ev| {
                                                                let on = event_target_checked(&ev);
                                                                selected.update(|s| { if on { s.insert(id); } else { s.remove(&id); } });
                                                            }/></td>
                                                        <td data-label="Id"><a href=format!("/hangfire/job/{id}")>{format!("#{id}")}</a></td>
                                                        <td data-label="Type">{j.kind.clone()}</td>
                                                        <td data-label="Attempt">{j.attempt} " / " {j.max_attempts}</td>
                                                        <td data-label=detail_label class="clip" data-testid="job-detail">
                                                            {(state == pb::JobState::Scheduled).then(|| view! {
                                                                <super::when::Due ms=j.run_at_unix_ms now/>
                                                                {(!detail.is_empty()).then_some(" · ")}
                                                            })}
                                                            {detail}
                                                        </td>
                                                    </tr>
                                                }
                                            }).collect::<Vec<_>>()}
                                        </tbody>
                                    </table>
                                    {empty.then(|| view! { <p class="muted">"No jobs here."</p> })}
                                    <p class="pager">
                                        {(!before.get_untracked().is_empty()).then(|| view! {
                                            <a href=page_href(name, &kind.get_untracked(), &text.get_untracked(), "")>"Newest"</a>
                                        })}
                                        {(!next.is_empty()).then(|| view! {
                                            <a href=page_href(name, &kind.get_untracked(), &text.get_untracked(), &next)>"Older"</a>
                                        })}
                                    </p>
                                }.into_any()
                            }
                        }
                    })}
                </Transition>
            </form>
        </section>
    }
}

fn page_href(name: &str, kind: &str, text: &str, before: &str) -> String {
    let mut q = Vec::new();
    for (k, v) in [("kind", kind), ("text", text), ("before", before)] {
        if !v.is_empty() {
            q.push(format!("{k}={}", super::encode(v)));
        }
    }
    if q.is_empty() { format!("/hangfire/jobs/{name}") } else { format!("/hangfire/jobs/{name}?{}", q.join("&")) }
}

/// What a bulk action says when done.
fn outcome(n: usize, failures: &[String]) -> String {
    if failures.is_empty() {
        format!("done: {n} job(s)")
    } else {
        format!("{} of {n} failed: {}", failures.len(), failures.join("; "))
    }
}

/// Runs `action` (`trigger`, `requeue` or `delete`) on each id in turn; returns
/// the messages of failures.
pub async fn act(action: &str, ids: Vec<i64>) -> Vec<String> {
    let mut failures = Vec::new();
    for id in ids {
        let req = pb::JobIdRequest { id };
        let mut c = client(crate::grpc::channel());
        let r = match action {
            "trigger" => c.trigger_job(req).await,
            "requeue" => c.requeue_job(req).await,
            "delete" => c.delete_job(req).await,
            other => {
                Err(tonic::Status::invalid_argument(format!("action: {other:?} is not trigger, requeue or delete")))
            }
        };
        if let Err(s) = r {
            failures.push(format!("#{id}: {}", crate::grpc::message(&s)));
        }
    }
    failures
}

/// `/hangfire/job/:id`.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).filter(|n| *n > 0));
    view! {
        <SuperAdminOnly>
            {move || match id.get() {
                Some(id) => view! { <JobDetail id/> }.into_any(),
                None => view! { <super::NotFound/> }.into_any(),
            }}
        </SuperAdminOnly>
    }
}

#[component]
fn JobDetail(id: i64) -> impl IntoView {
    let (refresh, set_refresh) = signal(0u64);
    let done = query_param("done");
    let detail = crate::grpc::resource(
        move || refresh.get(),
        move |ch, _| async move { client(ch).get_job(pb::GetJobRequest { id }).await },
    );
    let (message, set_message) = signal(None::<String>);
    let (pending, set_pending) = signal("requeue");
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(_form) = super::submitted_form(&ev) else { return };
        let action = pending.get_untracked();
        crate::grpc::spawn(async move {
            let failures = act(action, vec![id]).await;
            set_message.set(Some(if failures.is_empty() { "done".into() } else { failures.join("; ") }));
            set_refresh.update(|n| *n += 1);
            super::focus_id("job-message");
        });
    };
    let shown = move || message.get().or_else(|| (!done.get().is_empty()).then(|| "done".to_owned()));
    view! {
        <Title text=format!("Job #{id}")/>
        <Transition fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) if e.is_not_found() => view! { <super::NotFound/> }.into_any(),
                    Err(e) => view! { <section class="card"><p class="error" role="alert">{e.message}</p></section> }.into_any(),
                    Ok(d) => {
                        let j = d.job.clone().unwrap_or_default();
                        let tenant = serde_json::from_str::<serde_json::Value>(&d.args_json)
                            .ok()
                            .and_then(|v| v.get("tenant_id").and_then(|t| t.as_str()).map(str::to_owned));
                        view! {
                            <section class="card">
                                <nav class="pager" aria-label="Other jobs">
                                    <a href="/hangfire">"← Dashboard"</a>
                                    {(id > 1).then(|| view! { <a href=format!("/hangfire/job/{}", id - 1)>{format!("Previous job #{}", id - 1)}</a> })}
                                    <a href=format!("/hangfire/job/{}", id + 1)>{format!("Next job #{}", id + 1)}</a>
                                </nav>
                                <h1>"Job #" {id}</h1>
                                <p class="muted" role="status" id="job-message" tabindex="-1" data-testid="job-message">{shown}</p>
                                <dl class="pairs">
                                    <dt>"Type"</dt><dd>{j.kind.clone()}</dd>
                                    <dt>"State"</dt><dd data-testid="job-state">{state_label(j.state)}</dd>
                                    <dt>"Attempt"</dt><dd>{j.attempt} " of " {j.max_attempts}</dd>
                                    <dt>"Queue"</dt><dd>{j.queue.clone()}</dd>
                                    <dt>"Created (UTC)"</dt><dd>{time(j.created_at_unix_ms)}</dd>
                                    <dt>"Due (UTC)"</dt><dd data-testid="job-due">{
                                        // An awaiting job has no due time (its row holds 9999-12-31).
                                        if j.state == pb::JobState::Awaiting as i32 {
                                            "when what it waits for has ended".to_owned()
                                        } else {
                                            time(j.run_at_unix_ms)
                                        }
                                    }</dd>
                                </dl>
                                <h2>"Arguments"</h2>
                                <pre data-testid="job-args">{d.args_json.clone()}</pre>
                                {tenant.map(|t| view! { <p>"Concerns tenant " <a href=format!("/admin/tenants/{t}") data-testid="job-tenant">{t.clone()}</a></p> })}
                                <Links waits_for=d.waits_for.clone() waited_on_by=d.waited_on_by.clone() batch_id=d.batch_id
                                    completes_batch_id=d.completes_batch_id/>
                                <form method="post" action=format!("/hangfire/job/{id}") data-form="job-actions" on:submit=on_submit>
                                    <div class="actions" role="group" aria-label="Actions">
                                        <button type="submit" name="action" value="trigger" on:click=move |_| set_pending.set("trigger")>"Trigger now"</button>
                                        <button type="submit" name="action" value="requeue" on:click=move |_| set_pending.set("requeue")>"Requeue"</button>
                                        <button type="submit" name="action" value="delete" class="danger" on:click=move |_| set_pending.set("delete")>"Delete"</button>
                                    </div>
                                </form>
                            </section>
                            <section class="card">
                                <h2>"History"</h2>
                                <table class="grid cards" aria-label="State history" data-testid="history">
                                    <thead><tr><th>"When (UTC)"</th><th>"State"</th><th>"Attempt"</th><th>"Worker"</th><th>"Why"</th></tr></thead>
                                    <tbody>
                                        {d.history.into_iter().map(|h| view! {
                                            <tr>
                                                <td data-label="When" class="muted">{time(h.at_unix_ms)}</td>
                                                <td data-label="State">{state_label(h.state)}</td>
                                                <td data-label="Attempt">{h.attempt}</td>
                                                <td data-label="Worker"><code>{h.worker_id.clone()}</code></td>
                                                <td data-label="Why">
                                                    {h.reason.clone()}
                                                    {(!h.error_chain.is_empty()).then(|| view! {
                                                        <ol class="error-chain" data-testid="error-chain">
                                                            {h.error_chain.iter().map(|e| view! { <li>{e.clone()}</li> }).collect::<Vec<_>>()}
                                                        </ol>
                                                    })}
                                                </td>
                                            </tr>
                                        }).collect::<Vec<_>>()}
                                    </tbody>
                                </table>
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// A continuation's condition, in words.
fn on_words(on: &str) -> &'static str {
    if on == "any" { "when it ends, however it ends" } else { "if it succeeds" }
}

/// What the job waits for, what waits for it, and its batch (as a member, or
/// as the job that runs once the batch has finished).
#[component]
fn Links(
    waits_for: Option<pb::JobLink>,
    waited_on_by: Vec<pb::JobLink>,
    batch_id: i64,
    completes_batch_id: i64,
) -> impl IntoView {
    let decided = |l: &pb::JobLink| {
        if l.decided_at_unix_ms > 0 { format!("decided {}", time(l.decided_at_unix_ms)) } else { "waiting".to_owned() }
    };
    view! {
        {waits_for.map(|l| view! {
            <p data-testid="job-waits-for">"Waits for job "
                <a href=format!("/hangfire/job/{}", l.job_id)>{format!("#{}", l.job_id)}</a>
                " — runs " {on_words(&l.on)} " (" {decided(&l)} ")"</p>
        })}
        {(!waited_on_by.is_empty()).then(|| view! {
            <h2>"Waited on by"</h2>
            <ul data-testid="job-waited-on-by">
                {waited_on_by.iter().map(|l| view! {
                    <li><a href=format!("/hangfire/job/{}", l.job_id)>{format!("Job #{}", l.job_id)}</a>
                        " runs " {on_words(&l.on)} " (" {decided(l)} ")"</li>
                }).collect::<Vec<_>>()}
            </ul>
        })}
        {(batch_id > 0).then(|| view! {
            <p data-testid="job-batch">"Part of " <a href=format!("/hangfire/batches/{batch_id}")>{format!("batch #{batch_id}")}</a></p>
        })}
        {(completes_batch_id > 0).then(|| view! {
            <p data-testid="job-completes-batch">"Runs once every job of "
                <a href=format!("/hangfire/batches/{completes_batch_id}")>{format!("batch #{completes_batch_id}")}</a>
                " has ended"</p>
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_axis(0), (1, 1));
        assert_eq!(nice_axis(3), (1, 3));
        assert_eq!(nice_axis(7), (2, 8));
        assert_eq!(nice_axis(17), (5, 20));
        assert_eq!(nice_axis(180), (50, 200));
    }

    #[test]
    fn dead_is_failed() {
        assert_eq!(find_state("dead").map(|s| s.0), Some("failed"));
        assert!(find_state("abc").is_none());
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn utc_formats() {
        assert_eq!(time(0), "–");
        assert_eq!(time(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(clock(1_700_000_000_123), "22:13:20");
        assert_eq!(hm(1_700_000_000_123), "22:13");
        assert_eq!(day(1_700_000_000_123), "11-14");
        assert_eq!(day_hour(1_700_000_000_123), "11-14 22:00");
    }
}
