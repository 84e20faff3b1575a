//! Prometheus metrics of the engine, rendered in the text exposition format.
//!
//! Counters and histograms are per process (what this process's workers did);
//! jobs by state and live workers are read from the database at scrape time, so any
//! process can report them for the whole cluster. Hand-written rather than pulled
//! from a metrics crate: a handful of atomics is all it takes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::state::JobState;
use crate::storage::StateCounts;

/// Bucket upper bounds, in seconds, for both histograms.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// A fixed-bucket histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.buckets[i].load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// What this process's workers did.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Attempts that succeeded.
    pub succeeded: AtomicU64,
    /// Attempts that failed and were scheduled to retry.
    pub retried: AtomicU64,
    /// Attempts that failed for good (the job is dead).
    pub dead: AtomicU64,
    /// Completions refused because the attempt no longer held the job.
    pub stale_completions: AtomicU64,
    /// Jobs the rescuer took back from workers whose lease expired.
    pub rescued: AtomicU64,
    /// How long attempts ran.
    pub run_duration: Histogram,
    /// From when a job was due to when an attempt started.
    pub wait: Histogram,
}

impl Metrics {
    /// Renders every metric; `counts` and `live_workers` come from the database.
    pub fn render(&self, counts: Option<&StateCounts>, live_workers: Option<usize>) -> String {
        let mut out = String::new();
        if let Some(c) = counts {
            out.push_str("# HELP jobs Jobs in the store by state.\n# TYPE jobs gauge\n");
            for s in JobState::ALL {
                let _ = writeln!(out, "jobs{{state=\"{s}\"}} {}", c.get(s));
            }
        }
        if let Some(n) = live_workers {
            let _ = writeln!(
                out,
                "# HELP jobs_workers_live Worker processes with a recent heartbeat.\n# TYPE jobs_workers_live gauge\njobs_workers_live {n}"
            );
        }
        out.push_str("# HELP jobs_processed_total Attempts finished by this process, by outcome.\n");
        out.push_str("# TYPE jobs_processed_total counter\n");
        for (outcome, v) in [("succeeded", &self.succeeded), ("retried", &self.retried), ("dead", &self.dead)] {
            let _ = writeln!(out, "jobs_processed_total{{outcome=\"{outcome}\"}} {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP jobs_failed_total Attempts that failed in this process.\n# TYPE jobs_failed_total counter\njobs_failed_total {}",
            self.retried.load(Ordering::Relaxed) + self.dead.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP jobs_stale_completions_total Completions refused by the lease fence.\n# TYPE jobs_stale_completions_total counter\njobs_stale_completions_total {}",
            self.stale_completions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP jobs_rescued_total Jobs taken back after their worker's lease expired.\n# TYPE jobs_rescued_total counter\njobs_rescued_total {}",
            self.rescued.load(Ordering::Relaxed)
        );
        self.run_duration.render(&mut out, "jobs_run_duration_seconds", "How long attempts ran.");
        self.wait.render(&mut out, "jobs_enqueue_to_start_seconds", "From a job being due to an attempt starting.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let m = Metrics::default();
        m.wait.observe(Duration::from_millis(3));
        m.wait.observe(Duration::from_secs(2));
        m.succeeded.fetch_add(2, Ordering::Relaxed);
        let text = m.render(Some(&StateCounts { enqueued: 4, ..Default::default() }), Some(1));
        assert!(text.contains("jobs{state=\"enqueued\"} 4\n"), "{text}");
        assert!(text.contains("jobs_workers_live 1\n"));
        assert!(text.contains("jobs_processed_total{outcome=\"succeeded\"} 2\n"));
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("jobs_enqueue_to_start_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(text.contains("jobs_enqueue_to_start_seconds_count 2\n"));
    }
}
