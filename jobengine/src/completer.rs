//! Writes attempt outcomes in batches.
//!
//! Job tasks hand their [`Completion`] to a channel and end at once; this task
//! drains whatever has piled up (up to [`MAX_BATCH`]) into one fenced storage call.
//! Under load that turns thousands of tiny transactions into a few large ones; idle,
//! a batch is a single job and nothing waits. An outcome is never dropped because
//! the database hiccuped: the batch is retried with backoff. If the database stays
//! down past [`GIVE_UP_AFTER`] the batch is abandoned with an error log; those jobs'
//! leases then expire and the rescuer runs them again (at least once, never lost).
//!
//! Outcomes waiting here are bounded ([`MAX_UNRECORDED`]): a job task takes one of
//! that many permits before handing its outcome over, keeping its slot until it
//! gets one, and the permits come back when their batch is written. Unbounded, a
//! worker whose completer fell behind (a slow disk, a table's cold pages) kept
//! claiming as its slots freed while outcomes piled up: seen beside 10,000,000
//! finished jobs, about 8,900 jobs `processing` for one worker at concurrency 16,
//! written back in batches of up to 1,000 at over 2 s a statement. Such jobs are no longer
//! in the worker's running map, so the heartbeat does not renew their leases: a
//! backlog older than a lease is rescued and run again. Bounded, the worker stops
//! claiming instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::storage::{Completion, Outcome, Store};

/// Most outcomes written in one transaction.
pub const MAX_BATCH: usize = 1000;
/// Most outcomes handed to the completer and not yet written (module docs): one
/// batch's worth, so that a batch is never more than the completer writes at once.
pub const MAX_UNRECORDED: usize = MAX_BATCH;
/// How long a batch is retried before it is left to the rescuer.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Runs until every sender is dropped and the channel is drained. Senders take
/// (and forget) a permit of `unrecorded` per outcome; each written or abandoned
/// batch gives its permits back.
pub(crate) async fn completer_loop(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    metrics: Arc<Metrics>,
    unrecorded: Arc<Semaphore>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut delays = database::backoff::retry_delays(Duration::from_millis(50));
        loop {
            match store.complete(&batch, clock.now()).await {
                Ok(accepted) => {
                    for (c, ok) in batch.iter().zip(accepted) {
                        if !ok {
                            metrics.count_stale_completion();
                            tracing::warn!(
                                job = c.job_id,
                                lease_seq = c.lease_seq,
                                "stale completion refused: this attempt no longer holds the job"
                            );
                            continue;
                        }
                        match c.outcome {
                            Outcome::Succeeded => metrics.count_succeeded(),
                            Outcome::Retry { .. } => metrics.count_retried(),
                            Outcome::Dead { .. } => metrics.count_dead(),
                        }
                    }
                    break;
                }
                Err(e) if started.elapsed() < GIVE_UP_AFTER => {
                    tracing::warn!(error = %e, jobs = batch.len(), "recording job outcomes failed; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(database::backoff::MAX_DELAY)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, jobs = batch.len(),
                        "giving up recording job outcomes; the rescuer will run these jobs again");
                    break;
                }
            }
        }
        unrecorded.add_permits(batch.len());
        batch.clear();
    }
}
