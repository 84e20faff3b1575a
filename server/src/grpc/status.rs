//! The one place domain errors become gRPC statuses. Client-caused errors keep
//! their message (it names the field and the problem); internal ones are logged
//! with their cause chain and answered with a bare `INTERNAL`.

use backoffice::Error;
use tonic::Status;

/// Maps a domain error to the status a client sees.
pub fn status(e: Error) -> Status {
    match e {
        Error::Invalid(errs) => Status::invalid_argument(errs.to_string()),
        Error::AlreadyExists { field, message } => Status::already_exists(format!("{field}: {message}")),
        Error::BadCredentials => Status::unauthenticated("wrong email or password"),
        Error::Unauthenticated => Status::unauthenticated("sign in first"),
        Error::Forbidden(why) => Status::permission_denied(why),
        Error::RateLimited(why) => Status::resource_exhausted(why),
        Error::NotFound(what) => Status::not_found(format!("{what} not found")),
        e @ Error::BadToken => Status::invalid_argument(format!("token: {e}")),
        e if e.is_unavailable() => {
            tracing::warn!(error = %e, "database unavailable");
            Status::unavailable("the database is unavailable right now; try again in a moment")
        }
        e => {
            tracing::error!(error = %e, "request failed");
            Status::internal("internal error; see the server log")
        }
    }
}
