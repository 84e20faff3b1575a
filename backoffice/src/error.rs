//! The domain's errors.
//!
//! Policy: every public operation returns [`Error`]. Variants a client caused
//! (bad input, taken names, wrong credentials, limits) carry what the client may be
//! told; [`Error::Internal`] carries the cause for the log only, and transports
//! answer it with a bare "internal error".

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
    /// Too many attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
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
            crate::password::HashError::Busy => Error::RateLimited(e.to_string()),
            e => Error::Internal(e.into()),
        }
    }
}
