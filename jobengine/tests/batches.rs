//! Continuations and batches on both backends, on the engine's manual clock:
//! claims and completions are driven by hand through the store, so "never before
//! its parent ends" is checked at every step, not hoped for from timing.

use std::sync::Arc;
use std::time::Duration;

use jobengine::builtin::{Fail, Noop};
use jobengine::storage::{Completion, Outcome};
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{
    BatchRow, ContinueOn, Job, JobState, Jobs, ManualClock, StorageError, Worker, WorkerConfig, registry_with_builtins,
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
    assert_eq!(state(&jobs, on_success).await, JobState::Scheduled);

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
    assert_eq!(state(&jobs, completion).await, JobState::Scheduled);
    jobs.delete(members[3], "ops").await.expect("delete");
    assert_eq!(state(&jobs, completion).await, JobState::Scheduled, "one member still runs");
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
