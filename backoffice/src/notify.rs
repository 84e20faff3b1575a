//! Notifications for signed-in users: the admin app's toasts.
//!
//! A notification is a row in the control plane, written by whoever observed the
//! event in the transaction that records it (the provisioning job activates a
//! tenant and notifies its creator in one commit), so it exists exactly when the
//! event does. A `dedupe_key` makes publishing idempotent: a re-run that reaches
//! the same outcome writes nothing new.
//!
//! Servers deliver them: each subscriber stream replays the user's
//! unacknowledged rows, then sleeps until woken (PostgreSQL `NOTIFY` carrying only
//! `<id>:<user_id>`, or a poll of this table on SQLite) and reads the rows after
//! the last one it sent. The table is the truth, wakes are only hints, so a lost
//! wake delays a toast but never loses it.

use database::{Db, Tx, query};
use jobengine::Micros;
use serde::Serialize;

use crate::error::Error;

/// What a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Something finished well (green).
    Success,
    /// Something failed (red).
    Error,
    /// For information.
    Info,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Success => "success",
            Kind::Error => "error",
            Kind::Info => "info",
        }
    }
}

/// A notification to write.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Whom it is for.
    pub user_id: String,
    /// Its colour.
    pub kind: Kind,
    /// Short title.
    pub title: String,
    /// The message.
    pub body: String,
    /// A path in the app.
    pub link: String,
    /// Publishing twice with the same key writes once.
    pub dedupe_key: String,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Notification {
    /// Increasing id.
    pub id: i64,
    /// Whom it is for.
    pub user_id: String,
    /// `success | error | info`.
    pub kind: String,
    /// Short title.
    pub title: String,
    /// The message.
    pub body: String,
    /// A path in the app.
    pub link: String,
    /// When it was written.
    pub created_at: Micros,
}

/// The first key of the advisory locks [`publish_in`] takes (the second is the
/// user's), so they cannot collide with other advisory locks ("ntfy").
const PUBLISH_LOCK_CLASS: i32 = 0x6e74_6679;

/// Writes `n` inside `tx`; `None` when one with its key exists already. The
/// row becomes visible to streams only after every earlier notification for the
/// same user (see the lock below).
///
/// # Errors
/// A database failure.
pub async fn publish_in(tx: &mut Tx, n: &NewNotification, now: Micros) -> Result<Option<i64>, Error> {
    // PostgreSQL hands out ids at INSERT but shows rows at COMMIT. Two
    // notifications for one user committing out of id order would let a stream
    // that already sent the later one skip the earlier one for good (it reads the
    // rows after the last id it sent). A per-user lock held until commit makes
    // one user's notifications commit in id order. SQLite has one writer at a
    // time, so its ids commit in order already.
    tx.lock(PUBLISH_LOCK_CLASS, &n.user_id).await?;
    let id: Option<i64> = query(
        "INSERT INTO notifications (user_id, kind, title, body, link, dedupe_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&n.user_id)
    .bind(n.kind.as_str())
    .bind(&n.title)
    .bind(&n.body)
    .bind(&n.link)
    .bind(&n.dedupe_key)
    .bind(now)
    .scalar_optional(tx)
    .await?;
    Ok(id)
}

/// Reads and acknowledges notifications.
#[derive(Clone)]
pub struct Notifications {
    db: Db,
}

/// Most rows one read returns.
pub const PAGE: i64 = 100;

impl Notifications {
    /// On the control plane `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The user's unacknowledged notifications after `after` (exclusive), oldest
    /// first, at most [`PAGE`].
    ///
    /// # Errors
    /// A database failure.
    pub async fn pending(&self, user_id: &str, after: i64) -> Result<Vec<Notification>, Error> {
        Ok(query(
            "SELECT id, user_id, kind, title, body, link, created_at FROM notifications
             WHERE user_id = $1 AND id > $2 AND acked_at IS NULL ORDER BY id LIMIT $3",
        )
        .bind(user_id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(self.db.read())
        .await?)
    }

    /// Marks the user's notifications among `ids` seen; returns how many changed.
    /// Ids of other users' notifications are ignored.
    ///
    /// # Errors
    /// A database failure.
    pub async fn ack(&self, user_id: &str, ids: &[i64], now: Micros) -> Result<u64, Error> {
        let mut n = 0;
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            // The ids are integers we formatted ourselves: no user text in the SQL.
            let sql = format!(
                "UPDATE notifications SET acked_at = $1 WHERE user_id = $2 AND acked_at IS NULL AND id IN ({list})"
            );
            n += query(sql).bind(now).bind(user_id).execute(self.db.write()).await?;
        }
        Ok(n)
    }

    /// The newest notification's id (0 when none): where a poller starts.
    ///
    /// # Errors
    /// A database failure.
    pub async fn last_id(&self) -> Result<i64, Error> {
        let id: Option<i64> = query("SELECT MAX(id) FROM notifications").scalar(self.db.read()).await?;
        Ok(id.unwrap_or(0))
    }

    /// `(id, user_id)` of notifications after `after`, for a poller to wake their
    /// users' streams.
    ///
    /// # Errors
    /// A database failure.
    pub async fn recipients_after(&self, after: i64) -> Result<Vec<(i64, String)>, Error> {
        Ok(query("SELECT id, user_id FROM notifications WHERE id > $1 ORDER BY id LIMIT 10000")
            .bind(after)
            .fetch_all(self.db.read())
            .await?)
    }

    /// Hashes of sessions revoked at or after `since`, for a poller to end their
    /// streams.
    ///
    /// # Errors
    /// A database failure.
    pub async fn revoked_since(&self, since: Micros) -> Result<Vec<String>, Error> {
        Ok(query("SELECT token_hash FROM sessions WHERE revoked_at >= $1").bind(since).scalars(self.db.read()).await?)
    }
}
