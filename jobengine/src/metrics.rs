//! Prometheus metrics of the engine, exposed with the `prometheus-client` crate.
//!
//! Counters and histograms are per process (what this process's workers did), kept
//! in one [`Registry`] for the life of the process. Jobs by state and live workers
//! are read from the database at scrape time ([`scrape`]), so any process, a
//! server or a `worker`, can report them for the whole cluster.
//!
//! The names, labels and help texts are the ones the hand-written exposition had,
//! so dashboards keep working: `jobs{state}`, `jobs_workers_live`,
//! `jobs_processed_total{outcome}`, `jobs_failed_total`,
//! `jobs_stale_completions_total`, `jobs_rescued_total`,
//! `jobs_run_duration_seconds` and `jobs_enqueue_to_start_seconds` (histograms with
//! the same buckets). The crate writes the OpenMetrics flavour of the text format
//! (`# TYPE` names a counter without `_total`, a closing `# EOF`), which
//! Prometheus' text parser reads as well.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::client::Jobs;
use crate::error::StorageError;
use crate::state::JobState;
use crate::storage::StateCounts;

/// Bucket upper bounds, in seconds, for both histograms.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// How recent a worker's heartbeat must be for `jobs_workers_live` to count it
/// (the dashboard's "live" too).
pub const LIVE_WINDOW: Duration = Duration::from_secs(30);

/// The content type of [`Metrics::render`]'s text (what our scrapers were told
/// before, and what Prometheus parses this text with).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A histogram over [`BUCKETS`] observing durations.
#[derive(Debug, Clone)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(BUCKETS))
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// `outcome="succeeded|retried|dead"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// `state="enqueued|…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// What this process's workers did.
#[derive(Debug)]
pub struct Metrics {
    /// Every metric below, for exposition.
    registry: Registry,
    /// `jobs_processed_total{outcome="succeeded"}`.
    succeeded: Counter,
    /// `jobs_processed_total{outcome="retried"}`.
    retried: Counter,
    /// `jobs_processed_total{outcome="dead"}`.
    dead: Counter,
    /// Retried plus dead, kept as a counter of its own as before.
    failed: Counter,
    /// Completions refused because the attempt no longer held the job.
    stale_completions: Counter,
    /// Jobs the rescuer took back from workers whose lease expired.
    rescued: Counter,
    /// Counts per state read from the database by this process (dashboards share
    /// one read per tick, so this grows with time, not with open dashboards).
    counts_queries: Counter,
    /// How long attempts ran.
    pub run_duration: Histogram,
    /// From when a job was due to when an attempt started.
    pub wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let processed = Family::<OutcomeLabel, Counter>::default();
        let outcome = |outcome| processed.get_or_create(&OutcomeLabel { outcome }).clone();
        let (succeeded, retried, dead) = (outcome("succeeded"), outcome("retried"), outcome("dead"));
        let (failed, stale_completions, rescued) = (Counter::default(), Counter::default(), Counter::default());
        let (run_duration, wait) = (Histogram::default(), Histogram::default());
        // The crate adds `_total` to counters' sample names.
        registry.register("jobs_processed", "Attempts finished by this process, by outcome.", processed);
        registry.register("jobs_failed", "Attempts that failed in this process.", failed.clone());
        registry.register(
            "jobs_stale_completions",
            "Completions refused by the lease fence.",
            stale_completions.clone(),
        );
        registry.register("jobs_rescued", "Jobs taken back after their worker's lease expired.", rescued.clone());
        let counts_queries = Counter::default();
        registry.register(
            "jobs_counts_queries",
            "Reads of the jobs-per-state counts by this process.",
            counts_queries.clone(),
        );
        registry.register("jobs_run_duration_seconds", "How long attempts ran.", run_duration.0.clone());
        registry.register(
            "jobs_enqueue_to_start_seconds",
            "From a job being due to an attempt starting.",
            wait.0.clone(),
        );
        Self {
            registry,
            succeeded,
            retried,
            dead,
            failed,
            stale_completions,
            rescued,
            counts_queries,
            run_duration,
            wait,
        }
    }
}

impl Metrics {
    /// An attempt succeeded.
    pub fn count_succeeded(&self) {
        self.succeeded.inc();
    }

    /// An attempt failed and the job will be retried.
    pub fn count_retried(&self) {
        self.retried.inc();
        self.failed.inc();
    }

    /// An attempt failed for good: the job is dead.
    pub fn count_dead(&self) {
        self.dead.inc();
        self.failed.inc();
    }

    /// A completion was refused by the lease fence.
    pub fn count_stale_completion(&self) {
        self.stale_completions.inc();
    }

    /// The counts per state were read from the database.
    pub fn count_counts_query(&self) {
        self.counts_queries.inc();
    }

    /// The rescuer took `n` jobs back.
    pub fn count_rescued(&self, n: u64) {
        self.rescued.inc_by(n);
    }

    /// Renders every metric; `counts` and `live_workers` come from the database
    /// (left out when `None`).
    pub fn render(&self, counts: Option<&StateCounts>, live_workers: Option<usize>) -> String {
        // The cluster-wide gauges are read per scrape, so they live in a registry
        // of their own, made for this rendering.
        let mut scrape = Registry::default();
        if let Some(c) = counts {
            let jobs = Family::<StateLabel, Gauge>::default();
            for s in JobState::ALL {
                jobs.get_or_create(&StateLabel { state: s.to_string() })
                    .set(i64::try_from(c.get(s)).unwrap_or(i64::MAX));
            }
            scrape.register("jobs", "Jobs in the store by state.", jobs);
        }
        if let Some(n) = live_workers {
            let live = Gauge::<i64>::default();
            live.set(i64::try_from(n).unwrap_or(i64::MAX));
            scrape.register("jobs_workers_live", "Worker processes with a recent heartbeat.", live);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &scrape)
            .and_then(|()| encode_registry(&mut out, &self.registry))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// The whole exposition for `/metrics` on any process: this process's counters
/// and the cluster's jobs by state and live workers, read now.
///
/// # Errors
/// The job store cannot be read (answer 503: scrapers should see the outage).
pub async fn scrape(jobs: &Jobs) -> Result<String, StorageError> {
    let counts = jobs.counts().await?;
    let workers = jobs.workers(LIVE_WINDOW.as_micros() as i64).await?;
    Ok(jobs.metrics().render(Some(&counts), Some(workers.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_same_names_with_cumulative_buckets() {
        let m = Metrics::default();
        m.wait.observe(Duration::from_millis(3));
        m.wait.observe(Duration::from_secs(2));
        m.count_succeeded();
        m.count_succeeded();
        m.count_dead();
        let text = m.render(Some(&StateCounts { enqueued: 4, ..Default::default() }), Some(1));
        assert!(text.contains("jobs{state=\"enqueued\"} 4\n"), "{text}");
        assert!(text.contains("jobs_workers_live 1\n"), "{text}");
        assert!(text.contains("jobs_processed_total{outcome=\"succeeded\"} 2\n"), "{text}");
        assert!(text.contains("jobs_processed_total{outcome=\"dead\"} 1\n"), "{text}");
        assert!(text.contains("jobs_failed_total 1\n"), "{text}");
        assert!(text.contains("jobs_stale_completions_total 0\n"), "{text}");
        assert!(text.contains("jobs_rescued_total 0\n"), "{text}");
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"0.001\"} 0\n"), "{text}");
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"2.5\"} 2\n"), "{text}");
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("jobs_enqueue_to_start_seconds_count 2\n"), "{text}");
        assert!(text.contains("jobs_run_duration_seconds_count 0\n"), "{text}");
        // Without the database's figures, their metrics are left out.
        let text = m.render(None, None);
        assert!(!text.contains("jobs_workers_live"), "{text}");
    }
}
