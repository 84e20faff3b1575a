//! A worker in another process hears of a new job at once, not at its next poll:
//! on PostgreSQL through `NOTIFY`, on SQLite through file events on the
//! database's WAL (`database::changes`). The worker polls once a minute here, so
//! only a wake-up can start the jobs within the test's bound.

use std::time::{Duration, Instant};

use jobengine::JobState;
use jobengine::builtin::Sleep;
use jobengine::testing::{TestDb, Which};

mod common;
use common::WorkerProc;

jobengine::on_both!(a_job_enqueued_by_another_process_starts_long_before_the_poll);

async fn a_job_enqueued_by_another_process_starts_long_before_the_poll(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let mut w = WorkerProc::start_with(&db.url, dir.path(), "w", 5000, &[("JOB_POLL_MS", "60000")]);
    w.wait_started();
    // One at a time: after the first, the worker is idle in its minute-long wait
    // whenever the next is enqueued.
    for round in 0..5 {
        let e = jobs.enqueue(&Sleep { ms: 0 }).await.expect("enqueue");
        let enqueued = Instant::now();
        loop {
            let d = jobs.get(e.id).await.expect("get job");
            if d.job.state == JobState::Succeeded {
                break;
            }
            assert!(
                enqueued.elapsed() < Duration::from_secs(10),
                "round {round}: job {} not done 10 s after its enqueue (the poll is 60 s): {:?}\nworker log:\n{}",
                e.id,
                d.job,
                w.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the worker go back to waiting.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
