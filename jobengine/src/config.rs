//! Worker settings: plain values with defaults that work out of the box.
//!
//! The engine reads no environment: binaries parse their settings (flags and
//! `WORKER_*` / `JOB_*` variables, in the `settings` crate) and hand the typed
//! values in, so a test or an embedding program sets exactly what it means.

use std::time::Duration;

use crate::retry::Backoff;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once (default 16).
    pub concurrency: usize,
    /// Jobs claimed ahead of free slots while attempts are short (default
    /// `None`: twice `concurrency`; `Some(0)` claims only for free slots). A claimed job waits
    /// in the worker for a slot, so a freed slot starts the next job without a
    /// round trip to the database; see [`crate::worker`]. Kept small, since a
    /// higher-priority job enqueued later waits behind the buffered ones.
    pub prefetch: Option<usize>,
    /// Queues fetched from (default `default`).
    pub queues: Vec<String>,
    /// Caps on jobs run at once per queue, below `concurrency` (default none:
    /// every queue shares `concurrency`). E.g. `("mail", 4)` keeps a burst of
    /// emails from taking every slot, and a slow SMTP server from more than
    /// four connections. Caps for queues not in `queues` are ignored.
    pub queue_limits: Vec<(String, usize)>,
    /// How long a claim lasts without renewal (default 10 s). A job whose worker
    /// died runs again about this long after the last renewal.
    pub lease: Duration,
    /// How often leases are renewed (default lease / 3, see
    /// [`WorkerConfig::with_lease`]).
    pub heartbeat: Duration,
    /// How often the rescuer looks for expired leases and dead workers (default
    /// 500 ms: a killed worker's job runs again within about this long).
    pub rescue_every: Duration,
    /// How long an idle worker waits between fetches when nothing wakes it
    /// (default 250 ms). PostgreSQL workers are woken by `NOTIFY`; on SQLite the
    /// poll is what notices another process's enqueue.
    pub poll: Duration,
    /// How long running jobs may finish after a shutdown signal (default 10 s);
    /// the rest are released back to the queue.
    pub grace: Duration,
    /// The retry schedule.
    pub backoff: Backoff,
    /// How many times a job may be interrupted by a dead or frozen worker before
    /// it is dead-lettered (default 20). Interrupted attempts do not use up the
    /// job's own retries.
    pub max_interruptions: u32,
    /// How often the worker's scheduler fires due recurring jobs (default 1 s;
    /// see [`crate::recurring`]).
    pub schedule_every: Duration,
    /// When set, the worker declares the retention sweep at start (see
    /// [`crate::retention`]); default unset, the binaries set it from their
    /// settings.
    pub retention: Option<crate::retention::Retention>,
    /// Recurring jobs the worker declares at start (see
    /// [`Jobs::declare_recurring`](crate::Jobs::declare_recurring)).
    pub recurring: Vec<crate::recurring::Recurring>,
}

/// Interruptions allowed per job by default.
pub const DEFAULT_MAX_INTERRUPTIONS: u32 = 20;
/// A claim's lease by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            prefetch: None,
            queues: vec!["default".to_owned()],
            queue_limits: Vec::new(),
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_LEASE / 3,
            rescue_every: Duration::from_millis(500),
            poll: Duration::from_millis(250),
            grace: Duration::from_secs(10),
            backoff: Backoff::default(),
            max_interruptions: DEFAULT_MAX_INTERRUPTIONS,
            schedule_every: crate::recurring::SCHEDULE_EVERY,
            retention: None,
            recurring: Vec::new(),
        }
    }
}

impl WorkerConfig {
    /// This configuration with `lease`, and the heartbeat that goes with it: a
    /// third of the lease, so two renewals may be lost before the claim expires.
    pub fn with_lease(self, lease: Duration) -> Self {
        Self { lease, heartbeat: lease / 3, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_follows_the_lease() {
        let c = WorkerConfig::default().with_lease(Duration::from_secs(3));
        assert_eq!(c.lease, Duration::from_secs(3));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(WorkerConfig::default().heartbeat, DEFAULT_LEASE / 3);
    }
}
