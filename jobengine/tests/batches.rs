//! Continuations and batches on both backends, on the engine's manual clock:
//! claims and completions are driven by hand through the store, so "never before
//! its parent ends" is checked at every step, not hoped for from timing.

use std::sync::Arc;
use std::time::Duration;

use jobengine::builtin::{Fail, Noop};
use jobengine::storage::{AWAITING, Completion, Outcome};
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{
    BatchRow, ContinueOn, Job, JobState, Jobs, ListQuery, ManualClock, StateCounts, StorageError, Worker, WorkerConfig,
    registry_with_builtins,
};
use tokio_util::sync::CancellationToken;

const LEASE: i64 = 10_000_000;

jobengine::on_both!(
    continuation_waits_for_its_parent,
    continuations_of_a_parent_that_ends_badly,
    continuation_of_an_ended_parent_is_decided_at_once,
    batch_counts_and_completes_once,
    last_two_members_ending_together_complete_once,
    completion_job_sees_the_counts,
    waiting_jobs_are_awaiting_not_scheduled,
    migration_moves_old_style_waits_to_awaiting,
);

fn now(c: &ManualClock) -> i64 {
    jobengine::Clock::now(c)
}

fn q() -> Vec<String> {
    vec!["default".to_owned()]
}

/// Claims every due job as `worker`; returns their ids, sorted.
async fn claim(jobs: &Jobs, clock: &ManualClock, worker: &str) -> Vec<(i64, i64)> {
    let t = now(clock);
    let mut got: Vec<(i64, i64)> = jobs
        .store()
        .fetch(worker, &q(), 100, t, t + LEASE)
        .await
        .expect("fetch")
        .into_iter()
        .map(|j| (j.id, j.lease_seq))
        .collect();
    got.sort_unstable();
    got
}

async fn complete(jobs: &Jobs, clock: &ManualClock, (id, seq): (i64, i64), outcome: Outcome) {
    let t = now(clock);
    let done = jobs.store().complete(&[Completion { job_id: id, lease_seq: seq, at: t, outcome }], t).await;
    assert_eq!(done.expect("complete"), [true]);
}

async fn state(jobs: &Jobs, id: i64) -> JobState {
    jobs.get(id).await.expect("get").job.state
}

async fn last_reason(jobs: &Jobs, id: i64) -> String {
    let d = jobs.get(id).await.expect("get");
    d.history.last().and_then(|h| h.reason.clone()).unwrap_or_default()
}

fn dead() -> Outcome {
    Outcome::Dead { errors: vec!["it broke".into()] }
}

async fn continuation_waits_for_its_parent(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let on_success = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let on_any = jobs.enqueue_after(parent, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;
    let (waits, _) = jobs.links(on_success).await.expect("links");
    assert_eq!(waits.map(|w| w.parent_id), Some(parent));
    let (_, waiting) = jobs.links(parent).await.expect("links");
    assert_eq!(waiting.iter().map(|w| w.child_id).collect::<Vec<_>>(), [on_success, on_any]);

    // Only the parent is claimable, now or a year from now.
    let claimed = claim(&jobs, &clock, "w1").await;
    assert_eq!(claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [parent]);
    clock.advance(Duration::from_secs(365 * 24 * 3600));
    assert!(claim(&jobs, &clock, "w2").await.is_empty(), "a continuation ran before its parent ended");
    // A failed attempt with attempts left is not an end: still waiting.
    let t = now(&clock);
    complete(&jobs, &clock, claimed[0], Outcome::Retry { at: t, errors: vec!["again".into()] }).await;
    let retried = claim(&jobs, &clock, "w2").await;
    assert_eq!(retried.iter().map(|c| c.0).collect::<Vec<_>>(), [parent], "only the parent's retry is due");
    assert_eq!(state(&jobs, on_success).await, JobState::Awaiting);

    complete(&jobs, &clock, retried[0], Outcome::Succeeded).await;
    assert_eq!(state(&jobs, on_success).await, JobState::Enqueued);
    assert_eq!(state(&jobs, on_any).await, JobState::Enqueued);
    assert_eq!(last_reason(&jobs, on_success).await, format!("parent job {parent} succeeded"));
    let next = claim(&jobs, &clock, "w3").await;
    assert_eq!(next.iter().map(|c| c.0).collect::<Vec<_>>(), [on_success, on_any]);
    let (_, waiting) = jobs.links(parent).await.expect("links");
    assert!(waiting.iter().all(|w| w.decided_at.is_some()));
}

async fn continuations_of_a_parent_that_ends_badly(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;

    // Deleted by an admin: the success-only continuation and its own
    // continuation are deleted with the reason; the any-end one runs.
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let child = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let grandchild = jobs.enqueue_after(child, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let cleanup = jobs.enqueue_after(parent, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;
    jobs.delete(parent, "ops@example.com").await.expect("delete");
    assert_eq!(state(&jobs, child).await, JobState::Deleted);
    assert_eq!(
        last_reason(&jobs, child).await,
        format!("parent job {parent} was deleted; this continuation runs only on its success")
    );
    assert_eq!(state(&jobs, grandchild).await, JobState::Deleted);
    assert_eq!(state(&jobs, cleanup).await, JobState::Enqueued);
    let c = claim(&jobs, &clock, "w").await;
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), [cleanup]);
    complete(&jobs, &clock, c[0], Outcome::Succeeded).await;

    // Dead on its last attempt (a worker's completion).
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let child = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let any = jobs.enqueue_after(parent, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;
    let claimed = claim(&jobs, &clock, "w").await;
    assert_eq!(claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [parent], "{:?}", (parent, child, any));
    complete(&jobs, &clock, claimed[0], dead()).await;
    assert_eq!(state(&jobs, child).await, JobState::Deleted);
    assert!(last_reason(&jobs, child).await.starts_with(&format!("parent job {parent} died")));
    assert_eq!(state(&jobs, any).await, JobState::Enqueued);
    let c = claim(&jobs, &clock, "w").await;
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), [any]);
    complete(&jobs, &clock, c[0], Outcome::Succeeded).await;

    // Dead by the rescuer (its worker vanished, one interruption allowed).
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let child = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    assert_eq!(claim(&jobs, &clock, "vanished").await.len(), 1);
    clock.advance(Duration::from_secs(11));
    let r = jobs.store().rescue(now(&clock), 1).await.expect("rescue");
    assert_eq!(r.dead, 1);
    assert_eq!(state(&jobs, parent).await, JobState::Dead);
    assert_eq!(state(&jobs, child).await, JobState::Deleted);
    assert!(claim(&jobs, &clock, "w").await.is_empty());
}

async fn continuation_of_an_ended_parent_is_decided_at_once(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let claimed = claim(&jobs, &clock, "w").await;
    complete(&jobs, &clock, claimed[0], Outcome::Succeeded).await;
    let late = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    assert_eq!(state(&jobs, late).await, JobState::Enqueued);

    let gone = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    jobs.delete(gone, "ops").await.expect("delete");
    let never = jobs.enqueue_after(gone, ContinueOn::Success, &Noop {}).await.expect("after").id;
    assert_eq!(state(&jobs, never).await, JobState::Deleted);
    let anyway = jobs.enqueue_after(gone, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;
    assert_eq!(state(&jobs, anyway).await, JobState::Enqueued);

    let e = jobs.enqueue_after(i64::MAX - 1, ContinueOn::Success, &Noop {}).await.expect_err("no such parent");
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
}

async fn batch_of(jobs: &Jobs, n: usize, completion: bool) -> (i64, Vec<i64>, Option<i64>) {
    let members: Vec<_> = (0..n).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    let done = jobs.new_job(&Noop {}, None).expect("job");
    let mut tx = jobs.begin().await.expect("begin");
    let b = jobs.enqueue_batch_in(&mut tx, "test batch", &members, completion.then_some(&done)).await.expect("batch");
    tx.commit().await.expect("commit");
    (b.id, b.jobs.iter().map(|e| e.id).collect(), b.completion)
}

async fn batch_counts_and_completes_once(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let (batch, members, completion) = batch_of(&jobs, 5, true).await;
    let completion = completion.expect("a completion job");
    let b = jobs.batch(batch).await.expect("batch");
    assert_eq!((b.total, b.pending(), b.finished_at), (5, 5, None));

    let claimed = claim(&jobs, &clock, "w").await;
    assert_eq!(claimed.iter().map(|c| c.0).collect::<Vec<_>>(), members, "the completion job waits");
    complete(&jobs, &clock, claimed[0], Outcome::Succeeded).await;
    complete(&jobs, &clock, claimed[1], Outcome::Succeeded).await;
    complete(&jobs, &clock, claimed[2], dead()).await;
    // Deleting a member that already ended does not count it twice.
    jobs.delete(members[0], "ops").await.expect("delete");
    let b = jobs.batch(batch).await.expect("batch");
    assert_eq!((b.succeeded, b.dead, b.deleted, b.pending()), (2, 1, 0, 2));
    assert_eq!(state(&jobs, completion).await, JobState::Awaiting);
    jobs.delete(members[3], "ops").await.expect("delete");
    assert_eq!(state(&jobs, completion).await, JobState::Awaiting, "one member still runs");
    complete(&jobs, &clock, claimed[4], Outcome::Succeeded).await;

    let b = jobs.batch(batch).await.expect("batch");
    assert_eq!((b.total, b.succeeded, b.dead, b.deleted, b.pending()), (5, 3, 1, 1, 0));
    assert!(b.finished_at.is_some());
    assert_eq!(state(&jobs, completion).await, JobState::Enqueued);
    assert_eq!(
        last_reason(&jobs, completion).await,
        format!("batch {batch} finished: 5 jobs, 3 succeeded, 1 dead, 1 deleted")
    );
    assert_eq!(claim(&jobs, &clock, "w").await.iter().map(|c| c.0).collect::<Vec<_>>(), [completion]);
    // Later ends of members (a requeued one ending again) release nothing more.
    jobs.requeue(members[3], "ops").await.expect("requeue");
    let again = claim(&jobs, &clock, "w").await;
    complete(&jobs, &clock, again[0], Outcome::Succeeded).await;
    assert_eq!(jobs.batch(batch).await.expect("batch"), b);
    let enqueues =
        jobs.get(completion).await.expect("get").history.iter().filter(|h| h.state == JobState::Enqueued).count();
    assert_eq!(enqueues, 1, "released once");
    // The batch is listed; an empty batch is finished at once.
    let (empty, _, done) = batch_of(&jobs, 0, true).await;
    assert_eq!(state(&jobs, done.expect("completion")).await, JobState::Enqueued);
    let listed: Vec<BatchRow> = jobs.batches(None, 10).await.expect("list");
    assert_eq!(listed.iter().map(|b| b.id).collect::<Vec<_>>(), [empty, batch]);
    assert!(matches!(jobs.batch(i64::MAX - 1).await, Err(StorageError::BatchNotFound(_))));
}

async fn last_two_members_ending_together_complete_once(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    // A second handle with its own pool: two workers' completers.
    let other = db.jobs_with_clock(clock.clone()).await;
    for _ in 0..10 {
        let (batch, _, completion) = batch_of(&jobs, 2, true).await;
        let claimed = claim(&jobs, &clock, "w").await;
        assert_eq!(claimed.len(), 2);
        let (a, b) = (claimed[0], claimed[1]);
        let t = now(&clock);
        // Two tasks on the multi-threaded runtime, each its own transaction.
        let ca = vec![Completion { job_id: a.0, lease_seq: a.1, at: t, outcome: Outcome::Succeeded }];
        let cb = vec![Completion { job_id: b.0, lease_seq: b.1, at: t, outcome: dead() }];
        let (sa, sb) = (jobs.store().clone(), other.store().clone());
        let ta = tokio::spawn(async move { sa.complete(&ca, t).await });
        let tb = tokio::spawn(async move { sb.complete(&cb, t).await });
        let (ra, rb) = (ta.await.expect("task a"), tb.await.expect("task b"));
        assert_eq!((ra.expect("complete a"), rb.expect("complete b")), (vec![true], vec![true]));
        let row = jobs.batch(batch).await.expect("batch");
        assert_eq!((row.succeeded, row.dead, row.pending()), (1, 1, 0));
        let completion = completion.expect("completion");
        let d = jobs.get(completion).await.expect("get");
        assert_eq!(d.job.state, JobState::Enqueued);
        assert_eq!(d.history.iter().filter(|h| h.state == JobState::Enqueued).count(), 1, "released once");
        // Run it, so the next round claims only its own members.
        let c = claim(&jobs, &clock, "w").await;
        assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), [completion]);
        complete(&jobs, &clock, c[0], Outcome::Succeeded).await;
    }
}

/// A batch's completion job: records the counts it sees.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Report {}

impl Job for Report {
    const KIND: &'static str = "test.batch_report";
    type Context = ();
    async fn run(self, ctx: jobengine::JobContext<()>) -> Result<(), jobengine::JobError> {
        let b = ctx.batch().await.map_err(jobengine::JobError::retry)?;
        let b = b.ok_or_else(|| jobengine::JobError::permanent(anyhow::anyhow!("not a completion job")))?;
        REPORTS.lock().expect("lock").push((b.label, b.succeeded, b.dead, b.deleted));
        Ok(())
    }
}

/// Both backends' tests share the process: told apart by the batch's label.
static REPORTS: std::sync::Mutex<Vec<(String, i64, i64, i64)>> = std::sync::Mutex::new(Vec::new());

async fn completion_job_sees_the_counts(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut members: Vec<_> = (0..20).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    members.push(jobs.new_job(&Fail { message: "bad row".into(), permanent: true }, None).expect("job"));
    let report = jobs.new_job(&Report {}, None).expect("job");
    let mut tx = jobs.begin().await.expect("begin");
    let label = format!("twenty-one on {which:?}");
    let b = jobs.enqueue_batch_in(&mut tx, &label, &members, Some(&report)).await.expect("batch");
    tx.commit().await.expect("commit");
    let registry = registry_with_builtins::<()>().register::<Report>();
    let cfg = WorkerConfig { concurrency: 4, poll: Duration::from_millis(20), ..WorkerConfig::default() };
    let worker = Worker::new(&jobs, registry, Arc::new(()), cfg);
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let s = stop.clone();
        async move { worker.run(s).await.expect("worker runs") }
    });
    let completion = b.completion.expect("completion");
    for _ in 0..1500 {
        if state(&jobs, completion).await == JobState::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    handle.await.expect("worker stops");
    assert_eq!(state(&jobs, completion).await, JobState::Succeeded);
    let seen: Vec<_> = REPORTS.lock().expect("lock").iter().filter(|r| r.0 == label).cloned().collect();
    assert_eq!(seen, [(label, 20, 1, 0)]);
}

/// Jobs per state as the rows say (a scan), to hold the trigger-kept counters to.
async fn counted(jobs: &Jobs) -> StateCounts {
    let rows: Vec<(String, i64)> = database::query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(jobs.db().read())
        .await
        .expect("count");
    let mut c = StateCounts::default();
    for (s, n) in rows {
        let s: JobState = s.parse().expect("a known state");
        match s {
            JobState::Enqueued => c.enqueued = n as u64,
            JobState::Processing => c.processing = n as u64,
            JobState::Scheduled => c.scheduled = n as u64,
            JobState::Awaiting => c.awaiting = n as u64,
            JobState::Succeeded => c.succeeded = n as u64,
            JobState::Dead => c.dead = n as u64,
            JobState::Deleted => c.deleted = n as u64,
        }
    }
    c
}

/// The ids the dashboard lists in `state`, newest first.
async fn listed(jobs: &Jobs, state: JobState) -> Vec<i64> {
    let q = ListQuery { state, kind: None, before_id: None, limit: 100, text: None };
    jobs.list(&q).await.expect("list").iter().map(|j| j.id).collect()
}

async fn waiting_jobs_are_awaiting_not_scheduled(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let parent = jobs.enqueue(&Noop {}).await.expect("enqueue").id;
    let child = jobs.enqueue_after(parent, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let grandchild = jobs.enqueue_after(child, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let later = jobs.enqueue_at(&Noop {}, Some(now(&clock) + 3_600_000_000)).await.expect("at").id;
    let (batch, members, completion) = batch_of(&jobs, 1, true).await;
    let completion = completion.expect("completion");
    for id in [child, grandchild, completion] {
        assert_eq!(state(&jobs, id).await, JobState::Awaiting, "job {id}");
    }
    assert_eq!(state(&jobs, later).await, JobState::Scheduled);
    // The Scheduled list and count hold only the delayed job.
    let c = jobs.counts().await.expect("counts");
    assert_eq!((c.scheduled, c.awaiting, c.enqueued), (1, 3, 2));
    assert_eq!(c, counted(&jobs).await);
    assert_eq!(listed(&jobs, JobState::Scheduled).await, [later]);
    assert_eq!(listed(&jobs, JobState::Awaiting).await, [completion, grandchild, child]);
    // The dashboard's text search finds awaiting jobs in their own state.
    let search = |text: &str| ListQuery {
        state: JobState::Awaiting,
        kind: None,
        before_id: None,
        limit: 10,
        text: Some(text.to_owned()),
    };
    assert_eq!(jobs.list(&search("NOOP")).await.expect("search").len(), 3);
    assert!(jobs.list(&search("no such text")).await.expect("search").is_empty());

    // Nothing starts an awaiting job early: not trigger, not requeue, not a claim.
    for e in [jobs.trigger(child, "ops").await, jobs.requeue(child, "ops").await] {
        let e = e.expect_err("refused");
        assert!(matches!(e, StorageError::WrongState { state: JobState::Awaiting, .. }), "{e:?}");
        assert!(e.to_string().contains("waits for another job to end"), "{e}");
    }
    let claimed = claim(&jobs, &clock, "w").await;
    assert_eq!(claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [parent, members[0]]);

    // The parent's end moves its continuation to enqueued; the grandchild waits on.
    complete(&jobs, &clock, claimed[0], Outcome::Succeeded).await;
    assert_eq!(state(&jobs, child).await, JobState::Enqueued);
    assert_eq!(last_reason(&jobs, child).await, format!("parent job {parent} succeeded"));
    assert_eq!(state(&jobs, grandchild).await, JobState::Awaiting);

    // Deleting an awaiting job is an end like any other: what waits on it is settled.
    let on_success = jobs.enqueue_after(grandchild, ContinueOn::Success, &Noop {}).await.expect("after").id;
    let on_any = jobs.enqueue_after(grandchild, ContinueOn::AnyEnd, &Noop {}).await.expect("after").id;
    jobs.delete(grandchild, "ops@example.com").await.expect("delete an awaiting job");
    assert_eq!(state(&jobs, grandchild).await, JobState::Deleted);
    assert_eq!(state(&jobs, on_success).await, JobState::Deleted);
    assert_eq!(
        last_reason(&jobs, on_success).await,
        format!("parent job {grandchild} was deleted; this continuation runs only on its success")
    );
    assert_eq!(state(&jobs, on_any).await, JobState::Enqueued);
    // Its own parent ending later leaves it deleted.
    let c = claim(&jobs, &clock, "w").await;
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), [child, on_any]);
    complete(&jobs, &clock, c[0], Outcome::Succeeded).await;
    assert_eq!(state(&jobs, grandchild).await, JobState::Deleted);

    // The batch's last member releases the completion job from awaiting.
    complete(&jobs, &clock, claimed[1], Outcome::Succeeded).await;
    assert_eq!(state(&jobs, completion).await, JobState::Enqueued);
    assert!(jobs.batch(batch).await.expect("batch").finished_at.is_some());
    let c = jobs.counts().await.expect("counts");
    assert_eq!((c.awaiting, c.scheduled), (0, 1));
    assert_eq!(c, counted(&jobs).await, "the counters stay exact");
    assert!(listed(&jobs, JobState::Awaiting).await.is_empty());
}

/// A database the previous version migrated (up to 1050) and wrote waiting jobs
/// into its way (`scheduled`, run_at [`AWAITING`]), then opened by this version.
async fn migration_moves_old_style_waits_to_awaiting(which: Which) {
    let db = TestDb::new(which).await;
    let old = jobengine::Db::connect(&db.url).await.expect("connect");
    let mut m = jobengine::storage::migrations();
    for set in [&mut m.sqlite, &mut m.postgres] {
        let before: Vec<_> = set.migrations.iter().filter(|x| x.version < 1060).cloned().collect();
        set.migrations = before.into();
    }
    old.migrate(m).await.expect("migrate to 1050");
    let t = now(&manual_clock());
    let insert = |state: &'static str, run_at: i64, key: Option<&'static str>| {
        let old = old.clone();
        async move {
            let id: i64 = database::query(
                "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at, unique_key)
                 VALUES ($1, 'default', '{}', $2, 3, $3, $4, $4, $5) RETURNING id",
            )
            .bind(Noop::KIND)
            .bind(state)
            .bind(run_at)
            .bind(t)
            .bind(key)
            .scalar(old.write())
            .await
            .expect("insert");
            database::query(
                "INSERT INTO job_history (job_id, state, at, attempt, reason) VALUES ($1, $2, $3, 0, 'old')",
            )
            .bind(id)
            .bind(state)
            .bind(t)
            .execute(old.write())
            .await
            .expect("history");
            id
        }
    };
    let parent = insert("enqueued", t, None).await;
    let child = insert("scheduled", AWAITING, Some("once")).await;
    database::query("INSERT INTO job_waits (child_id, parent_id, on_end) VALUES ($1, $2, 'success')")
        .bind(child)
        .bind(parent)
        .execute(old.write())
        .await
        .expect("wait");
    let completion = insert("scheduled", AWAITING, None).await;
    let later = insert("scheduled", t + 3_600_000_000, None).await;
    insert("succeeded", t, None).await;

    // This version opens it: 1060 runs.
    let clock = ManualClock::new(t);
    let jobs = db.jobs_with_clock(clock.clone()).await;
    assert_eq!(state(&jobs, child).await, JobState::Awaiting);
    assert_eq!(state(&jobs, completion).await, JobState::Awaiting);
    assert_eq!(state(&jobs, later).await, JobState::Scheduled);
    assert_eq!(jobs.get(child).await.expect("get").history.len(), 1, "history kept");
    let c = jobs.counts().await.expect("counts");
    assert_eq!((c.enqueued, c.scheduled, c.awaiting, c.succeeded), (1, 1, 2, 1));
    assert_eq!(c, counted(&jobs).await, "the counters followed the move");
    // An awaiting job holds its unique key.
    let again = jobengine::NewJob { unique_key: Some("once".into()), ..jobs.new_job(&Noop {}, None).expect("job") };
    let e = jobs.enqueue_many(&[again]).await.expect("enqueue");
    assert_eq!((e[0].id, e[0].existing), (child, true));
    // A connection opened before the migration (its schema read then) writes
    // the new state too: the migration made every connection reload the schema.
    database::query("UPDATE jobs SET state = 'awaiting' WHERE id = $1")
        .bind(later)
        .execute(old.write())
        .await
        .expect("an older connection writes awaiting");
    database::query("UPDATE jobs SET state = 'scheduled' WHERE id = $1")
        .bind(later)
        .execute(old.write())
        .await
        .expect("and back");

    // An older process still running (a rolling deploy) writes a continuation
    // its way after the migration: it is released all the same.
    let late = insert("scheduled", AWAITING, None).await;
    database::query("INSERT INTO job_waits (child_id, parent_id, on_end) VALUES ($1, $2, 'success')")
        .bind(late)
        .bind(parent)
        .execute(old.write())
        .await
        .expect("wait");

    // The parent's end releases the migrated continuation.
    let claimed = claim(&jobs, &clock, "w").await;
    assert_eq!(claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [parent]);
    complete(&jobs, &clock, claimed[0], Outcome::Succeeded).await;
    assert_eq!(state(&jobs, child).await, JobState::Enqueued);
    assert_eq!(state(&jobs, late).await, JobState::Enqueued);
    assert_eq!(jobs.counts().await.expect("counts"), counted(&jobs).await);
}
