//! Retention: finished jobs and their history are removed once past their period
//! (Hangfire keeps succeeded and deleted jobs a day; dead ones are kept a week so
//! someone can look at them), so the tables stay bounded however long the system
//! runs.
//!
//! The sweep is itself a job, [`Sweep`] (`jobs.retention`), fired every minute by
//! the recurring scheduler ([`crate::recurring`]) under the name
//! [`SCHEDULE_NAME`]: one sweep per minute across all workers, visible on the
//! dashboard like any other job. Workers declare it at start when their
//! [`WorkerConfig::retention`](crate::WorkerConfig::retention) is set (the
//! binaries set it from `JOB_RETENTION_SECS` / `JOB_DEAD_RETENTION_SECS`).
//!
//! A job is past its period when the time it ended (`updated_at`: nothing
//! changes a finished job but an admin requeue, which makes it live again) is
//! *strictly* before now minus the period. Deletes go in batches of
//! [`BATCH`] rows, each its own short statement walking the `jobs_ended` index,
//! so no lock is held for long (on SQLite, the one write lock is released
//! between batches). History rows go with their job (`ON DELETE CASCADE`).
//! Live jobs (enqueued, scheduled, processing) are never touched.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::micros;
use crate::job::{Job, JobContext, JobError};
use crate::recurring::Recurring;
use crate::state::JobState;

/// Rows one delete statement removes at most.
pub const BATCH: u32 = 1000;
/// The schedule's name in `job_recurring`.
pub const SCHEDULE_NAME: &str = "jobs.retention";
/// How often the sweep runs: every minute, at second 0.
pub const EVERY_MINUTE: &str = "0 * * * * *";

/// How long finished jobs are kept; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded and deleted jobs (default 24 h).
    pub finished: Option<Duration>,
    /// Dead jobs (default 7 days).
    pub dead: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self { finished: Some(Duration::from_secs(24 * 3600)), dead: Some(Duration::from_secs(7 * 24 * 3600)) }
    }
}

impl Retention {
    /// The recurring job that enforces it.
    ///
    /// # Errors
    /// Never in practice (the expression is ours); typed for the caller's `?`.
    pub fn recurring(&self) -> Result<Recurring, crate::StorageError> {
        let sweep =
            Sweep { finished_secs: self.finished.map(|d| d.as_secs()), dead_secs: self.dead.map(|d| d.as_secs()) };
        Recurring::new(SCHEDULE_NAME, EVERY_MINUTE, &sweep)
    }
}

/// One retention sweep (`jobs.retention`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sweep {
    /// Seconds succeeded and deleted jobs are kept (`None`: forever).
    pub finished_secs: Option<u64>,
    /// Seconds dead jobs are kept (`None`: forever).
    pub dead_secs: Option<u64>,
}

impl Job for Sweep {
    const KIND: &'static str = "jobs.retention";
    /// A failed sweep is not worth retrying: the next one is a minute away.
    const MAX_ATTEMPTS: Option<u32> = Some(1);
    type Context = ();

    async fn run(self, ctx: JobContext<()>) -> Result<(), JobError> {
        let now = ctx.clock.now();
        let mut removed = 0;
        let periods = [
            (JobState::Succeeded, self.finished_secs),
            (JobState::Deleted, self.finished_secs),
            (JobState::Dead, self.dead_secs),
        ];
        for (state, secs) in periods {
            let Some(secs) = secs else { continue };
            let before = now - micros(Duration::from_secs(secs));
            removed += ctx.store.remove_ended(state, before, BATCH).await.map_err(JobError::retry)?;
        }
        // The dashboard's per-second throughput rows age out with the sweep.
        ctx.store.fold_stats(now).await.map_err(JobError::retry)?;
        // PostgreSQL: partitions ahead added, emptied ones dropped.
        ctx.store.tidy_partitions().await.map_err(JobError::retry)?;
        if removed > 0 {
            tracing::info!(removed, "retention removed finished jobs past their period");
        }
        ctx.progress(&format!("removed {removed} jobs")).await.map_err(JobError::retry)?;
        Ok(())
    }
}
