//! `identity.prune`: removes sign-in leftovers nobody can use any more, and
//! emails sent and notifications seen a month ago
//! ([`crate::maintenance::prune`]), as a recurring job every ten minutes, like
//! the engine's retention.

use jobengine::{Job, JobContext, JobError, Recurring};
use serde::{Deserialize, Serialize};

use crate::env::Env;

/// The schedule's name.
pub const SCHEDULE: &str = "identity.prune";

/// One pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneIdentity {}

impl Job for PruneIdentity {
    const KIND: &'static str = "identity.prune";
    /// The next pass is ten minutes away: no retries.
    const MAX_ATTEMPTS: Option<u32> = Some(1);
    type Context = Env;

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        let now = ctx.app.jobs.clock().now();
        let removed = crate::maintenance::prune(&ctx.app.db, now).await.map_err(JobError::retry)?;
        ctx.progress(&format!("removed {} rows ({removed:?})", removed.total())).await.map_err(JobError::retry)?;
        Ok(())
    }
}

/// The schedule the back office declares at start.
///
/// # Errors
/// Never in practice (the expression is ours).
pub fn recurring() -> Result<Recurring, jobengine::StorageError> {
    Recurring::new(SCHEDULE, "*/10 * * * *", &PruneIdentity {})
}
