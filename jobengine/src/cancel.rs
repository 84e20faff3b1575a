//! Cancellation of a running job: an admin deletes it (the dashboard's delete,
//! [`Jobs::delete`](crate::Jobs::delete)), and the attempt running it stops.
//!
//! The delete commits first: the job is `deleted`, its type's end hook has run in
//! that transaction, and the running attempt's completion can no longer land
//! (completions are fenced on `state = 'processing'` and `lease_seq`), so the
//! attempt cannot resurrect it. Then the worker running it learns of it:
//!
//! - **PostgreSQL**: a trigger (`migrations/postgres/jobs/1010_recurring.sql`)
//!   `NOTIFY`s `jobs_cancel` with the job's id at commit; every process listens
//!   and its workers cancel the attempt if they run it. Latency: one
//!   notification, milliseconds. When the listener reconnects, workers re-check
//!   every job they run, so a deletion during the gap is still seen.
//! - **SQLite**: a delete made in the worker's own process (the server's
//!   embedded worker) is announced in memory after commit: immediate. A worker in
//!   another process checks the jobs it runs, with one indexed read and only
//!   while it runs any, after commits to the file (file events, see
//!   `database::changes`; at most every 10 ms) and every poll interval
//!   ([`WorkerConfig::poll`](crate::WorkerConfig::poll), 250 ms by default) as
//!   the fallback.
//!
//! Either way the lease renewal also notices (the job is no longer held), at the
//! latest one heartbeat later.
//!
//! Cancelling fires the attempt's token ([`JobContext::is_cancelled`],
//! [`JobContext::cancelled`]) and forgets the attempt (its outcome is not
//! reported). A handler that checks its token stops at its next step; one that
//! does not is aborted after [`CANCEL_GRACE`].
//!
//! [`JobContext::is_cancelled`]: crate::JobContext::is_cancelled
//! [`JobContext::cancelled`]: crate::JobContext::cancelled

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::storage::Store;
use crate::worker::{Running, RunningMap};

/// How long a cancelled handler may take to stop before its task is aborted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The most often a stream of commits to an SQLite file makes a worker check
/// its running jobs for deletions (the check is one indexed read).
const CHANGE_CHECK_EVERY: Duration = Duration::from_millis(10);

/// Cancels this worker's attempts of deleted jobs until `stop`.
pub(crate) async fn cancel_loop(
    worker: Arc<str>,
    store: Arc<Store>,
    running: RunningMap,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut heard = store.cancellations();
    // Only SQLite polls: PostgreSQL hears every deletion.
    let poll_db = store.db().postgres().is_none();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // SQLite: a commit by any process (a delete among them) looks at once,
    // at most every CHANGE_CHECK_EVERY; the tick stays as the fallback.
    let changed = Arc::new(tokio::sync::Notify::new());
    let _feed = store.db().changes().map(|c| {
        let n = changed.clone();
        AbortOnDropHandle::new(tokio::spawn(c.each(move || n.notify_one())))
    });
    loop {
        let check_all = tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => {
                tokio::time::sleep(CHANGE_CHECK_EVERY).await;
                true
            }
            msg = heard.recv() => match msg {
                Ok(id) if id >= 0 => {
                    cancel(&worker, &running, id);
                    false
                }
                // A listener reconnected, or we fell behind: look at everything.
                Ok(_) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick(), if poll_db => true,
        };
        if !check_all {
            continue;
        }
        let ids: Vec<i64> = match running.lock() {
            Ok(m) => m.keys().copied().collect(),
            Err(_) => continue,
        };
        match store.deleted_among(&ids).await {
            Ok(deleted) => deleted.into_iter().for_each(|id| cancel(&worker, &running, id)),
            Err(e) => retry_warn!(e, worker = %worker, "checking for deleted jobs failed; will retry"),
        }
    }
}

/// Cancels the attempt of job `id` if this worker runs it: fires its token,
/// forgets it, and aborts it after [`CANCEL_GRACE`] unless it stopped by then.
fn cancel(worker: &str, running: &RunningMap, id: i64) {
    let Some(r) = running.lock().ok().and_then(|mut m| m.remove(&id)) else { return };
    tracing::info!(worker = %worker, job = id, "job deleted while running; cancelling the attempt");
    stop_attempt(r);
}

/// Asks an attempt this worker no longer owns to stop, and aborts it if it has
/// not after [`CANCEL_GRACE`]: the handler gets to stop between steps (and say
/// so) rather than being cut off mid-step.
pub(crate) fn stop_attempt(r: Running) {
    r.cancel.cancel();
    if let Some(abort) = r.abort {
        tokio::spawn(async move {
            tokio::time::sleep(CANCEL_GRACE).await;
            abort.abort();
        });
    }
}
