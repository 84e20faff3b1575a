//! The domain's errors.
//!
//! Policy: every public operation returns [`Error`]. Variants a client caused
//! (bad input, taken names, wrong credentials, limits) carry what the client may be
//! told; [`Error::Internal`] carries the cause for the log only, and transports
//! answer it with a bare "internal error".

use std::time::Duration;

use crate::validate::FieldErrors;

/// What a domain operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request's fields are invalid (each one named).
    #[error("invalid request: {0}")]
    Invalid(#[from] FieldErrors),
    /// Rows of a file are invalid: each problem names its row and field
    /// ([`crate::tenants::import::RowError`]); nothing was written.
    #[error("invalid rows: {}", crate::tenants::import::describe(.0))]
    InvalidRows(Vec<crate::tenants::import::RowError>),
    /// A unique thing (a tenant name) is taken.
    #[error("{field}: {message}")]
    AlreadyExists {
        /// The field.
        field: &'static str,
        /// What is taken.
        message: String,
    },
    /// Wrong email or password (deliberately not saying which).
    #[error("wrong email or password")]
    BadCredentials,
    /// No valid session or token.
    #[error("not signed in")]
    Unauthenticated,
    /// Signed in, but not allowed.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// Too many attempts: the message says which limit and roughly how long;
    /// `retry_after` is that wait as data, for transports that can carry it
    /// (HTTP's `Retry-After`, gRPC's `google.rpc.RetryInfo`).
    #[error("{message}")]
    RateLimited {
        /// What the client reads.
        message: String,
        /// How long before the same request may succeed (at least 1 s).
        retry_after: Duration,
    },
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A set-password link that is unknown, used or expired.
    #[error("this link is invalid or has expired; ask for a new one")]
    BadToken,
    /// Anything else: a database or system failure.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl Error {
    /// [`Error::RateLimited`] for `what` was refused, to be tried again after
    /// `wait`: the message ends "try again in …" in words a person reads (`12 s`,
    /// `5 min`, `2 h`, rounded up), and `retry_after` is the wait rounded up to
    /// whole seconds, at least one (HTTP's `Retry-After` counts seconds).
    pub fn rate_limited(what: &str, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let words = match secs {
            0..120 => format!("{secs} s"),
            120..7200 => format!("{} min", secs.div_ceil(60)),
            _ => format!("{} h", secs.div_ceil(3600)),
        };
        Error::RateLimited { message: format!("{what}; try again in {words}"), retry_after: Duration::from_secs(secs) }
    }

    /// True when the cause is the database being out of reach (a restart, a
    /// network cut, a full pool): the request may succeed if retried, so
    /// transports answer "unavailable", not "internal".
    pub fn is_unavailable(&self) -> bool {
        let Error::Internal(e) = self else { return false };
        e.chain().any(|c| {
            c.downcast_ref::<database::DbError>().is_some_and(database::DbError::is_unavailable)
                || c.downcast_ref::<jobengine::StorageError>().is_some_and(jobengine::StorageError::is_unavailable)
                || c.downcast_ref::<sqlx::Error>().is_some_and(database::error::sqlx_unavailable)
        })
    }

    /// True when the database is known down ([`database::DbError::Down`]): the
    /// outage's start and end are logged once, so a request failing during it
    /// need not be a warning of its own.
    pub fn is_outage(&self) -> bool {
        let Error::Internal(e) = self else { return false };
        e.chain().any(|c| {
            c.downcast_ref::<database::DbError>().is_some_and(database::DbError::is_outage)
                || c.downcast_ref::<jobengine::StorageError>().is_some_and(jobengine::StorageError::is_outage)
        })
    }
}

impl From<database::DbError> for Error {
    fn from(e: database::DbError) -> Self {
        Error::Internal(e.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<jobengine::StorageError> for Error {
    fn from(e: jobengine::StorageError) -> Self {
        Error::Internal(e.into())
    }
}

impl From<crate::password::HashError> for Error {
    fn from(e: crate::password::HashError) -> Self {
        match e {
            // The queue drains at dozens of hashes a second; a second is plenty.
            crate::password::HashError::Busy => {
                Error::rate_limited("too many sign-ins are waiting", Duration::from_secs(1))
            }
            e => Error::Internal(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(wait: Duration) -> (String, u64) {
        match Error::rate_limited("slow down", wait) {
            Error::RateLimited { message, retry_after } => (message, retry_after.as_secs()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limits_say_the_wait_in_words_and_in_whole_seconds() {
        assert_eq!(limited(Duration::ZERO), ("slow down; try again in 1 s".to_owned(), 1));
        assert_eq!(limited(Duration::from_millis(1_200)), ("slow down; try again in 2 s".to_owned(), 2));
        assert_eq!(limited(Duration::from_secs(119)), ("slow down; try again in 119 s".to_owned(), 119));
        assert_eq!(limited(Duration::from_secs(121)), ("slow down; try again in 3 min".to_owned(), 121));
        assert_eq!(limited(Duration::from_secs(3_600)), ("slow down; try again in 60 min".to_owned(), 3_600));
        assert_eq!(limited(Duration::from_secs(7_201)), ("slow down; try again in 3 h".to_owned(), 7_201));
    }
}
