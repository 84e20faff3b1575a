//! The one place errors become answers, for every transport: gRPC (and gRPC-web)
//! statuses and the JSON facade's HTTP statuses come from the same [`Failure`].
//!
//! # Policy
//! - **Client-caused errors keep their message**: it names the field and the
//!   problem (`name: is required`), or the rule that refused the call. Field
//!   errors also travel as data: on gRPC as a `google.rpc.BadRequest` detail
//!   (`tonic-types`), so clients need not parse the message; on JSON as `fields`.
//!   The message stays the same human text (`"name: is required; admin_email: …"`)
//!   so grpcurl users still read it.
//! - **Internal errors are logged with their cause chain** (`{:#}`) and answered
//!   with a bare message: database text, paths and SQL never reach a client.
//! - **The database being out of reach** (a restart, a network cut, a full pool)
//!   is `UNAVAILABLE` / `503`, never `INTERNAL`: the call may succeed when retried,
//!   and clients and load balancers treat the two differently.
//!
//! # The table
//! | What                         | gRPC                  | HTTP |
//! |------------------------------|-----------------------|------|
//! | fields invalid, bad token    | `INVALID_ARGUMENT`    | 422  |
//! | not found                    | `NOT_FOUND`           | 404  |
//! | wrong state for the operation| `FAILED_PRECONDITION` | 409  |
//! | unique thing taken           | `ALREADY_EXISTS`      | 409  |
//! | no or ended session          | `UNAUTHENTICATED`     | 401  |
//! | wrong role                   | `PERMISSION_DENIED`   | 403  |
//! | rate limited                 | `RESOURCE_EXHAUSTED`  | 429  |
//! | database unreachable         | `UNAVAILABLE`         | 503  |
//! | anything else                | `INTERNAL`            | 500  |
//!
//! Answers that may succeed later (429 and 503) say when: `Retry-After` in
//! seconds on HTTP, a `google.rpc.RetryInfo` detail on gRPC. A rate limit knows
//! its wait exactly; an unreachable database gets [`UNAVAILABLE_RETRY`].
//!
//! [`http_status`] is that table; [`Failure::from`] sorts domain
//! ([`backoffice::Error`]) and engine ([`jobengine::StorageError`]) errors into it.
//! Answers only one transport has (a JSON body that is not JSON: 400, 413, 415)
//! stay with that transport.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use backoffice::Error;
use jobengine::StorageError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The message for a database that cannot be reached (`UNAVAILABLE` / 503).
pub const UNAVAILABLE: &str = "the database is unavailable right now; try again in a moment";
/// When to try again after [`UNAVAILABLE`]. A request only fails so once the
/// server has been away for the database layer's grace (5 s, `database::reach`);
/// an outage that long is a restart or worse, and clients coming back every few
/// seconds find it over within that much of its end.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);
/// The message for everything internal (`INTERNAL` / 500); the cause is in the log.
pub const INTERNAL: &str = "internal error; see the server log";

/// An error as a client will see it, on any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The gRPC code; the HTTP status follows from it ([`http_status`]).
    pub code: Code,
    /// What the client reads. Never internal detail (module docs).
    pub message: String,
    /// Field problems as (field, message), in the order found; empty when the
    /// failure is not about fields.
    pub fields: Vec<(String, String)>,
    /// When the same call may succeed (rate limits, the database away).
    pub retry_after: Option<Duration>,
}

/// The HTTP status for a gRPC code: the one table both transports answer from.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // Field checks of a well-formed body; malformed bodies are the JSON
        // facade's own 400.
        Code::InvalidArgument | Code::OutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Failure {
    /// A failure with a message and no field details.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fields: Vec::new(), retry_after: None }
    }

    /// A failure about fields: `message` for people, `fields` as data.
    fn with_fields(code: Code, message: String, fields: Vec<(String, String)>) -> Self {
        Self { fields, ..Self::new(code, message) }
    }

    /// `UNAUTHENTICATED`: no credential, or one that names no live session.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    /// `PERMISSION_DENIED`: signed in, but not allowed.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    /// The database is out of reach: logs `cause` as a warning (it is expected
    /// during restarts; a debug line while the database is known down, whose
    /// start and end are logged once) and answers `UNAVAILABLE` with a bare
    /// message.
    fn unavailable(cause: &Error) -> Self {
        if cause.is_outage() {
            tracing::debug!(error = %cause, "database unavailable");
        } else {
            tracing::warn!(error = %cause, "database unavailable");
        }
        Self { retry_after: Some(UNAVAILABLE_RETRY), ..Self::new(Code::Unavailable, UNAVAILABLE) }
    }

    /// Anything else internal: logs `cause` (with its chain, if the caller
    /// formatted it with `{:#}`) and answers `INTERNAL` with a bare message.
    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(Code::Internal, INTERNAL)
    }

    /// The HTTP status of this failure ([`http_status`]).
    pub fn http_status(&self) -> StatusCode {
        http_status(self.code)
    }

    /// The gRPC status, with a `BadRequest` detail when fields are named and a
    /// `RetryInfo` detail when the call may succeed later.
    pub fn into_status(self) -> Status {
        if self.fields.is_empty() && self.retry_after.is_none() {
            return Status::new(self.code, self.message);
        }
        let mut details = ErrorDetails::new();
        if !self.fields.is_empty() {
            let violations: Vec<FieldViolation> =
                self.fields.into_iter().map(|(field, message)| FieldViolation::new(field, message)).collect();
            details.set_bad_request(violations);
        }
        if self.retry_after.is_some() {
            details.set_retry_info(self.retry_after);
        }
        Status::with_error_details(self.code, self.message, details)
    }
}

impl From<Failure> for Status {
    fn from(f: Failure) -> Self {
        f.into_status()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(errs) => Self::with_fields(
                Code::InvalidArgument,
                errs.to_string(),
                errs.0.iter().map(|f| (f.field.to_owned(), f.message.clone())).collect(),
            ),
            // The field travels as data too, so a form can show it beside the input.
            Error::AlreadyExists { field, message } => {
                Self::with_fields(Code::AlreadyExists, format!("{field}: {message}"), vec![(field.to_owned(), message)])
            }
            Error::InvalidRows(rows) => Self::with_fields(
                Code::InvalidArgument,
                format!("invalid rows: {}", backoffice::tenants::import::describe(&rows)),
                rows.iter().map(|r| (r.path(), r.message.clone())).collect(),
            ),
            Error::BadCredentials => Self::unauthenticated("wrong email or password"),
            Error::Unauthenticated => Self::unauthenticated("sign in first"),
            Error::Forbidden(why) => Self::permission_denied(why),
            Error::RateLimited { message, retry_after } => {
                Self { retry_after: Some(retry_after), ..Self::new(Code::ResourceExhausted, message) }
            }
            Error::NotFound(what) => Self::new(Code::NotFound, format!("{what} not found")),
            e @ Error::BadToken => {
                let message = e.to_string();
                Self::with_fields(
                    Code::InvalidArgument,
                    format!("token: {message}"),
                    vec![("token".to_owned(), message)],
                )
            }
            e if e.is_unavailable() => Self::unavailable(&e),
            e => Self::internal(&e),
        }
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(id) => Self::new(Code::NotFound, format!("job {id} not found")),
            e @ StorageError::WrongState { .. } => Self::new(Code::FailedPrecondition, e.to_string()),
            e @ StorageError::UniqueKeyTaken(_) => Self::new(Code::AlreadyExists, e.to_string()),
            e @ StorageError::RecurringNotFound(_) => Self::new(Code::NotFound, e.to_string()),
            e @ StorageError::BatchNotFound(_) => Self::new(Code::NotFound, e.to_string()),
            StorageError::InvalidRecurring { field, message } => Self::with_fields(
                Code::InvalidArgument,
                format!("{field}: {message}"),
                vec![(field.to_owned(), message)],
            ),
            e => {
                // The domain already knows which database failures mean "away";
                // asking it (rather than matching sqlx here) keeps one list of them.
                let e = Error::Internal(anyhow::Error::new(e));
                if e.is_unavailable() { Self::unavailable(&e) } else { Self::internal(&e) }
            }
        }
    }
}

/// `INVALID_ARGUMENT` for one request field the transport itself checks (an id,
/// a page size): `"field: message"`, with the field as a `BadRequest` detail like
/// the domain's field errors.
pub fn invalid_field(field: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    Failure::with_fields(Code::InvalidArgument, format!("{field}: {message}"), vec![(field.to_owned(), message)])
        .into_status()
}

/// A domain error as a gRPC status (for `map_err`).
pub fn status(e: Error) -> Status {
    Failure::from(e).into_status()
}

/// An engine error as a gRPC status (for `map_err`).
pub fn storage_status(e: StorageError) -> Status {
    Failure::from(e).into_status()
}

/// Reads the `RetryInfo` delay of a status ([`Failure::into_status`]): when
/// the call may succeed if made again.
pub fn retry_after(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

/// Sets `Retry-After` to `after` in whole seconds, rounded up (RFC 9110 §10.2.3).
pub fn set_retry_after(headers: &mut HeaderMap, after: Duration) {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// Reads the `BadRequest` field violations of a status as (field, message):
/// what a Rust client (tests, tools) does with [`Failure::into_status`]'s detail.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_keep_the_message_and_travel_as_details() {
        let mut errs = backoffice::validate::FieldErrors::default();
        errs.push("name", "is required");
        errs.push("admin_email", "is not an email address");
        let s = status(Error::Invalid(errs));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "name: is required; admin_email: is not an email address");
        assert_eq!(
            field_violations(&s),
            [
                ("name".to_owned(), "is required".to_owned()),
                ("admin_email".to_owned(), "is not an email address".to_owned())
            ]
        );
    }

    #[test]
    fn one_table_for_both_transports() {
        let cases = [
            (Failure::from(StorageError::NotFound(7)), Code::NotFound, StatusCode::NOT_FOUND),
            (Failure::from(StorageError::UniqueKeyTaken("k".into())), Code::AlreadyExists, StatusCode::CONFLICT),
            (Failure::from(Error::NotFound("tenant")), Code::NotFound, StatusCode::NOT_FOUND),
            (Failure::from(Error::Forbidden("no")), Code::PermissionDenied, StatusCode::FORBIDDEN),
            (
                Failure::from(Error::rate_limited("slow", Duration::from_secs(3))),
                Code::ResourceExhausted,
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (Failure::from(Error::BadToken), Code::InvalidArgument, StatusCode::UNPROCESSABLE_ENTITY),
            (
                Failure::from(Error::Internal(anyhow::anyhow!("disk on fire"))),
                Code::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (f, code, http) in cases {
            assert_eq!((f.code, f.http_status()), (code, http), "{f:?}");
        }
        // The engine's "database away" is UNAVAILABLE like the domain's, not INTERNAL.
        let away = Failure::from(StorageError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (away.code, away.http_status(), away.message.as_str()),
            (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        );
        let internal = Failure::from(Error::Internal(anyhow::anyhow!("secret table name")));
        assert_eq!(internal.message, INTERNAL, "internals are not shown");
    }

    #[test]
    fn answers_that_may_succeed_later_say_when() {
        let limited = status(Error::rate_limited("slow down", Duration::from_millis(2_500)));
        assert_eq!(retry_after(&limited), Some(Duration::from_secs(3)));
        let away = storage_status(StorageError::from(sqlx::Error::PoolTimedOut));
        assert_eq!((away.code(), retry_after(&away)), (Code::Unavailable, Some(UNAVAILABLE_RETRY)));
        // Both details at once survive the trip.
        let both =
            Failure { retry_after: Some(Duration::from_secs(9)), ..Failure::from(Error::BadToken) }.into_status();
        assert_eq!(retry_after(&both), Some(Duration::from_secs(9)));
        assert_eq!(field_violations(&both).len(), 1);
        for never in [status(Error::NotFound("tenant")), status(Error::Internal(anyhow::anyhow!("x")))] {
            assert_eq!(retry_after(&never), None, "{never:?}");
        }
        let mut headers = HeaderMap::new();
        set_retry_after(&mut headers, Duration::from_millis(1_001));
        assert_eq!(headers[header::RETRY_AFTER], "2");
        set_retry_after(&mut headers, Duration::ZERO);
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }
}
