//! Takes back jobs whose worker stopped renewing its lease (crashed, killed,
//! paused, cut off from the database), and, without waiting for the lease, jobs
//! whose worker is known dead ([`crate::liveness`]: its advisory lock free on
//! PostgreSQL, its process gone on SQLite).
//!
//! Every worker runs one; they may overlap freely, since each pass is a single
//! fenced statement (PostgreSQL skips rows another rescuer has locked; SQLite has
//! one writer). A rescued job is enqueued again with a history row naming the
//! interrupted attempt and its worker. The interrupted attempt does not count
//! against the job's retries (the job did nothing wrong), but interruptions are
//! capped ([`WorkerConfig::max_interruptions`]), so a job that kills its worker
//! every time still ends in the dead-letter queue. The
//! pass also prunes registry rows of workers silent for [`PRUNE_AFTER`], and on
//! PostgreSQL writes the dashboard's queued search rows
//! ([`Store::index_search`]): after the rescue so it never delays one, and
//! while this worker's queues hold due jobs only every
//! [`SEARCH_ROWS_AT_LEAST_EVERY`] (a GIN index of millions of rows costs the
//! engine's throughput while it is written).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, micros};
use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::storage::Store;

/// How long a silent worker stays listed (as not live) before its row is removed.
pub const PRUNE_AFTER: Duration = Duration::from_secs(600);
/// How often the registry is pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Queued search rows one pass writes at most (about 200 ms of PostgreSQL's
/// time); what is left waits for the next pass, and searches read it meanwhile.
const SEARCH_ROWS_PER_PASS: u64 = 20_000;
/// Search rows yield to jobs: while this worker's queues hold due jobs a pass
/// writes none, but one pass in this long writes them anyway, so the queue of
/// rows (which every search reads) stays bounded under a lasting backlog.
const SEARCH_ROWS_AT_LEAST_EVERY: Duration = Duration::from_secs(10);

pub(crate) async fn rescuer_loop(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    stop: CancellationToken,
) {
    let mut last_prune = tokio::time::Instant::now();
    // A worker that starts into a backlog leaves the rows for later too.
    let mut last_search_rows = tokio::time::Instant::now();
    loop {
        // Jitter keeps many workers' rescuers from running in lockstep.
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(cfg.rescue_every.mul_f64(jitter)) => {}
            _ = stop.cancelled() => return,
        }
        let now = clock.now();
        match store.rescue(now, cfg.max_interruptions).await {
            Ok(r) if r.requeued + r.dead > 0 => {
                metrics.count_rescued(r.requeued + r.dead);
                tracing::warn!(
                    requeued = r.requeued,
                    dead = r.dead,
                    "rescued jobs whose worker stopped renewing its lease"
                );
            }
            Ok(_) => {}
            Err(e) => retry_warn!(e, "rescuer pass failed"),
        }
        if store.indexes_search_later() {
            let yield_to_jobs = last_search_rows.elapsed() < SEARCH_ROWS_AT_LEAST_EVERY
                && store.has_due_jobs(&cfg.queues, now).await.unwrap_or(false);
            if !yield_to_jobs {
                last_search_rows = tokio::time::Instant::now();
                if let Err(e) = store.index_search(SEARCH_ROWS_PER_PASS).await {
                    retry_warn!(e, "writing queued search rows failed; searches read them from the queue");
                }
            }
        }
        // Pruning is housekeeping: once a minute, not on every pass (on SQLite each
        // write takes the database's one write lock).
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            if let Err(e) = store.prune_workers(now - micros(PRUNE_AFTER)).await {
                retry_warn!(e, "pruning silent workers failed");
            }
        }
    }
}
