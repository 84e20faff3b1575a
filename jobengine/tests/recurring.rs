//! Recurring jobs, retention and cancellation, on both backends. Time is the
//! engine's manual clock: schedules fire when a test moves it, never on the wall
//! clock.

use std::sync::Arc;
use std::time::Duration;

use jobengine::builtin::Noop;
use jobengine::retention::{Retention, Sweep};
use jobengine::storage::{Completion, NewJob, Outcome};
use jobengine::testing::{TestDb, Which};
use jobengine::{
    ContinueOn, Job, JobContext, JobError, JobState, Jobs, ListQuery, ManualClock, Micros, MissedRuns, Recurring,
    Registry, StorageError, Worker, WorkerConfig, registry_with_builtins,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

jobengine::on_both!(
    fire_times_across_daylight_saving_in_berlin,
    downtime_runs_once_or_backfills,
    racing_schedulers_make_one_job_per_fire_time,
    pause_resume_trigger_remove,
    workers_run_the_scheduler_and_declare_retention,
    retention_removes_exactly_what_is_past_its_period,
    deleting_a_running_job_cancels_its_attempt,
);

const SEC: Micros = 1_000_000;
const HOUR: Micros = 3600 * SEC;

fn at(s: &str) -> Micros {
    s.parse::<jiff::Timestamp>().expect("timestamp").as_microsecond()
}

/// The `diag.noop` jobs a schedule enqueued: their `run_at` (the fire time), oldest first.
async fn fired(jobs: &Jobs, name: &str) -> Vec<Micros> {
    let prefix = format!("recurring:{name}:");
    let mut out = Vec::new();
    for state in [JobState::Enqueued, JobState::Succeeded, JobState::Processing] {
        let rows = jobs
            .list(&ListQuery { state, kind: None, before_id: None, limit: 10_000, text: None })
            .await
            .expect("list");
        out.extend(
            rows.into_iter()
                .filter(|r| r.unique_key.as_deref().is_some_and(|k| k.starts_with(&prefix)))
                .map(|r| r.run_at),
        );
    }
    out.sort_unstable();
    out
}

async fn fire_times_across_daylight_saving_in_berlin(which: Which) {
    let db = TestDb::new(which).await;
    let clock = ManualClock::new(at("2026-03-27T12:00:00Z"));
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let daily =
        Recurring::new("daily-0230", "30 2 * * *", &Noop {}).expect("cron").time_zone("Europe/Berlin").expect("tz");
    let hourly = Recurring::new("hourly", "0 * * * *", &Noop {}).expect("cron").time_zone("Europe/Berlin").expect("tz");
    jobs.declare_recurring(&[daily, hourly]).await.expect("declare");

    // Walk the clock hour by hour over both changes, firing on each step.
    let mut expected_daily = vec![
        at("2026-03-28T01:30:00Z"), // 02:30 CET
        at("2026-03-29T01:00:00Z"), // 02:30 does not exist: 03:00 CEST, the first instant after the gap
        at("2026-03-30T00:30:00Z"), // 02:30 CEST
    ];
    let mut t = at("2026-03-27T12:00:00Z");
    while t < at("2026-03-30T12:00:00Z") {
        t += HOUR / 2;
        clock.set(t);
        jobs.fire_due_recurring().await.expect("fire");
    }
    assert_eq!(fired(&jobs, "daily-0230").await, expected_daily, "spring forward");
    // 29 March in Berlin has 23 hours: 23 hourly fires between its midnights.
    let spring_day = fired(&jobs, "hourly").await;
    let n = spring_day.iter().filter(|&&f| f >= at("2026-03-28T23:00:00Z") && f < at("2026-03-29T22:00:00Z")).count();
    assert_eq!(n, 23, "hourly fires on the short day");

    // Autumn: jump ahead (downtime: one catch-up fire each), then walk again.
    clock.set(at("2026-10-24T12:00:00Z"));
    jobs.fire_due_recurring().await.expect("fire");
    let before = fired(&jobs, "daily-0230").await.len();
    let mut t = at("2026-10-24T12:00:00Z");
    while t < at("2026-10-26T12:00:00Z") {
        // The exact instant just before a fire time fires nothing new.
        t += HOUR / 2;
        clock.set(t - 1);
        let n0 = fired(&jobs, "hourly").await.len();
        jobs.fire_due_recurring().await.expect("fire");
        if (t - 1) % HOUR == HOUR - 1 {
            assert_eq!(fired(&jobs, "hourly").await.len(), n0, "nothing fires a microsecond early");
        }
        clock.set(t);
        jobs.fire_due_recurring().await.expect("fire");
    }
    let autumn: Vec<Micros> = fired(&jobs, "daily-0230").await[before..].to_vec();
    expected_daily = vec![
        at("2026-10-25T00:30:00Z"), // 02:30 CEST: the first of the two 02:30s, and only that one
        at("2026-10-26T01:30:00Z"), // 02:30 CET
    ];
    assert_eq!(autumn, expected_daily, "fall back");
    let autumn_hourly = fired(&jobs, "hourly").await;
    let n =
        autumn_hourly.iter().filter(|&&f| f >= at("2026-10-24T22:00:00Z") && f < at("2026-10-25T23:00:00Z")).count();
    assert_eq!(n, 25, "hourly fires on the long day: 02:00 twice, as two instants");
}

async fn downtime_runs_once_or_backfills(which: Which) {
    let db = TestDb::new(which).await;
    let start = at("2026-06-01T10:00:00Z");
    let clock = ManualClock::new(start);
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let once = Recurring::new("once", "*/5 * * * *", &Noop {}).expect("cron");
    let all = Recurring::new("all", "*/5 * * * *", &Noop {}).expect("cron").missed(MissedRuns::All);
    jobs.declare_recurring(&[once.clone(), all]).await.expect("declare");
    // Three hours with no scheduler (the whole cluster was down).
    clock.set(start + 3 * HOUR + 2 * 60 * SEC);
    // A restart declares again: the schedule keeps its place, nothing is skipped.
    jobs.declare_recurring(&[once]).await.expect("declare again");
    jobs.fire_due_recurring().await.expect("fire");
    jobs.fire_due_recurring().await.expect("a second pass fires nothing more");
    assert_eq!(fired(&jobs, "once").await, [start + 3 * HOUR], "one run, for the latest missed fire time");
    let backfilled = fired(&jobs, "all").await;
    assert_eq!(backfilled.len(), 36, "every missed five minutes");
    assert_eq!(backfilled.first(), Some(&(start + 5 * 60 * SEC)));
    assert_eq!(backfilled.last(), Some(&(start + 3 * HOUR)));
    let rows = jobs.list_recurring().await.expect("list");
    for r in &rows {
        assert_eq!(r.next_run, start + 3 * HOUR + 5 * 60 * SEC, "{}: next run after now", r.name);
        assert_eq!(r.last_run, Some(start + 3 * HOUR));
        assert_eq!(r.last_job_state.as_deref(), Some("enqueued"));
    }
}

async fn racing_schedulers_make_one_job_per_fire_time(which: Which) {
    let db = TestDb::new(which).await;
    let start = at("2026-06-01T10:00:00Z");
    let clock = ManualClock::new(start);
    // Four handles, four connection pools: four processes' schedulers.
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(db.jobs_with_clock(clock.clone()).await);
    }
    handles[0]
        .declare_recurring(&[Recurring::new("every-second", "* * * * * *", &Noop {}).expect("cron")])
        .await
        .expect("declare");
    for _ in 0..100 {
        clock.advance(Duration::from_secs(1));
        let barrier = Arc::new(tokio::sync::Barrier::new(handles.len() * 2));
        let mut tasks = Vec::new();
        // Two passes per handle, all released at once.
        for h in handles.iter().chain(handles.iter()) {
            let (h, b) = (h.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                h.fire_due_recurring().await.expect("no pass fails, whoever wins")
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("scheduler task");
        }
        assert_eq!(total, 1, "exactly one scheduler enqueued this fire time");
    }
    let fires = fired(&handles[0], "every-second").await;
    let expected: Vec<Micros> = (1..=100).map(|i| start + i * SEC).collect();
    assert_eq!(fires, expected, "one job per fire time, none missed");
}

async fn pause_resume_trigger_remove(which: Which) {
    let db = TestDb::new(which).await;
    let start = at("2026-06-01T10:00:30Z");
    let clock = ManualClock::new(start);
    let jobs = db.jobs_with_clock(clock.clone()).await;
    // Bad definitions name their field and write nothing.
    let bad_tz = Recurring::new("x", "* * * * *", &Noop {}).expect("cron").time_zone("Mars/Olympus");
    assert!(matches!(bad_tz, Err(StorageError::InvalidRecurring { field: "time_zone", .. })), "{bad_tz:?}");
    let bad_cron = Recurring::new("x", "61 * * * *", &Noop {});
    assert!(matches!(bad_cron, Err(StorageError::InvalidRecurring { field: "cron", .. })), "{bad_cron:?}");
    assert!(matches!(
        Recurring::new(" ", "* * * * *", &Noop {}),
        Err(StorageError::InvalidRecurring { field: "name", .. })
    ));

    jobs.declare_recurring(&[Recurring::new("minutely", "* * * * *", &Noop {}).expect("cron")]).await.expect("declare");
    let first = at("2026-06-01T10:01:00Z");
    assert_eq!(jobs.list_recurring().await.expect("list")[0].next_run, first);

    let paused = jobs.pause_recurring("minutely").await.expect("pause");
    assert!(paused.is_paused());
    clock.set(first + 10 * 60 * SEC);
    assert_eq!(jobs.fire_due_recurring().await.expect("fire"), 0, "a paused schedule does not fire");
    // Declaring again at a restart keeps it paused.
    jobs.declare_recurring(&[Recurring::new("minutely", "* * * * *", &Noop {}).expect("cron")]).await.expect("declare");
    assert_eq!(jobs.fire_due_recurring().await.expect("fire"), 0);

    // Trigger now: one job at once, the schedule untouched.
    let (e, triggered) = jobs.trigger_recurring("minutely").await.expect("trigger");
    assert!(!e.existing);
    let row = jobs.list_recurring().await.expect("list").remove(0);
    assert_eq!(triggered.last_job_id, row.last_job_id, "the schedule as it is after the trigger");
    assert_eq!((row.next_run, row.last_job_id, row.last_job_state.as_deref()), (first, Some(e.id), Some("enqueued")));
    assert_eq!(jobs.get(e.id).await.expect("job").job.kind, "diag.noop");

    // Resume: from the next fire time after now, the paused stretch not made up.
    let now = jobengine::Clock::now(&clock);
    let resumed = jobs.resume_recurring("minutely").await.expect("resume");
    assert!(!resumed.is_paused());
    assert_eq!(resumed.next_run, at("2026-06-01T10:12:00Z"), "resumed at {now}");
    assert_eq!(jobs.fire_due_recurring().await.expect("fire"), 0);
    clock.set(at("2026-06-01T10:12:00Z"));
    assert_eq!(jobs.fire_due_recurring().await.expect("fire"), 1);

    for op in ["pause", "resume", "trigger", "remove"] {
        let e = match op {
            "pause" => jobs.pause_recurring("nope").await.map(|_| ()),
            "resume" => jobs.resume_recurring("nope").await.map(|_| ()),
            "trigger" => jobs.trigger_recurring("nope").await.map(|_| ()),
            _ => jobs.remove_recurring("nope").await,
        };
        assert!(matches!(e, Err(StorageError::RecurringNotFound(ref n)) if n == "nope"), "{op}: {e:?}");
    }
    jobs.remove_recurring("minutely").await.expect("remove");
    assert!(jobs.list_recurring().await.expect("list").is_empty());
    clock.set(at("2026-06-01T11:00:00Z"));
    assert_eq!(jobs.fire_due_recurring().await.expect("fire"), 0, "a removed schedule never fires");
}

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll: Duration::from_millis(20),
        rescue_every: Duration::from_millis(50),
        schedule_every: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

fn start<C: Send + Sync + 'static>(
    jobs: &Jobs,
    registry: Registry<C>,
    app: C,
    cfg: WorkerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let worker = Worker::new(jobs, registry, Arc::new(app), cfg);
    let stop = CancellationToken::new();
    let s = stop.clone();
    (stop, tokio::spawn(async move { worker.run(s).await.expect("worker runs") }))
}

/// Polls (real time, bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

async fn workers_run_the_scheduler_and_declare_retention(which: Which) {
    let db = TestDb::new(which).await;
    let start = at("2026-06-01T10:00:30Z");
    let clock = ManualClock::new(start);
    let jobs = db.jobs_with_clock(clock.clone()).await;
    jobs.declare_recurring(&[Recurring::new("minutely", "* * * * *", &Noop {}).expect("cron")]).await.expect("declare");
    let cfg = WorkerConfig { retention: Some(Retention::default()), ..fast_worker() };
    let (stop, handle) = start_worker_builtins(&jobs, cfg);
    eventually("the worker declared the retention sweep", || async {
        jobs.list_recurring().await.expect("list").iter().any(|r| r.name == "jobs.retention" && r.kind == Sweep::KIND)
    })
    .await;
    // Real time passes; the manual clock does not: nothing fires.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fired(&jobs, "minutely").await.is_empty());
    clock.set(at("2026-06-01T10:01:00Z"));
    eventually("the worker's scheduler fired and ran the minute's jobs", || async {
        jobs.list_recurring().await.expect("list").iter().all(|r| r.last_job_state.as_deref() == Some("succeeded"))
    })
    .await;
    assert_eq!(fired(&jobs, "minutely").await, [at("2026-06-01T10:01:00Z")]);
    stop.cancel();
    handle.await.expect("worker stops");
}

fn start_worker_builtins(jobs: &Jobs, cfg: WorkerConfig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    start(jobs, registry_with_builtins::<()>(), (), cfg)
}

/// A job that finished at the clock's `at` in `state` (succeeded, dead or deleted).
async fn ended_at(jobs: &Jobs, clock: &ManualClock, at: Micros, state: JobState) -> i64 {
    clock.set(at);
    let e = jobs.enqueue(&Noop {}).await.expect("enqueue");
    if state == JobState::Deleted {
        jobs.delete(e.id, "admin").await.expect("delete");
        return e.id;
    }
    let claimed = jobs.store().fetch("w", &["default".into()], 1, at, at + HOUR).await.expect("fetch");
    assert_eq!(claimed[0].id, e.id);
    let outcome =
        if state == JobState::Dead { Outcome::Dead { errors: vec!["boom".into()] } } else { Outcome::Succeeded };
    let done = Completion { job_id: e.id, lease_seq: claimed[0].lease_seq, at, outcome };
    assert_eq!(jobs.store().complete(&[done], at).await.expect("complete"), [true]);
    e.id
}

async fn exists(jobs: &Jobs, id: i64) -> bool {
    jobs.get(id).await.is_ok()
}

async fn history_rows(jobs: &Jobs, id: i64) -> i64 {
    database::query("SELECT COUNT(*) FROM job_history WHERE job_id = $1")
        .bind(id)
        .scalar(jobs.db().read())
        .await
        .expect("count history")
}

async fn retention_removes_exactly_what_is_past_its_period(which: Which) {
    let db = TestDb::new(which).await;
    let t0 = at("2026-06-01T00:00:00Z");
    let clock = ManualClock::new(t0);
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let day = 24 * HOUR;

    // Live jobs from long ago, in a queue no worker here fetches: never touched.
    let live = |run_at: Option<Micros>| NewJob {
        kind: "diag.noop".into(),
        args: serde_json::json!({}),
        queue: "parked".into(),
        max_attempts: 1,
        unique_key: None,
        run_at,
        priority: 0,
    };
    let processing = jobs.enqueue_many(&[live(None)]).await.expect("enqueue")[0].id;
    jobs.store().fetch("w", &["parked".into()], 1, t0, t0 + 365 * day).await.expect("claim");
    let enqueued = jobs.enqueue_many(&[live(None)]).await.expect("enqueue")[0].id;
    let scheduled = jobs.enqueue_many(&[live(Some(t0 + 30 * day))]).await.expect("enqueue")[0].id;
    assert_eq!(jobs.get(processing).await.expect("get").job.state, JobState::Processing);
    // Waiting for the running job, which never ends here: awaiting all along.
    let awaiting = jobs.enqueue_after(processing, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;

    let succeeded = ended_at(&jobs, &clock, t0, JobState::Succeeded).await;
    let succeeded_later = ended_at(&jobs, &clock, t0 + 1, JobState::Succeeded).await;
    let deleted = ended_at(&jobs, &clock, t0, JobState::Deleted).await;
    let dead = ended_at(&jobs, &clock, t0, JobState::Dead).await;
    let dead_later = ended_at(&jobs, &clock, t0 + 1, JobState::Dead).await;
    // Its claim and its end (its creation is read from the row).
    assert!(history_rows(&jobs, succeeded).await >= 2);

    let live_ids = [enqueued, scheduled, processing, awaiting];
    let mut live_rows = Vec::new();
    for id in live_ids {
        live_rows.push(history_rows(&jobs, id).await);
    }
    assert!(live_rows.iter().sum::<i64>() >= 3, "rows to keep: {live_rows:?}");

    // The sweep runs as a job (here with a worker on the manual clock).
    let (stop, handle) = start_worker_builtins(&jobs, fast_worker());
    let sweep = |now: Micros| {
        let (jobs, clock) = (jobs.clone(), clock.clone());
        async move {
            clock.set(now);
            let s = Sweep { finished_secs: Some(24 * 3600), dead_secs: Some(7 * 24 * 3600) };
            let id = jobs.enqueue(&s).await.expect("enqueue sweep").id;
            eventually("the sweep ran", || {
                let jobs = jobs.clone();
                async move { jobs.get(id).await.expect("sweep job").job.state == JobState::Succeeded }
            })
            .await;
        }
    };
    // Exactly at the period: kept (removed only when strictly past it).
    sweep(t0 + day).await;
    for id in [succeeded, succeeded_later, deleted, dead, dead_later] {
        assert!(exists(&jobs, id).await, "job {id} is not past its period yet");
    }
    sweep(t0 + day + 1).await;
    assert!(!exists(&jobs, succeeded).await && !exists(&jobs, deleted).await, "one microsecond past: removed");
    assert_eq!(history_rows(&jobs, succeeded).await, 0, "its history went with it");
    assert_eq!(history_rows(&jobs, deleted).await, 0);
    assert!(exists(&jobs, succeeded_later).await, "ended a microsecond later: kept");
    assert!(exists(&jobs, dead).await, "dead jobs are kept a week");
    sweep(t0 + 7 * day).await;
    assert!(exists(&jobs, dead).await, "exactly a week: kept");
    sweep(t0 + 7 * day + 1).await;
    assert!(!exists(&jobs, dead).await && exists(&jobs, dead_later).await);
    assert_eq!(history_rows(&jobs, dead).await, 0);
    assert!(!exists(&jobs, succeeded_later).await);
    assert_eq!(jobs.get(awaiting).await.expect("get").job.state, JobState::Awaiting);
    for (id, rows) in live_ids.into_iter().zip(live_rows) {
        assert!(exists(&jobs, id).await, "live job {id} untouched");
        assert_eq!(history_rows(&jobs, id).await, rows, "live job {id}'s history untouched");
    }
    stop.cancel();
    handle.await.expect("worker stops");

    // Batches: more rows than one statement removes, all of them go. (First the
    // sweeps' own succeeded jobs, which are older.)
    jobs.store().remove_ended(JobState::Succeeded, t0 + 8 * day, 1000).await.expect("remove the sweeps");
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(ended_at(&jobs, &clock, t0 + 8 * day + i, JobState::Succeeded).await);
    }
    let removed =
        jobs.store().remove_ended(JobState::Succeeded, t0 + 8 * day + 20, 7).await.expect("remove in batches of 7");
    assert_eq!(removed, 20);
    let left: Vec<bool> = futures::future::join_all(ids.iter().map(|&id| exists(&jobs, id))).await;
    assert_eq!(left.iter().filter(|&&b| b).count(), 5);
    assert!(jobs.store().remove_ended(JobState::Processing, i64::MAX, 7).await.is_err(), "never live states");
    assert!(jobs.store().remove_ended(JobState::Awaiting, i64::MAX, 7).await.is_err(), "never awaiting jobs");
}

/// Reports what a [`Waits`] job saw.
struct Probe {
    started: mpsc::UnboundedSender<i64>,
    cancelled: mpsc::UnboundedSender<i64>,
}

/// Waits (up to a minute) until cancelled, then says so.
#[derive(serde::Serialize, serde::Deserialize)]
struct Waits {}

impl Job for Waits {
    const KIND: &'static str = "test.waits";
    type Context = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> Result<(), JobError> {
        let _ = ctx.app.started.send(ctx.job_id);
        tokio::select! {
            _ = ctx.cancelled() => {
                let _ = ctx.app.cancelled.send(ctx.job_id);
                // A handler that reports anything after cancellation: it must not land.
                Err(JobError::retry(anyhow::anyhow!("stopped: cancelled")))
            }
            _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
        }
    }
}

async fn deleting_a_running_job_cancels_its_attempt(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    // Another process's handle: the dashboard's server, deleting.
    let admin = db.jobs().await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (cancelled_tx, mut cancelled) = mpsc::unbounded_channel();
    // The engine's default lease and heartbeat: cancellation must not wait for a renewal.
    let cfg = WorkerConfig { concurrency: 4, ..WorkerConfig::default() };
    let (stop, handle) = start(
        &jobs,
        Registry::<Probe>::new().register::<Waits>(),
        Probe { started: started_tx, cancelled: cancelled_tx },
        cfg,
    );
    for (who, by) in [(&admin, "another process"), (&jobs, "this process")] {
        let mut ms = Vec::new();
        for round in 0..10 {
            let e = jobs.enqueue(&Waits {}).await.expect("enqueue");
            let first = tokio::time::timeout(Duration::from_secs(10), started.recv()).await.expect("started");
            assert_eq!(first, Some(e.id));
            let t = std::time::Instant::now();
            who.delete(e.id, "ops@example.com").await.expect("delete");
            let seen = tokio::time::timeout(Duration::from_secs(1), cancelled.recv()).await;
            assert_eq!(seen.ok().flatten(), Some(e.id), "deleted from {by}: the handler saw it within 1 s");
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if round == 0 {
                // The attempt's late failure must not resurrect the job (an absence:
                // nothing to await, so give it time to go wrong).
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let d = jobs.get(e.id).await.expect("get");
            assert_eq!(d.job.state, JobState::Deleted);
            let last = d.history.last().expect("history");
            assert_eq!((last.state, last.reason.as_deref()), (JobState::Deleted, Some("deleted by ops@example.com")));
            assert_eq!(d.history.iter().filter(|h| h.state == JobState::Scheduled).count(), 0, "no retry recorded");
        }
        // For the record (not asserted beyond the 1 s above).
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "{which:?}, deleted from {by}: delete -> handler sees it p50 {:.1} ms, p99 {:.1} ms",
            jobengine::testing::percentile(&ms, 50.0),
            jobengine::testing::percentile(&ms, 99.0)
        );
    }
    stop.cancel();
    handle.await.expect("worker stops");
}
