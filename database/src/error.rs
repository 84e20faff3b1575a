//! [`DbError`]: what talking to the database can fail with.

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names a database we do not support.
    #[error("unsupported database URL scheme {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    /// A database that should exist does not (a sibling's file or database was
    /// deleted, a command's source was mistyped): opening never creates one.
    #[error("the database {0} does not exist")]
    Missing(String),
    /// `DATABASE_URL` names a PostgreSQL database that does not exist, and it
    /// could not be created.
    #[error(
        "the PostgreSQL database {name:?} does not exist and could not be created ({source}); \
         create it (createdb {name}) or fix DATABASE_URL"
    )]
    CannotCreate {
        /// The database's name.
        name: String,
        /// Why creating it failed.
        source: sqlx::Error,
    },
    /// The PostgreSQL server refused connections (or was starting up) for as
    /// long as opening a handle waits for it.
    #[error(
        "PostgreSQL at {server} did not accept a connection within {waited:?} ({source}); \
         is it running, and do DATABASE_URL's host and port name it?"
    )]
    Unreachable {
        /// `host:port`, or the socket's folder.
        server: String,
        /// How long opening waited.
        waited: std::time::Duration,
        /// The last failure.
        source: sqlx::Error,
    },
    /// The PostgreSQL server has stopped answering while we run (see
    /// [`crate::reach`]): requests fail at once instead of each waiting out
    /// the pool's acquire timeout.
    #[error("PostgreSQL at {server} has not answered for {lasted:?} ({reason}); try again in a moment")]
    Down {
        /// `host:port`, or the socket's folder.
        server: String,
        /// How long the outage has lasted so far (whole seconds).
        lasted: std::time::Duration,
        /// Why the last probe could not connect.
        reason: String,
    },
    /// Preparing the database's directory failed.
    #[error("cannot prepare the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl DbError {
    /// The SQLSTATE code the database answered with, if it answered one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Sqlx(e) => e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned()),
            _ => None,
        }
    }

    /// Whether the database said "unique constraint violated".
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(db)) if db.is_unique_violation())
    }

    /// Whether the PostgreSQL server is known down ([`DbError::Down`]): the
    /// outage's start and end are logged once (see [`crate::reach`]), so loops
    /// that retry on a tick need not warn at every tick.
    pub fn is_outage(&self) -> bool {
        matches!(self, DbError::Down { .. })
    }

    /// Whether the database is out of reach (a restart, a network cut, a full
    /// pool): the operation may succeed if retried, so transports answer
    /// "unavailable", not "internal".
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlx(e) => sqlx_unavailable(e),
            DbError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_unavailable(e),
            DbError::Unreachable { .. } | DbError::Down { .. } => true,
            _ => false,
        }
    }
}

/// As [`DbError::is_unavailable`], for a bare sqlx error.
pub fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_))
        || e.as_database_error().and_then(|d| d.code()).is_some_and(|code| {
            // PostgreSQL: admin shutdown, crash shutdown, cannot connect now.
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        })
}
