//! Writes attempt outcomes in batches.
//!
//! Job tasks hand their [`Completion`] to a channel and end at once; this task
//! drains whatever has piled up (up to [`MAX_BATCH`]) into one fenced storage call.
//! Under load that turns thousands of tiny transactions into a few large ones; idle,
//! a batch is a single job and nothing waits. An outcome is never dropped because
//! the database hiccuped: the batch is retried with backoff. If the database stays
//! down past [`GIVE_UP_AFTER`] the batch is abandoned with an error log; those jobs'
//! leases then expire and the rescuer runs them again (at least once, never lost).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::storage::{Completion, Outcome, Store};

/// Most outcomes written in one transaction.
pub const MAX_BATCH: usize = 1000;
/// How long a batch is retried before it is left to the rescuer.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Runs until every sender is dropped and the channel is drained.
pub(crate) async fn completer_loop(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    metrics: Arc<Metrics>,
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
        batch.clear();
    }
}
