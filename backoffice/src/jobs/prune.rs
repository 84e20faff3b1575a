//! `identity.prune`: removes sign-in leftovers nobody can use any more, as a
//! recurring job ([`recurring`], every ten minutes) like the engine's retention.
//!
//! - sessions past their expiry, or revoked more than a day ago (a day in which
//!   the row still explains a "signed out" to someone looking);
//! - set-password tokens that expired more than [`TOKEN_GRACE`] ago (a week: a
//!   reminder or "send me a new link" may still want to know an old one existed);
//! - login failures older than a day (rate limiting looks at the last hour).
//!
//! Each table is cleared in batches of [`BATCH`] rows, one short statement each,
//! so sign-ins never wait behind a long delete.

use std::time::Duration;

use anyhow::Context;
use database::{Db, query};
use jobengine::{Job, JobContext, JobError, Micros, Recurring};
use serde::{Deserialize, Serialize};

use crate::env::Env;

/// Rows one statement removes at most.
pub const BATCH: i64 = 1000;
/// How long expired set-password tokens are kept.
pub const TOKEN_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
const DAY: Micros = 24 * 3_600_000_000;

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
        let removed = prune(&ctx.app.db, now).await.map_err(JobError::retry)?;
        ctx.progress(&format!("removed {removed} rows")).await.map_err(JobError::retry)?;
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

/// Removes what is past its time at `now`; returns how many rows.
///
/// # Errors
/// A database failure (what earlier batches removed stays removed).
pub async fn prune(db: &Db, now: Micros) -> anyhow::Result<u64> {
    let grace = i64::try_from(TOKEN_GRACE.as_micros()).unwrap_or(i64::MAX);
    let passes: [(&'static str, Micros); 3] = [
        (
            "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions
               WHERE expires_at < $1 OR revoked_at < $1 - 86400000000 LIMIT $2)",
            now,
        ),
        (
            "DELETE FROM password_tokens WHERE token_hash IN (SELECT token_hash FROM password_tokens
               WHERE expires_at < $1 LIMIT $2)",
            now - grace,
        ),
        ("DELETE FROM login_failures WHERE id IN (SELECT id FROM login_failures WHERE at < $1 LIMIT $2)", now - DAY),
    ];
    let mut total = 0;
    for (sql, before) in passes {
        loop {
            let n = query(sql).bind(before).bind(BATCH).execute(db.write()).await.context("pruning sign-in rows")?;
            total += n;
            if n < BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(total)
}
