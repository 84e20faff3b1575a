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
//! written back in batches of up to 1,000 at over 2 s a statement. Bounded, the
//! worker stops claiming instead.
//!
//! An outcome waiting here for its batch keeps its job's lease: it is in
//! [`Pending`], which the heartbeat renews with the running jobs once it has
//! waited half a heartbeat, until this task takes it into a batch. Without
//! that, an outcome queued behind a slow batch for longer than a lease lost its
//! job to the rescuer, which ran it again and had the outcome refused. Only
//! outcomes that have waited are renewed: normally an outcome waits
//! milliseconds, and renewing it would race this task for the same rows (the
//! two statements waiting on each other's row locks). The batch being written
//! is not renewed: its statement locks its rows as it updates them, and its
//! outcome is on its way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// Outcomes handed to the completer and not yet taken into a batch: job id →
/// the lease sequence of the attempt and when it was handed over (module
/// docs). A job task adds its job when it hands the outcome over; the
/// completer removes it when it takes the outcome into a batch, the heartbeat
/// when the lease turns out to be lost.
pub(crate) type Pending = Arc<Mutex<HashMap<i64, (i64, Instant)>>>;

/// Runs until every sender is dropped and the channel is drained. Senders take
/// (and forget) a permit of `unrecorded` per outcome, and enter their job in
/// `pending`; each written or abandoned batch gives its permits back.
pub(crate) async fn completer_loop(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    metrics: Arc<Metrics>,
    unrecorded: Arc<Semaphore>,
    pending: Pending,
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
        if let Ok(mut p) = pending.lock() {
            for c in &batch {
                if p.get(&c.job_id).is_some_and(|(seq, _)| *seq == c.lease_seq) {
                    p.remove(&c.job_id);
                }
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
