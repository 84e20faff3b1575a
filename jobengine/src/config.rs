//! Worker settings, with defaults that work out of the box and `JOB_*` / `WORKER_*`
//! environment overrides.

use std::time::Duration;

use crate::retry::Backoff;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once (`WORKER_CONCURRENCY`, default 16).
    pub concurrency: usize,
    /// Queues fetched from (`WORKER_QUEUES`, comma-separated, default `default`).
    pub queues: Vec<String>,
    /// How long a claim lasts without renewal (`JOB_LEASE_MS`, default 10 s). A job
    /// whose worker died runs again about this long after the last renewal.
    pub lease: Duration,
    /// How often leases are renewed (`JOB_HEARTBEAT_MS`, default lease / 3).
    pub heartbeat: Duration,
    /// How often the rescuer looks for expired leases (`JOB_RESCUE_MS`, default 1 s).
    pub rescue_every: Duration,
    /// How long an idle worker waits between fetches when nothing wakes it
    /// (`JOB_POLL_MS`, default 250 ms). PostgreSQL workers are woken by `NOTIFY`;
    /// on SQLite the poll is what notices another process's enqueue.
    pub poll: Duration,
    /// How long running jobs may finish after a shutdown signal (`JOB_GRACE_MS`,
    /// default 10 s); the rest are released back to the queue.
    pub grace: Duration,
    /// The retry schedule.
    pub backoff: Backoff,
    /// How many times a job may be interrupted by a dead or frozen worker before
    /// it is dead-lettered (`JOB_MAX_INTERRUPTIONS`, default 20). Interrupted
    /// attempts do not use up the job's own retries.
    pub max_interruptions: u32,
}

/// Interruptions allowed per job by default.
pub const DEFAULT_MAX_INTERRUPTIONS: u32 = 20;

impl Default for WorkerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(10);
        Self {
            concurrency: 16,
            queues: vec!["default".to_owned()],
            lease,
            heartbeat: lease / 3,
            rescue_every: Duration::from_secs(1),
            poll: Duration::from_millis(250),
            grace: Duration::from_secs(10),
            backoff: Backoff::default(),
            max_interruptions: DEFAULT_MAX_INTERRUPTIONS,
        }
    }
}

/// A setting that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl WorkerConfig {
    /// The defaults with the environment's overrides applied.
    ///
    /// # Errors
    /// A variable is set to something that is not a positive number (or, for the
    /// queues, is empty).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`WorkerConfig::from_env`], reading variables through `get`.
    ///
    /// # Errors
    /// As [`WorkerConfig::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let num = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            match get(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ConfigError { name, value: v, reason: "expected a positive whole number" }),
                },
            }
        };
        if let Some(n) = num("WORKER_CONCURRENCY")? {
            c.concurrency = n as usize;
        }
        if let Some(q) = get("WORKER_QUEUES") {
            let queues: Vec<String> =
                q.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if queues.is_empty() {
                return Err(ConfigError { name: "WORKER_QUEUES", value: q, reason: "name at least one queue" });
            }
            c.queues = queues;
        }
        if let Some(ms) = num("JOB_LEASE_MS")? {
            c.lease = Duration::from_millis(ms);
            c.heartbeat = c.lease / 3;
        }
        if let Some(ms) = num("JOB_HEARTBEAT_MS")? {
            c.heartbeat = Duration::from_millis(ms);
        }
        if let Some(n) = num("JOB_MAX_INTERRUPTIONS")? {
            c.max_interruptions = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(ms) = num("JOB_RESCUE_MS")? {
            c.rescue_every = Duration::from_millis(ms);
        }
        if let Some(ms) = num("JOB_POLL_MS")? {
            c.poll = Duration::from_millis(ms);
        }
        if let Some(ms) = num("JOB_GRACE_MS")? {
            c.grace = Duration::from_millis(ms);
        }
        if let Some(ms) = num("JOB_BACKOFF_BASE_MS")? {
            c.backoff.base = Duration::from_millis(ms);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_overrides_and_rejects_nonsense() {
        let c = WorkerConfig::from_lookup(|k| match k {
            "WORKER_CONCURRENCY" => Some("4".into()),
            "JOB_LEASE_MS" => Some("3000".into()),
            "WORKER_QUEUES" => Some("mail, default".into()),
            _ => None,
        })
        .expect("valid settings");
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.lease, Duration::from_secs(3));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(c.queues, ["mail", "default"]);
        let e = WorkerConfig::from_lookup(|k| (k == "WORKER_CONCURRENCY").then(|| "zero".into()));
        assert!(e.is_err_and(|e| e.to_string().contains("WORKER_CONCURRENCY")));
    }
}
