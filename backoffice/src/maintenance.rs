//! Pruning what ages out of the control plane, so storage stays bounded by
//! recent activity rather than growing with every sign-in attempt for ever.
//!
//! [`prune`] is one idempotent pass; the server runs it periodically (see
//! `server::run`) until the job engine's recurring jobs take it over. Each
//! delete is its own short statement, so a pass never holds SQLite's writer
//! for long.

use database::{Db, DbError, query};
use jobengine::Micros;

use crate::throttle::FORGET_AFTER;

/// How long a used or expired set-password token is kept (so an operator can
/// still see why a link failed today).
pub const TOKEN_GRACE: Micros = 24 * 3_600_000_000;

/// Rows removed by one [`prune`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Throttle rows idle past [`FORGET_AFTER`] (they count as absent).
    pub throttle: u64,
    /// Rows of the old per-failure table (no longer written).
    pub login_failures: u64,
    /// Sessions past their expiry (revoked or not: neither works any more).
    pub sessions: u64,
    /// Set-password tokens expired for more than [`TOKEN_GRACE`].
    pub password_tokens: u64,
}

/// Deletes, as of `now`: throttle rows idle past [`FORGET_AFTER`], old
/// per-failure rows, expired sessions, and set-password tokens expired for
/// more than [`TOKEN_GRACE`]. Nothing deleted changes any answer: each row
/// would be ignored anyway.
///
/// # Errors
/// A database failure (what was deleted before it stays deleted).
pub async fn prune(db: &Db, now: Micros) -> Result<Pruned, DbError> {
    let run = |sql: &'static str, before: Micros| async move { query(sql).bind(before).execute(db.write()).await };
    Ok(Pruned {
        throttle: run("DELETE FROM login_throttle WHERE last_at < $1", now - FORGET_AFTER).await?,
        login_failures: run("DELETE FROM login_failures WHERE at < $1", now - FORGET_AFTER).await?,
        sessions: run("DELETE FROM sessions WHERE expires_at < $1", now).await?,
        password_tokens: run("DELETE FROM password_tokens WHERE expires_at < $1", now - TOKEN_GRACE).await?,
    })
}
