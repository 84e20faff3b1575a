//! Pruning what ages out of the control plane, so storage stays bounded by
//! recent activity rather than growing with every sign-in attempt, email and
//! toast for ever.
//!
//! [`prune`] is one idempotent pass, run by the `identity.prune` recurring job
//! ([`crate::jobs::prune`], every ten minutes). Each table is cleared in batches
//! of [`BATCH`] rows, one short statement each, so sign-ins never wait behind a
//! long delete (SQLite has one writer).

use std::time::Duration;

use database::{Db, DbError, query};
use jobengine::Micros;

use crate::throttle::FORGET_AFTER;

/// Rows one statement removes at most.
pub const BATCH: i64 = 1000;

/// How long an expired set-password token is kept: a week, so a reminder or a
/// "send me a new link" can still tell an old link from a forged one.
pub const TOKEN_GRACE: Micros = 7 * DAY;

/// How long a sent email's outbox row and a seen notification are kept: a
/// month, for "did they get the email?" and for a toast history, and then
/// they go, so neither table grows with every tenant for ever. An email not
/// sent yet and a notification not yet seen are kept however old.
pub const KEEP_SENT: Micros = 30 * DAY;

const DAY: Micros = 24 * 3_600_000_000;

/// Rows removed by one [`prune`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Throttle rows idle past [`FORGET_AFTER`] (they count as absent).
    pub throttle: u64,
    /// Rows of the old per-failure table (no longer written).
    pub login_failures: u64,
    /// Sessions past their expiry, or revoked more than a day ago (the row
    /// explains a "signed out" to someone looking that day).
    pub sessions: u64,
    /// Set-password tokens expired for more than [`TOKEN_GRACE`].
    pub password_tokens: u64,
    /// Outbox rows of emails sent more than [`KEEP_SENT`] ago.
    pub outbox: u64,
    /// Notifications seen more than [`KEEP_SENT`] ago.
    pub notifications: u64,
}

impl Pruned {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.throttle + self.login_failures + self.sessions + self.password_tokens + self.outbox + self.notifications
    }
}

/// Deletes, as of `now`, what no answer depends on any more: throttle rows idle
/// past [`FORGET_AFTER`], old per-failure rows, expired or long-revoked sessions,
/// set-password tokens expired for more than [`TOKEN_GRACE`], and emails sent
/// and notifications seen more than [`KEEP_SENT`] ago (migration 2050's
/// indexes find them).
///
/// # Errors
/// A database failure (what earlier batches removed stays removed).
pub async fn prune(db: &Db, now: Micros) -> Result<Pruned, DbError> {
    Ok(Pruned {
        throttle: batches(
            db,
            "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle WHERE last_at < $1 LIMIT $2)",
            now - FORGET_AFTER,
        )
        .await?,
        login_failures: batches(
            db,
            "DELETE FROM login_failures WHERE id IN (SELECT id FROM login_failures WHERE at < $1 LIMIT $2)",
            now - FORGET_AFTER,
        )
        .await?,
        sessions: batches(
            db,
            "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions
               WHERE expires_at < $1 OR revoked_at < $1 - 86400000000 LIMIT $2)",
            now,
        )
        .await?,
        password_tokens: batches(
            db,
            "DELETE FROM password_tokens WHERE token_hash IN (SELECT token_hash FROM password_tokens
               WHERE expires_at < $1 LIMIT $2)",
            now - TOKEN_GRACE,
        )
        .await?,
        outbox: batches(
            db,
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at < $1 LIMIT $2)",
            now - KEEP_SENT,
        )
        .await?,
        notifications: batches(
            db,
            "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE acked_at < $1 LIMIT $2)",
            now - KEEP_SENT,
        )
        .await?,
    })
}

/// Runs `sql` (`$1` the cut-off, `$2` the batch size) until a batch comes back
/// short; returns the rows removed.
async fn batches(db: &Db, sql: &'static str, before: Micros) -> Result<u64, DbError> {
    let mut total = 0;
    loop {
        let n = query(sql).bind(before).bind(BATCH).execute(db.write()).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        // Let waiting writers in between batches.
        tokio::time::sleep(Duration::ZERO).await;
    }
}
