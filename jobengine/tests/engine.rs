//! One suite, run against every backend (like River's driver tests): the whole
//! state machine, retry timing on a manual clock, leases and the fence, unique
//! keys, transactional enqueue, bad input, admin operations, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use jobengine::builtin::{Fail, Noop, Sleep};
use jobengine::storage::{Completion, NewJob, Outcome};
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{
    Job, JobState, Jobs, ListQuery, ManualClock, StorageError, Worker, WorkerConfig, registry_with_builtins,
};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(10);

jobengine::on_both!(
    happy_path_history,
    retries_follow_backoff_then_dead_letter,
    requeue_dead_job_runs_again,
    delete_and_trigger,
    unique_keys,
    transactional_enqueue,
    bad_input_fails_cleanly,
    expired_lease_is_rescued_and_fenced,
    interruptions_are_capped,
    graceful_shutdown_releases,
    concurrent_enqueues_from_two_pools,
    paging_and_filters,
    end_hooks_run_inside_the_transition,
    queue_limits_are_never_exceeded,
    a_scheduled_job_starts_when_due_not_a_poll_later,
    a_deleted_running_job_is_asked_to_stop_not_cut_off,
    prefetched_jobs_are_released_at_once_on_shutdown,
    prefetched_jobs_keep_their_leases,
    long_jobs_are_not_claimed_ahead,
);

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll: Duration::from_millis(20),
        rescue_every: Duration::from_millis(50),
        heartbeat: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

/// Starts a worker with the diagnostic jobs; returns its id and stopper.
fn start_worker(jobs: &Jobs, cfg: WorkerConfig) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let worker = Worker::new(jobs, registry_with_builtins::<()>(), Arc::new(()), cfg);
    let id = worker.id().to_owned();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let handle = tokio::spawn(async move { worker.run(s).await.expect("worker runs") });
    (id, stop, handle)
}

/// Waits (real time, bounded) until job `id` is in `state`.
async fn wait_for(jobs: &Jobs, id: i64, state: JobState) -> jobengine::JobDetail {
    for _ in 0..1500 {
        let d = jobs.get(id).await.expect("get job");
        if d.job.state == state {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = jobs.get(id).await.expect("get job");
    panic!("job {id} never reached {state}; it is {} with history {:#?}", d.job.state, d.history);
}

fn states(d: &jobengine::JobDetail) -> Vec<JobState> {
    d.history.iter().map(|h| h.state).collect()
}

async fn happy_path_history(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let e = jobs.enqueue(&Noop {}).await.expect("enqueue");
    assert!(!e.existing);
    assert_eq!(jobs.counts().await.expect("counts").enqueued, 1);
    let (wid, stop, handle) = start_worker(&jobs, worker_config());
    let d = wait_for(&jobs, e.id, JobState::Succeeded).await;
    assert_eq!(states(&d), [JobState::Enqueued, JobState::Processing, JobState::Succeeded]);
    assert_eq!(d.job.attempt, 1);
    assert_eq!(d.history[1].worker_id.as_deref(), Some(wid.as_str()));
    assert_eq!(d.history[2].worker_id.as_deref(), Some(wid.as_str()));
    assert!(d.job.finished_at.is_some());
    let live = jobs.workers(60_000_000).await.expect("workers");
    assert!(live.iter().any(|w| w.id == wid), "worker registered: {live:?}");
    stop.cancel();
    handle.await.expect("worker stops");
    assert!(jobs.workers(60_000_000).await.expect("workers").iter().all(|w| w.id != wid), "deregistered");
}

async fn retries_follow_backoff_then_dead_letter(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await.with_default_max_attempts(3);
    let e = jobs.enqueue(&Fail { message: "boom".into(), permanent: false }).await.expect("enqueue");
    let cfg = worker_config();
    let backoff = cfg.backoff;
    let (_wid, stop, handle) = start_worker(&jobs, cfg);

    for attempt in 1..=2u32 {
        let before = clock_now(&clock);
        let d = wait_for(&jobs, e.id, JobState::Scheduled).await;
        assert_eq!(d.job.attempt, attempt as i32);
        let (lo, hi) = backoff.bounds(attempt);
        let wait = d.job.run_at - before;
        assert!(
            wait >= lo.as_micros() as i64 && wait <= hi.as_micros() as i64,
            "retry {attempt} scheduled {wait} µs ahead, expected {lo:?}..={hi:?}"
        );
        let last = d.history.last().expect("history");
        assert_eq!(last.state, JobState::Scheduled);
        assert_eq!(last.errors(), ["diag.fail was asked to fail", "boom"]);
        // Not due yet: the worker must leave it alone however long real time passes.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(jobs.get(e.id).await.expect("get").job.state, JobState::Scheduled);
        clock.advance(hi);
        if attempt < 2 {
            // The next attempt runs once the clock passes run_at.
            wait_for_attempt(&jobs, e.id, attempt as i32 + 1).await;
        }
    }
    let d = wait_for(&jobs, e.id, JobState::Dead).await;
    assert_eq!(d.job.attempt, 3);
    assert_eq!(
        d.job.last_error.as_deref(),
        Some("diag.fail was asked to fail: boom"),
        "the whole chain, cause included"
    );
    assert_eq!(
        states(&d),
        [
            JobState::Enqueued,
            JobState::Processing,
            JobState::Scheduled,
            JobState::Processing,
            JobState::Scheduled,
            JobState::Processing,
            JobState::Dead
        ]
    );
    assert_eq!(jobs.counts().await.expect("counts").dead, 1);
    stop.cancel();
    handle.await.expect("worker stops");
}

fn clock_now(c: &ManualClock) -> i64 {
    jobengine::Clock::now(c)
}

async fn wait_for_attempt(jobs: &Jobs, id: i64, attempt: i32) {
    for _ in 0..1500 {
        if jobs.get(id).await.expect("get").job.attempt >= attempt {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never started attempt {attempt}");
}

async fn requeue_dead_job_runs_again(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let e = jobs.enqueue(&Fail { message: "bad request".into(), permanent: true }).await.expect("enqueue");
    let (_wid, stop, handle) = start_worker(&jobs, worker_config());
    let d = wait_for(&jobs, e.id, JobState::Dead).await;
    assert_eq!(d.job.attempt, 1, "a permanent error is dead at once");
    // Processing or enqueued jobs cannot be requeued; a dead one can.
    let noop = jobs.enqueue(&Noop {}).await.expect("enqueue");
    wait_for(&jobs, noop.id, JobState::Succeeded).await;
    let r = jobs.requeue(e.id, "admin@example.com").await.expect("requeue");
    assert_eq!(r.state, JobState::Enqueued);
    assert_eq!(r.attempt, 0);
    let d = wait_for_history_len(&jobs, e.id, 6).await;
    assert_eq!(d.history[3].reason.as_deref(), Some("requeued by admin@example.com"));
    assert_eq!(d.job.state, JobState::Dead);
    assert_eq!(d.job.attempt, 1, "fresh attempts after a requeue");
    stop.cancel();
    handle.await.expect("worker stops");
}

async fn wait_for_history_len(jobs: &Jobs, id: i64, n: usize) -> jobengine::JobDetail {
    for _ in 0..1500 {
        let d = jobs.get(id).await.expect("get");
        if d.history.len() >= n {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} history never reached {n} entries");
}

async fn delete_and_trigger(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let later = clock_now(&clock) + 3_600_000_000;
    let a = jobs.enqueue_at(&Noop {}, Some(later)).await.expect("enqueue");
    let b = jobs.enqueue(&Noop {}).await.expect("enqueue");
    assert_eq!(jobs.get(a.id).await.expect("get").job.state, JobState::Scheduled);
    assert!(matches!(jobs.requeue(b.id, "x").await, Err(StorageError::WrongState { state: JobState::Enqueued, .. })));
    let deleted = jobs.delete(b.id, "admin").await.expect("delete");
    assert_eq!(deleted.state, JobState::Deleted);
    assert!(matches!(jobs.delete(b.id, "admin").await, Err(StorageError::WrongState { .. })));
    assert!(matches!(jobs.delete(999_999, "admin").await, Err(StorageError::NotFound(999_999))));

    let (_wid, stop, handle) = start_worker(&jobs, worker_config());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(jobs.get(b.id).await.expect("get").job.state, JobState::Deleted, "deleted jobs never run");
    assert_eq!(jobs.get(a.id).await.expect("get").job.state, JobState::Scheduled, "not due yet");
    jobs.trigger(a.id, "admin").await.expect("trigger");
    let d = wait_for(&jobs, a.id, JobState::Succeeded).await;
    assert_eq!(d.history[1].reason.as_deref(), Some("triggered by admin"));
    // A deleted job can be brought back.
    jobs.requeue(b.id, "admin").await.expect("requeue deleted");
    wait_for(&jobs, b.id, JobState::Succeeded).await;
    stop.cancel();
    handle.await.expect("worker stops");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Keyed {
    key: String,
}

impl Job for Keyed {
    const KIND: &'static str = "test.keyed";
    type Context = ();
    fn unique_key(&self) -> Option<String> {
        Some(format!("keyed:{}", self.key))
    }
    async fn run(self, _ctx: jobengine::JobContext<()>) -> Result<(), jobengine::JobError> {
        Ok(())
    }
}

async fn unique_keys(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let first = jobs.enqueue(&Keyed { key: "t1".into() }).await.expect("enqueue");
    let again = jobs.enqueue(&Keyed { key: "t1".into() }).await.expect("enqueue");
    let other = jobs.enqueue(&Keyed { key: "t2".into() }).await.expect("enqueue");
    assert_eq!(again.id, first.id);
    assert!(again.existing && !first.existing && !other.existing);
    assert_ne!(other.id, first.id);
    assert_eq!(jobs.counts().await.expect("counts").enqueued, 2);
    // Once the holder is finished the key is free again.
    let worker = Worker::new(&jobs, registry_with_builtins::<()>().register::<Keyed>(), Arc::new(()), worker_config());
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    wait_for(&jobs, first.id, JobState::Succeeded).await;
    let third = jobs.enqueue(&Keyed { key: "t1".into() }).await.expect("enqueue");
    assert!(!third.existing);
    wait_for(&jobs, third.id, JobState::Succeeded).await;
    // Requeueing the old holder while a live job holds the key is refused.
    let fourth = jobs.enqueue_at(&Keyed { key: "t1".into() }, Some(i64::MAX / 2)).await.expect("enqueue");
    assert!(matches!(jobs.requeue(first.id, "admin").await, Err(StorageError::UniqueKeyTaken(_))));
    assert_eq!(jobs.get(first.id).await.expect("get").job.state, JobState::Succeeded, "unchanged");
    jobs.delete(fourth.id, "admin").await.expect("delete");
    stop.cancel();
    handle.await.expect("join").expect("worker");
}

async fn transactional_enqueue(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut tx = jobs.begin().await.expect("begin");
    let e = jobs.enqueue_in(&mut tx, &Noop {}).await.expect("enqueue in tx");
    tx.rollback().await.expect("rollback");
    assert!(matches!(jobs.get(e.id).await, Err(StorageError::NotFound(_))));
    assert_eq!(jobs.counts().await.expect("counts"), Default::default(), "a rolled-back enqueue leaves nothing");
    // Dropping a transaction without committing is a rollback too.
    {
        let mut tx = jobs.begin().await.expect("begin");
        jobs.enqueue_in(&mut tx, &Noop {}).await.expect("enqueue in tx");
    }
    assert_eq!(jobs.counts().await.expect("counts").enqueued, 0);
    let mut tx = jobs.begin().await.expect("begin");
    let e = jobs.enqueue_in(&mut tx, &Noop {}).await.expect("enqueue in tx");
    tx.commit().await.expect("commit");
    assert_eq!(jobs.get(e.id).await.expect("get").job.state, JobState::Enqueued);
}

async fn bad_input_fails_cleanly(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let base = jobs.new_job(&Noop {}, None).expect("new job");
    let unknown = NewJob { kind: "no.such.type".into(), ..base.clone() };
    let garbled = NewJob { kind: Sleep::KIND.into(), args: serde_json::json!({"ms": "soon"}), ..base.clone() };
    let ids = jobs.enqueue_many(&[unknown, garbled]).await.expect("enqueue");
    let (_wid, stop, handle) = start_worker(&jobs, worker_config());
    let d = wait_for(&jobs, ids[0].id, JobState::Dead).await;
    let errs = d.history.last().expect("history").errors();
    assert!(errs[0].starts_with("unknown job type \"no.such.type\""), "{errs:?}");
    let d = wait_for(&jobs, ids[1].id, JobState::Dead).await;
    let errs = d.history.last().expect("history").errors();
    assert_eq!(errs[0], "cannot decode the arguments of a \"diag.sleep\" job");
    assert!(errs[1].contains("invalid type"), "{errs:?}");
    // The worker is still alive and running jobs.
    let ok = jobs.enqueue(&Noop {}).await.expect("enqueue");
    wait_for(&jobs, ok.id, JobState::Succeeded).await;
    stop.cancel();
    handle.await.expect("worker stops");
}

async fn expired_lease_is_rescued_and_fenced(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let store = jobs.store().clone();
    let e = jobs.enqueue(&Noop {}).await.expect("enqueue");
    let now = clock_now(&clock);
    let lease = LEASE.as_micros() as i64;
    let claimed = store.fetch("dead-worker", &["default".into()], 10, now, now + lease).await.expect("fetch");
    assert_eq!(claimed.len(), 1);
    let seq = claimed[0].lease_seq;
    // Nothing else can claim it while the lease holds.
    assert!(store.fetch("other", &["default".into()], 10, now, now + lease).await.expect("fetch").is_empty());
    assert_eq!(store.rescue(now + lease - 1, 20).await.expect("rescue").requeued, 0, "lease still valid");
    clock.advance(LEASE + Duration::from_secs(1));
    let r = store.rescue(clock_now(&clock), 20).await.expect("rescue");
    assert_eq!((r.requeued, r.dead), (1, 0));
    let d = jobs.get(e.id).await.expect("get");
    assert_eq!(d.job.state, JobState::Enqueued);
    let last = d.history.last().expect("history");
    assert_eq!(
        last.reason.as_deref(),
        Some("attempt 1 interrupted: worker dead-worker stopped renewing its lease (1 of 20 interruptions allowed)")
    );
    assert_eq!(last.worker_id.as_deref(), Some("dead-worker"));
    assert_eq!((last.attempt, d.job.attempt), (1, 0), "the interrupted attempt is not counted");
    // The new claim gets a new fence; the stale worker's renewal and completion fail.
    let now = clock_now(&clock);
    let again = store.fetch("new-worker", &["default".into()], 10, now, now + lease).await.expect("fetch");
    assert_eq!(again[0].attempt, 1);
    assert!(again[0].lease_seq > seq);
    assert_eq!(store.extend_leases(&[(e.id, seq)], now + lease).await.expect("extend"), [e.id]);
    let stale = Completion { job_id: e.id, lease_seq: seq, at: now, outcome: Outcome::Succeeded };
    assert_eq!(store.complete(&[stale], now).await.expect("complete"), [false]);
    assert_eq!(jobs.get(e.id).await.expect("get").job.state, JobState::Processing);
    let fresh = Completion { job_id: e.id, lease_seq: again[0].lease_seq, at: now, outcome: Outcome::Succeeded };
    assert_eq!(store.complete(&[fresh], now).await.expect("complete"), [true]);
    let d = jobs.get(e.id).await.expect("get");
    assert_eq!(d.job.state, JobState::Succeeded);
    assert_eq!(d.history.iter().filter(|h| h.state == JobState::Succeeded).count(), 1);
}

async fn interruptions_are_capped(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    // One retry only: interruptions must not use it up, but their own cap ends
    // a job that keeps killing its worker.
    let jobs = db.jobs_with_clock(clock.clone()).await.with_default_max_attempts(1);
    let store = jobs.store().clone();
    let e = jobs.enqueue(&Noop {}).await.expect("enqueue");
    for round in 1..=3u32 {
        let now = clock_now(&clock);
        let got = store.fetch("w", &["default".into()], 1, now, now + 1_000_000).await.expect("fetch");
        assert_eq!((got.len(), got[0].attempt), (1, 1), "round {round}: claimed as attempt 1 again");
        clock.advance(Duration::from_secs(2));
        let r = store.rescue(clock_now(&clock), 3).await.expect("rescue");
        if round < 3 {
            assert_eq!((r.requeued, r.dead), (1, 0), "round {round}");
        } else {
            assert_eq!((r.requeued, r.dead), (0, 1), "the third interruption of three allowed");
        }
    }
    let d = jobs.get(e.id).await.expect("get");
    assert_eq!(d.job.state, JobState::Dead);
    let last = d.history.last().expect("history");
    assert!(last.reason.as_deref().is_some_and(|r| r.contains("(3 of 3 interruptions allowed)")), "{last:?}");
    assert_eq!(last.errors().len(), 1);
}

async fn graceful_shutdown_releases(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let quick = jobs.enqueue(&Sleep { ms: 50 }).await.expect("enqueue");
    let slow = jobs.enqueue(&Sleep { ms: 60_000 }).await.expect("enqueue");
    let cfg = WorkerConfig { grace: Duration::from_millis(400), ..worker_config() };
    let (wid, stop, handle) = start_worker(&jobs, cfg);
    wait_for(&jobs, slow.id, JobState::Processing).await;
    // The job reports its step just after it starts.
    let mut progress = None;
    for _ in 0..300 {
        progress = jobs.get(slow.id).await.expect("get").job.progress;
        if progress.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(progress.as_deref(), Some("sleeping 60000 ms"));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle).await.expect("stops within the grace").expect("join");
    assert_eq!(jobs.get(quick.id).await.expect("get").job.state, JobState::Succeeded, "finished within the grace");
    let d = jobs.get(slow.id).await.expect("get");
    assert_eq!(d.job.state, JobState::Enqueued, "released");
    assert_eq!(d.job.attempt, 0, "a released attempt is not counted");
    let last = d.history.last().expect("history");
    assert_eq!(last.worker_id.as_deref(), Some(wid.as_str()));
    assert!(last.reason.as_deref().is_some_and(|r| r.starts_with("released")));
}

async fn concurrent_enqueues_from_two_pools(which: Which) {
    let db = TestDb::new(which).await;
    // Two independent handles = two connection pools, as two processes would have.
    let a = db.jobs().await;
    let b = db.jobs().await;
    let (_wid, stop, handle) = start_worker(&a, worker_config());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let jobs = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                jobs.enqueue(&Noop {}).await.expect("no enqueue fails (no 'database is locked')");
            }
        }));
    }
    for t in tasks {
        t.await.expect("enqueuer");
    }
    for _ in 0..1000 {
        if a.counts().await.expect("counts").succeeded == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.counts().await.expect("counts"), jobengine::StateCounts { succeeded: 400, ..Default::default() });
    stop.cancel();
    handle.await.expect("worker stops");
}

async fn paging_and_filters(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let e = if i % 2 == 0 { jobs.enqueue(&Noop {}).await } else { jobs.enqueue(&Sleep { ms: 1 }).await };
        ids.push(e.expect("enqueue").id);
    }
    let page1 = jobs
        .list(&ListQuery { state: JobState::Enqueued, kind: None, before_id: None, limit: 5, text: None })
        .await
        .expect("list");
    assert_eq!(page1.iter().map(|j| j.id).collect::<Vec<_>>(), ids.iter().rev().take(5).copied().collect::<Vec<_>>());
    let page2 = jobs
        .list(&ListQuery {
            state: JobState::Enqueued,
            kind: None,
            before_id: page1.last().map(|j| j.id),
            limit: 5,
            text: None,
        })
        .await
        .expect("list");
    assert_eq!(page2.len(), 2);
    let sleeps = jobs
        .list(&ListQuery {
            state: JobState::Enqueued,
            kind: Some("diag.sleep".into()),
            before_id: None,
            limit: 50,
            text: None,
        })
        .await
        .expect("list");
    assert_eq!(sleeps.len(), 3);
    assert!(sleeps.iter().all(|j| j.kind == "diag.sleep"));
    let none = jobs
        .list(&ListQuery { state: JobState::Dead, kind: None, before_id: None, limit: 50, text: None })
        .await
        .expect("list");
    assert!(none.is_empty());
}

/// PostgreSQL only: killing the `LISTEN` connection never stalls work (the worker
/// polls meanwhile), and the listener comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_loss_does_not_stall() {
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    let admin = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let cfg = WorkerConfig { poll: Duration::from_millis(300), ..worker_config() };
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    let kill_listeners = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&admin)
        .await
        .expect("terminate")
    };
    // Wait for the listener to be up, then cut it.
    let mut killed = 0;
    for _ in 0..100 {
        killed = kill_listeners().await;
        if killed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed > 0, "a LISTEN connection existed");
    for _ in 0..3 {
        let e = jobs.enqueue(&Noop {}).await.expect("enqueue");
        wait_for(&jobs, e.id, JobState::Succeeded).await;
    }
    // The listener reconnects.
    let mut back = false;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&admin)
        .await
        .expect("count");
        if n > 0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(back, "the listener reconnected");
    stop.cancel();
    handle.await.expect("worker stops");
}

/// PostgreSQL only: a worker that starts while the database is down (a restart
/// under a process that just opened it, say) waits for it to come back and then
/// runs jobs, rather than giving up and leaving the process without a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_worker_starting_during_an_outage_waits_for_the_database() {
    let pg = jobengine::testing::PgCluster::start(false).expect("a PostgreSQL cluster of our own");
    let jobs = Jobs::connect(&pg.url).await.expect("open");
    pg.stop_immediate().expect("stop PostgreSQL");
    let (_wid, stop, handle) = start_worker(&jobs, worker_config());
    // Longer than a statement waits for the database to come back: the start's
    // first statements fail.
    tokio::time::sleep(database::reach::OUTAGE_GRACE + Duration::from_secs(2)).await;
    assert!(!handle.is_finished(), "the worker waits for the database rather than ending");
    pg.start_again().expect("start PostgreSQL");
    let back = std::time::Instant::now();
    let e = loop {
        match jobs.enqueue(&Noop {}).await {
            Ok(e) => break e,
            Err(err) if back.elapsed() < Duration::from_secs(15) => {
                assert!(err.is_unavailable(), "{err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("PostgreSQL did not come back: {err}"),
        }
    };
    // Requests may still be refused until the server's probe sees it back.
    loop {
        match jobs.get(e.id).await {
            Ok(d) if d.job.state == JobState::Succeeded => break,
            Ok(_) => {}
            Err(err) => assert!(err.is_unavailable(), "{err}"),
        }
        assert!(back.elapsed() < Duration::from_secs(20), "the job did not run once PostgreSQL was back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.expect("worker stops");
}

/// PostgreSQL only: a worker whose liveness lock's connection is cut (as by a
/// database restart) keeps its running job: its own rescuer never takes it back
/// meanwhile, and the job ends with one attempt and no interruption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_liveness_lock_does_not_rescue_our_own_jobs() {
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    let admin = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // A lease far longer than the test: only liveness could bring the job back.
    let cfg = WorkerConfig { lease: Duration::from_secs(120), ..worker_config() };
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    let e = jobs.enqueue(&Sleep { ms: 1500 }).await.expect("enqueue");
    wait_for(&jobs, e.id, JobState::Processing).await;
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(l.pid)) FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objsubid = 2 AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(jobengine::liveness::LOCK_CLASS))
    .fetch_one(&admin)
    .await
    .expect("terminate the lock's session");
    // Only this database's two-key locks: other tests share the server, and a
    // one-key (bigint) lock whose high half is the class (the search indexer's)
    // shows the same `classid` with `objsubid` 1.
    assert_eq!(cut, 1, "the worker's liveness lock was held");
    let d = wait_for(&jobs, e.id, JobState::Succeeded).await;
    assert_eq!(
        states(&d),
        [JobState::Enqueued, JobState::Processing, JobState::Succeeded],
        "never taken back from its live worker: {:#?}",
        d.history
    );
    stop.cancel();
    handle.await.expect("worker stops");
}

/// A job type with an end hook that records how each job ended in a table of
/// the test's own, inside the transition's transaction; `refuse` makes the hook
/// fail.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Audited {
    fail: bool,
    refuse: bool,
}

impl Job for Audited {
    const KIND: &'static str = "test.audited";
    const MAX_ATTEMPTS: Option<u32> = Some(1);
    type Context = ();
    async fn run(self, _ctx: jobengine::JobContext<()>) -> Result<(), jobengine::JobError> {
        if self.fail { Err(jobengine::JobError::retry(anyhow::anyhow!("audited job failed"))) } else { Ok(()) }
    }
}

impl jobengine::OnEnd for Audited {
    async fn on_end(self, end: jobengine::EndContext<'_, ()>) -> anyhow::Result<()> {
        anyhow::ensure!(!self.refuse, "the hook refuses");
        let how = match end.ended {
            jobengine::Ended::Succeeded => "succeeded".to_owned(),
            jobengine::Ended::Dead { error } => format!("dead: {error}"),
            jobengine::Ended::Deleted { reason } => format!("deleted: {reason}"),
        };
        database::query("INSERT INTO audit (job_id, how) VALUES ($1, $2)")
            .bind(end.job_id)
            .bind(how)
            .execute(end.tx)
            .await?;
        Ok(())
    }
}

async fn end_hooks_run_inside_the_transition(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    database::query("CREATE TABLE audit (job_id BIGINT NOT NULL, how TEXT NOT NULL)")
        .execute(jobs.db().write())
        .await
        .expect("audit table");
    let audit = |id: i64| {
        let jobs = jobs.clone();
        async move {
            database::query("SELECT how FROM audit WHERE job_id = $1")
                .bind(id)
                .scalars::<String>(jobs.db().read())
                .await
                .expect("audit")
        }
    };
    let registry = registry_with_builtins::<()>().register::<Audited>().on_end::<Audited>();
    // A delete through the handle runs the hook with no worker at all.
    jobs.install_end_hooks(&registry, Arc::new(()));
    let waiting = jobs.enqueue_at(&Audited { fail: false, refuse: false }, Some(i64::MAX / 2)).await.expect("enqueue");
    jobs.delete(waiting.id, "ops@example.com").await.expect("delete");
    assert_eq!(audit(waiting.id).await, ["deleted: deleted by ops@example.com"]);
    // A hook that fails stops the transition: the job is not deleted.
    let kept = jobs.enqueue_at(&Audited { fail: false, refuse: true }, Some(i64::MAX / 2)).await.expect("enqueue");
    let e = jobs.delete(kept.id, "ops").await.expect_err("the hook refuses");
    assert!(matches!(e, StorageError::Hook(_)), "{e:?}");
    assert_eq!(jobs.get(kept.id).await.expect("get").job.state, JobState::Scheduled);
    assert!(audit(kept.id).await.is_empty());

    let worker = Worker::new(&jobs, registry, Arc::new(()), worker_config());
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let s = stop.clone();
        async move { worker.run(s).await.expect("worker runs") }
    });
    let ok = jobs.enqueue(&Audited { fail: false, refuse: false }).await.expect("enqueue");
    let bad = jobs.enqueue(&Audited { fail: true, refuse: false }).await.expect("enqueue");
    // Noise in the same batches: jobs without a hook.
    for _ in 0..20 {
        jobs.enqueue(&Noop {}).await.expect("enqueue");
    }
    wait_for(&jobs, ok.id, JobState::Succeeded).await;
    wait_for(&jobs, bad.id, JobState::Dead).await;
    assert_eq!(audit(ok.id).await, ["succeeded"]);
    assert_eq!(audit(bad.id).await, ["dead: audited job failed"]);
    stop.cancel();
    handle.await.expect("worker stops");
}

/// How many `Gauged` jobs run at once, per queue, and the most ever seen.
#[derive(Default)]
struct Gauges {
    now: std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>,
}

/// Sleeps while counted in its queue's gauge: what a handler sees, not the
/// rows' states (the completer records outcomes a moment after the slot is free).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Gauged {
    queue: String,
}

impl Job for Gauged {
    const KIND: &'static str = "test.gauged";
    type Context = Gauges;
    async fn run(self, ctx: jobengine::JobContext<Gauges>) -> Result<(), jobengine::JobError> {
        {
            let mut m = ctx.app.now.lock().expect("gauges");
            let g = m.entry(self.queue.clone()).or_default();
            g.0 += 1;
            g.1 = g.1.max(g.0);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        ctx.app.now.lock().expect("gauges").entry(self.queue).or_default().0 -= 1;
        Ok(())
    }
}

/// A cap on one queue holds with a backlog in it and in another, while the other
/// queue takes the remaining slots; the workers view shows the cap.
async fn queue_limits_are_never_exceeded(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut batch = Vec::new();
    for _ in 0..20 {
        for queue in ["mail", "default"] {
            let mut job = jobs.new_job(&Gauged { queue: queue.into() }, None).expect("job");
            job.queue = queue.into();
            batch.push(job);
        }
    }
    jobs.enqueue_many(&batch).await.expect("enqueue");
    let gauges = Arc::new(Gauges::default());
    let cfg = WorkerConfig {
        concurrency: 6,
        queues: vec!["mail".into(), "default".into()],
        queue_limits: vec![("mail".into(), 2)],
        ..worker_config()
    };
    let worker = Worker::new(&jobs, jobengine::Registry::new().register::<Gauged>(), gauges.clone(), cfg);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let handle = tokio::spawn(async move { worker.run(s).await.expect("worker runs") });
    for _ in 0..3000 {
        if jobs.counts().await.expect("counts").succeeded == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shown = jobs.workers(60_000_000).await.expect("workers");
    stop.cancel();
    handle.await.expect("worker");
    assert_eq!(jobs.counts().await.expect("counts").succeeded, 40, "every job ran");
    let seen = gauges.now.lock().expect("gauges").clone();
    let max = |q: &str| seen.get(q).map_or(0, |g| g.1);
    assert_eq!(max("mail"), 2, "the capped queue ran at most (and at times exactly) its cap: {seen:?}");
    assert!(max("default") > 2, "the other queue used the slots the cap left: {seen:?}");
    assert!(shown.iter().any(|w| w.queues == "mail (max 2),default"), "{shown:?}");
}

/// An idle worker sleeps until the next scheduled job falls due, not a whole
/// poll: with a minute-long poll, jobs due in 300 ms still run within seconds,
/// whether scheduled before the worker went idle or while it waits.
async fn a_scheduled_job_starts_when_due_not_a_poll_later(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    // Nothing else wakes it either: no heartbeat writes (on SQLite any commit
    // wakes an idle worker) within the test.
    let cfg = WorkerConfig {
        poll: Duration::from_secs(60),
        heartbeat: Duration::from_secs(60),
        lease: Duration::from_secs(180),
        ..worker_config()
    };
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    for round in 0..3 {
        let due = jobs.clock().now() + 300_000;
        let e = jobs.enqueue_at(&Noop {}, Some(due)).await.expect("enqueue");
        assert_eq!(jobs.get(e.id).await.expect("get").job.state, JobState::Scheduled);
        let started = std::time::Instant::now();
        loop {
            let d = jobs.get(e.id).await.expect("get");
            if d.job.state == JobState::Succeeded {
                assert!(d.job.attempted_at.unwrap_or(0) >= due, "never before it is due: {:?}", d.job);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "round {round}: not run 10 s after enqueue: {:?}",
                d.job
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.cancel();
    handle.await.expect("worker stops");
}

/// Deleting a running job asks its handler to stop (it sees the cancellation and
/// can stop between steps) however the worker learns of it: here the lease
/// renewal sees it first (a 20 ms heartbeat, a minute-long poll), which used to
/// abort the task outright.
async fn a_deleted_running_job_is_asked_to_stop_not_cut_off(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let cfg = WorkerConfig { poll: Duration::from_secs(60), heartbeat: Duration::from_millis(20), ..worker_config() };
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let port = sink.local_addr().expect("addr").port();
    let recv = async |want: &str| {
        let mut buf = [0u8; 64];
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), sink.recv(&mut buf)).await;
            let len = got.unwrap_or_else(|_| panic!("no {want:?} within 5 s")).expect("recv");
            if buf[..len] == *want.as_bytes() {
                return;
            }
        }
    };
    let e = jobs.enqueue(&jobengine::builtin::Hold { port, seq: 1, ms: 60_000 }).await.expect("enqueue");
    recv("start 1").await;
    // Deleted through another handle, as another process would: on SQLite
    // nothing is announced in memory then.
    let elsewhere = db.jobs().await;
    elsewhere.delete(e.id, "test").await.expect("delete");
    recv("stop 1").await;
    assert_eq!(jobs.get(e.id).await.expect("get").job.state, JobState::Deleted);
    stop.cancel();
    handle.await.expect("worker stops");
}

/// A stopping worker gives back the jobs it claimed ahead (its prefetch buffer)
/// at once, in their place and with no attempt counted, while its running job
/// still has its grace.
async fn prefetched_jobs_are_released_at_once_on_shutdown(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let slow = jobs.enqueue(&Sleep { ms: 60_000 }).await.expect("enqueue");
    let ahead = jobs.enqueue(&Noop {}).await.expect("enqueue");
    // One slot, so the second job is claimed ahead (the default prefetch is twice
    // the concurrency).
    let cfg = WorkerConfig { concurrency: 1, grace: Duration::from_secs(5), ..worker_config() };
    let (wid, stop, handle) = start_worker(&jobs, cfg);
    wait_for(&jobs, slow.id, JobState::Processing).await;
    let claimed = wait_for(&jobs, ahead.id, JobState::Processing).await;
    assert_eq!(claimed.job.worker_id.as_deref(), Some(wid.as_str()), "claimed ahead while the only slot is busy");
    stop.cancel();
    let d = wait_for(&jobs, ahead.id, JobState::Enqueued).await;
    assert_eq!(
        jobs.get(slow.id).await.expect("get").job.state,
        JobState::Processing,
        "released before the running job's grace ran out"
    );
    assert_eq!(d.job.attempt, 0, "not counted as an attempt");
    assert_eq!(d.job.run_at, claimed.job.run_at, "keeps its place in the queue");
    let last = d.history.last().expect("history");
    assert_eq!(last.worker_id.as_deref(), Some(wid.as_str()));
    assert_eq!(
        last.reason.as_deref(),
        Some("released: claimed ahead, not started before the worker shut down (not counted)")
    );
    assert_eq!(states(&d), [JobState::Enqueued, JobState::Processing, JobState::Enqueued], "never ran");
    tokio::time::timeout(Duration::from_secs(15), handle).await.expect("stops after the grace").expect("join");
    assert_eq!(jobs.get(slow.id).await.expect("get").job.state, JobState::Enqueued, "released after the grace");
}

/// A worker whose jobs take long claims only for its free slots: a buffer of
/// long jobs (a tenant's provisioning) would hold them in a busy worker while
/// another sits idle. Two jobs are enqueued together behind a long one the
/// worker has learnt its pace from; the first keeps its only slot busy, and the
/// second is run by a second worker, not claimed ahead by the first.
async fn long_jobs_are_not_claimed_ahead(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let one_slot = || WorkerConfig { concurrency: 1, grace: Duration::from_millis(200), ..worker_config() };
    let first = jobs.enqueue(&Sleep { ms: 300 }).await.expect("enqueue");
    let (_busy, stop_busy, busy) = start_worker(&jobs, one_slot());
    wait_for(&jobs, first.id, JobState::Succeeded).await;
    let both = [jobs.new_job(&Sleep { ms: 60_000 }, None).expect("job"), jobs.new_job(&Noop {}, None).expect("job")];
    let ids = jobs.enqueue_many(&both).await.expect("enqueue");
    wait_for(&jobs, ids[0].id, JobState::Processing).await;
    let (idle, stop_idle, other) = start_worker(&jobs, one_slot());
    let done = wait_for(&jobs, ids[1].id, JobState::Succeeded).await;
    assert_eq!(done.job.worker_id.as_deref(), Some(idle.as_str()), "run by the idle worker, not held by the busy one");
    stop_busy.cancel();
    stop_idle.cancel();
    for h in [busy, other] {
        tokio::time::timeout(Duration::from_secs(15), h).await.expect("stops").expect("join");
    }
}

/// Jobs claimed ahead keep their leases while they wait for a slot: the
/// heartbeat renews them as it does running ones.
async fn prefetched_jobs_keep_their_leases(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let slow = jobs.enqueue(&Sleep { ms: 60_000 }).await.expect("enqueue");
    let ahead = jobs.enqueue(&Noop {}).await.expect("enqueue");
    let cfg = WorkerConfig { concurrency: 1, grace: Duration::from_millis(200), ..worker_config() };
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    wait_for(&jobs, slow.id, JobState::Processing).await;
    let first = wait_for(&jobs, ahead.id, JobState::Processing).await.job.lease_expires_at.expect("a lease");
    // Half a lease later (no lease has expired, so the rescuer has nothing to
    // do), the next renewal moves it on by as much.
    clock.advance(LEASE / 2);
    let mut renewed = first;
    for _ in 0..1500 {
        renewed = jobs.get(ahead.id).await.expect("get").job.lease_expires_at.unwrap_or(0);
        if renewed > first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(renewed, first + (LEASE / 2).as_micros() as i64, "renewed from the advanced clock");
    let d = jobs.get(ahead.id).await.expect("get");
    assert_eq!((d.job.state, d.job.attempt), (JobState::Processing, 1), "still the same claim");
    stop.cancel();
    handle.await.expect("worker stops");
}

/// A worker whose completer is held up stops claiming once a batch's worth of
/// outcomes waits (`completer::MAX_UNRECORDED`), instead of running every job it
/// can claim while their outcomes pile up unwritten and their leases go
/// unrenewed. PostgreSQL: a row lock on one finished job holds the completer's
/// statement (and everything queued behind it) while claims, which skip locked
/// rows, go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_held_up_completer_stops_the_claims() {
    use jobengine::completer::MAX_UNRECORDED;
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    let cfg = worker_config();
    let (concurrency, prefetch) = (cfg.concurrency, cfg.prefetch.unwrap_or(2 * cfg.concurrency));
    let (_wid, stop, handle) = start_worker(&jobs, cfg);
    // A job that runs for a second, its row locked while it still runs. On a
    // loaded machine the second can pass before the lock is taken (its outcome
    // then is already written): that try is dropped for another. The lock waits
    // for the job's progress note: taken between the claim and that write, it
    // held up the handler itself, which then never finished.
    let mut tries = 0;
    let lock = loop {
        tries += 1;
        let blocker = jobs.enqueue(&Sleep { ms: 1000 }).await.expect("enqueue").id;
        wait_for(&jobs, blocker, JobState::Processing).await;
        for _ in 0..500 {
            if jobs.get(blocker).await.expect("get").job.progress.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut lock = jobs.store().db().begin().await.expect("begin");
        let state: String = database::query("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(blocker)
            .scalar(&mut lock)
            .await
            .expect("lock the running job's row");
        if state == "processing" {
            break lock;
        }
        lock.rollback().await.expect("rollback");
        assert!(tries < 5, "{tries} jobs of a second each ended before their row could be locked");
    };
    // The blocker's outcome, once its sleep ends, waits for that lock: from then
    // on the completer writes nothing.
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%AS c(id, seq, state, at%'";
    for _ in 0..500 {
        let n: i64 = database::query(waiting).scalar(jobs.db().read()).await.expect("activity");
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n: i64 = database::query(waiting).scalar(jobs.db().read()).await.expect("activity");
    assert_eq!(n, 1, "the completer waits for the lock");
    let n = MAX_UNRECORDED + 500;
    let batch: Vec<_> = (0..n).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    jobs.enqueue_many(&batch).await.expect("enqueue");
    // Until the number of jobs taken stops moving (the worker is waiting).
    let (mut taken, mut still) = (0, 0);
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = jobs.counts().await.expect("counts");
        let now = c.processing + c.succeeded;
        if now == taken && now > 0 {
            still += 1;
            if still == 25 {
                break;
            }
        } else {
            (taken, still) = (now, 0);
        }
    }
    let c = jobs.counts().await.expect("counts");
    let most = (MAX_UNRECORDED + concurrency + prefetch + 1) as u64;
    assert!(c.processing <= most, "{} jobs taken with the completer held up (at most {most}): {c:?}", c.processing);
    assert!(c.enqueued > 0, "claims stopped with jobs left: {c:?}");
    lock.rollback().await.expect("unlock");
    for _ in 0..1500 {
        if jobs.counts().await.expect("counts").succeeded == n as u64 + tries {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = jobs.counts().await.expect("counts");
    assert_eq!(c.succeeded, n as u64 + tries, "every job ran once the completer could write: {c:?}");
    stop.cancel();
    handle.await.expect("worker stops");
}

/// Attempts this process has finished (outcomes handed over, written or not).
fn attempts_ended(jobs: &Jobs) -> u64 {
    let text = jobs.metrics().render(None, None);
    text.lines()
        .find_map(|l| l.strip_prefix("jobs_run_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no run duration count in {text}"))
}

/// A finished job whose outcome waits behind a held-up completer keeps its
/// lease: it is neither rescued nor run again, and its outcome is written
/// once the completer moves on. PostgreSQL: a lock on `job_history` holds the
/// completer's batch at its history rows (it has updated, and so locked, its
/// jobs' rows by then; no running job's row is locked, so the heartbeat is not
/// held with it); the manual clock moves on in steps, and the heartbeat must
/// follow each (the job being written is not renewed, so the steps stay short
/// of its lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_outcome_waiting_for_the_completer_keeps_its_lease() {
    let db = TestDb::new(Which::Postgres).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let (_wid, stop, handle) = start_worker(&jobs, worker_config());
    // Two jobs running (claims write history rows, so both are claimed before
    // the lock), the first to end holding up the completer, the second ending
    // behind it. On a loaded machine the first can end before the lock is
    // taken: that try is dropped for another.
    let mut tries = 0;
    let (first, waiting, lock) = loop {
        tries += 1;
        let first = jobs.enqueue(&Sleep { ms: 1000 }).await.expect("enqueue").id;
        let waiting = jobs.enqueue(&Sleep { ms: 2000 }).await.expect("enqueue").id;
        wait_for(&jobs, first, JobState::Processing).await;
        wait_for(&jobs, waiting, JobState::Processing).await;
        let mut lock = jobs.store().db().begin().await.expect("begin");
        database::query("LOCK TABLE job_history IN SHARE MODE").execute(&mut lock).await.expect("lock history");
        let state: String =
            database::query("SELECT state FROM jobs WHERE id = $1").bind(first).scalar(&mut lock).await.expect("state");
        if state == "processing" {
            break (first, waiting, lock);
        }
        lock.rollback().await.expect("rollback");
        assert!(tries < 5, "{tries} jobs of a second each ended before the history could be locked");
    };
    let ended = |n: u64| {
        let jobs = jobs.clone();
        async move {
            for _ in 0..1500 {
                if attempts_ended(&jobs) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{n} attempts never ended");
        }
    };
    let ran = 2 * (tries - 1);
    ended(ran + 2).await;
    let mut lease = jobs.get(waiting).await.expect("get").job.lease_expires_at.expect("a lease");
    // Two quarter leases on: each time the heartbeat renews from the new time
    // (unrenewed, the lease would run out with the first job's).
    for step in 1..=2 {
        clock.advance(LEASE / 4);
        let mut renewed = lease;
        for _ in 0..1000 {
            renewed = jobs.get(waiting).await.expect("get").job.lease_expires_at.unwrap_or(0);
            if renewed > lease {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(renewed > lease, "step {step}: the waiting outcome's lease was not renewed ({lease} → {renewed})");
        lease = renewed;
    }
    let d = jobs.get(waiting).await.expect("get");
    assert_eq!((d.job.state, d.job.attempt), (JobState::Processing, 1), "not rescued: {:#?}", d.history);
    lock.rollback().await.expect("unlock");
    let d = wait_for(&jobs, waiting, JobState::Succeeded).await;
    assert_eq!(d.job.attempt, 1, "{:#?}", d.history);
    assert_eq!(states(&d), [JobState::Enqueued, JobState::Processing, JobState::Succeeded], "{:#?}", d.history);
    let f = wait_for(&jobs, first, JobState::Succeeded).await;
    assert_eq!(attempts_ended(&jobs), ran + 2, "nothing ran twice: {:#?}", f.history);
    stop.cancel();
    handle.await.expect("worker stops");
}
