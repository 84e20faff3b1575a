//! Error types.
//!
//! Policy: storage and engine functions return [`StorageError`] (a `thiserror`
//! enum callers can match on: not found, wrong state, unique key taken) rather than
//! `anyhow`, because the gRPC layer maps each to its own status. Job handlers return
//! [`JobError`](crate::JobError), which wraps `anyhow` so handlers can add
//! `.context(..)` on every step and the whole chain lands in the job's history.

use crate::state::JobState;

/// What can go wrong talking to the job store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `DATABASE_URL` names a database we do not support.
    #[error("unsupported database URL scheme {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    /// No job with that id.
    #[error("job {0} not found")]
    NotFound(i64),
    /// The operation does not apply to a job in this state.
    #[error("cannot {op} job {id}: it is {state}")]
    WrongState {
        /// The job.
        id: i64,
        /// The operation's verb.
        op: &'static str,
        /// The job's state.
        state: JobState,
    },
    /// Another live job already holds the unique key.
    #[error("another live job already holds unique key {0:?}")]
    UniqueKeyTaken(String),
    /// Job arguments could not be serialized.
    #[error("cannot serialize job arguments: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A stored row is not what this version understands.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An I/O error preparing the database (creating its directory).
    #[error("cannot prepare database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether the database said "unique constraint violated".
    pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}
