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
    /// The database failed, could not be reached or migrated.
    #[error(transparent)]
    Database(#[from] database::DbError),
    /// No job with that id.
    #[error("job {0} not found")]
    NotFound(i64),
    /// The operation does not apply to a job in this state.
    #[error("cannot {op} job {id}: it is {state}{}", why_not(*.state))]
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
    /// No recurring job with that name.
    #[error("recurring job {0:?} not found")]
    RecurringNotFound(String),
    /// A recurring job's definition is invalid.
    #[error("invalid recurring job {field}: {message}")]
    InvalidRecurring {
        /// The field at fault (`name`, `cron`, `time_zone`, `missed`).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No batch with that id.
    #[error("batch {0} not found")]
    BatchNotFound(i64),
    /// A job type's end hook failed; the transition did not happen.
    #[error("end hook failed: {0:#}")]
    Hook(anyhow::Error),
}

/// What a wrong state means, where the state's name alone does not say it.
fn why_not(state: JobState) -> &'static str {
    match state {
        JobState::Awaiting => {
            " (it waits for another job to end and runs only then; delete it to drop it, or end the job it waits for)"
        }
        _ => "",
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::Database(e.into())
    }
}

impl StorageError {
    /// Whether the database is known down (see [`database::DbError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        matches!(self, StorageError::Database(e) if e.is_outage())
    }

    /// Whether the database is out of reach (the operation may succeed if retried).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Database(e) if e.is_unavailable())
    }
}
