//! Who is calling: one layer on the whole router resolves the request's
//! credential into a [`Caller`] before any handler runs, and every transport reads
//! it from the request's extensions: the pages ([`crate::pages`]), the gRPC
//! services (`tonic::Request::extensions`), the JSON facade ([`crate::api`]).
//!
//! The credential is `authorization: Bearer <token>` (scripts, the JSON facade)
//! or the `session` cookie (browsers); the bearer wins when both are sent. It is
//! checked once, with one query ([`Identity::session`]). Static assets (`/pkg/`,
//! `/favicon.svg`) are skipped so a page load does not cost a query per file.
//!
//! The layer never refuses a request itself: many calls need no session (sign-in,
//! sign-up, reflection, public pages). It records what it found, and each handler
//! asks for what it needs: [`Caller::signed_in`], [`Caller::require_super_admin`],
//! or [`Caller::bearer`] (the JSON facade, which must ignore cookies so a
//! cross-site page cannot use a signed-in browser's session).
//!
//! A credential that could not be checked because the database is away is
//! neither anonymous nor signed in: it is [`Caller::Unchecked`], and anything that
//! needs the session answers `UNAVAILABLE` / 503 (see [`crate::boundary`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use backoffice::identity::{Identity, Role, User};
use jobengine::Micros;

use crate::boundary::Failure;

/// How the credential came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `authorization: Bearer <token>`.
    Bearer,
    /// The `session` cookie.
    Cookie,
}

/// A credential as sent, before or without a live session behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The session token.
    pub token: String,
    /// Where it was found.
    pub via: Via,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Whose session it is.
    pub user: User,
    /// The token it came with (streams hash it to be closed on sign-out).
    pub token: String,
    /// When it expires (Unix microseconds): streams end then.
    pub expires_at: Micros,
    /// Where the token was found.
    pub via: Via,
}

impl Session {
    /// This session, if its user is a super admin: the one role check, shared by
    /// the gRPC services and the JSON facade.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` for any other role.
    pub fn require_super_admin(&self) -> Result<&Self, Failure> {
        if self.user.role != Role::SuperAdmin {
            return Err(Failure::permission_denied(SUPER_ADMINS_ONLY));
        }
        Ok(self)
    }
}

/// What the layer found, in the request's extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credential at all.
    Anonymous,
    /// A credential that names no live session (unknown, signed out, expired).
    Ended(Credential),
    /// A live session.
    SignedIn(Session),
    /// The credential could not be checked (the database is away, or failed):
    /// what to answer anything that needs the session. Never treated as
    /// anonymous, so an outage does not look like a sign-out.
    Unchecked(Credential, Failure),
}

/// Said to callers without a credential.
pub const SIGN_IN_FIRST: &str = "sign in first";
/// Said to callers whose credential names no live session.
pub const SESSION_ENDED: &str = "your session has ended; sign in again";
/// Said to signed-in callers without the super-admin role.
pub const SUPER_ADMINS_ONLY: &str = "only super admins may do this";
/// Said to JSON facade callers without a bearer token (a cookie does not count).
pub const SEND_BEARER: &str = "send Authorization: Bearer <token> from Login";

/// The credential of a request: the bearer token if there is one (the scheme is
/// case-insensitive, RFC 9110), else the `session` cookie.
pub fn credential(headers: &HeaderMap) -> Option<Credential> {
    let bearer = headers.get_all(header::AUTHORIZATION).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    if let Some(token) = bearer {
        return Some(Credential { token, via: Via::Bearer });
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix("session="))
        .map(|t| Credential { token: t.to_owned(), via: Via::Cookie })
}

impl Caller {
    /// Resolves `headers`' credential against `identity`: one query, or none
    /// without a credential.
    pub async fn resolve(identity: &Identity, headers: &HeaderMap) -> Self {
        let Some(credential) = credential(headers) else { return Self::Anonymous };
        match identity.session(&credential.token).await {
            Ok(Some((user, expires_at))) => {
                Self::SignedIn(Session { user, token: credential.token, expires_at, via: credential.via })
            }
            Ok(None) => Self::Ended(credential),
            Err(e) => {
                let failure = Failure::from(e);
                Self::Unchecked(credential, failure)
            }
        }
    }

    /// The caller the layer put on a gRPC request. Without the layer (a router
    /// built without it) every call is anonymous: it fails closed.
    pub fn of<T>(req: &tonic::Request<T>) -> &Self {
        req.extensions().get::<Self>().unwrap_or(&Self::Anonymous)
    }

    /// The credential as sent, live or not (sign-out revokes it either way).
    pub fn credential_token(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Ended(c) | Self::Unchecked(c, _) => Some(&c.token),
            Self::SignedIn(s) => Some(&s.token),
        }
    }

    /// The live session, bearer or cookie.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` ("sign in first" without a credential, "your session has
    /// ended; sign in again" with a dead one), or why it could not be checked.
    pub fn signed_in(&self) -> Result<&Session, Failure> {
        match self {
            Self::SignedIn(s) => Ok(s),
            Self::Anonymous => Err(Failure::unauthenticated(SIGN_IN_FIRST)),
            Self::Ended(_) => Err(Failure::unauthenticated(SESSION_ENDED)),
            Self::Unchecked(_, f) => Err(f.clone()),
        }
    }

    /// The live session of a super admin: the role check of every admin RPC.
    ///
    /// # Errors
    /// As [`Caller::signed_in`], or `PERMISSION_DENIED` for any other role.
    pub fn require_super_admin(&self) -> Result<&Session, Failure> {
        self.signed_in()?.require_super_admin()
    }

    /// The live session of a bearer token only: a cookie counts as no credential
    /// (the JSON facade, see the module docs).
    ///
    /// # Errors
    /// As [`Caller::signed_in`], with "send Authorization: Bearer …" when no
    /// bearer token came.
    pub fn bearer(&self) -> Result<&Session, Failure> {
        let via = match self {
            Self::Anonymous => None,
            Self::Ended(c) | Self::Unchecked(c, _) => Some(c.via),
            Self::SignedIn(s) => Some(s.via),
        };
        if via != Some(Via::Bearer) {
            return Err(Failure::unauthenticated(SEND_BEARER));
        }
        self.signed_in()
    }
}

/// Requests that never need the caller: static files, fetched many per page.
fn is_static_asset(path: &str) -> bool {
    path.starts_with("/pkg/") || path == "/favicon.svg"
}

/// The layer (see the module docs): resolves the caller and puts it into the
/// request's extensions, then runs the rest of the stack.
pub async fn layer(State(identity): State<Identity>, mut req: Request, next: Next) -> Response {
    if !is_static_asset(req.uri().path()) {
        let caller = Caller::resolve(&identity, req.headers()).await;
        req.extensions_mut().insert(caller);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_wins_over_the_cookie() {
        let c = credential(&headers(&[("cookie", "a=1; session=from-cookie"), ("authorization", "Bearer tok")]));
        assert_eq!(c, Some(Credential { token: "tok".into(), via: Via::Bearer }));
        let c = credential(&headers(&[("cookie", "a=1; session=from-cookie"), ("authorization", "Basic eA==")]));
        assert_eq!(c, Some(Credential { token: "from-cookie".into(), via: Via::Cookie }));
        assert_eq!(credential(&headers(&[("authorization", "bearer x")])).map(|c| c.via), Some(Via::Bearer));
        assert_eq!(credential(&headers(&[])), None);
    }

    #[test]
    fn the_json_facade_ignores_cookies() {
        let ended = Caller::Ended(Credential { token: "t".into(), via: Via::Cookie });
        assert_eq!(ended.bearer().map(|_| ()), Err(Failure::unauthenticated(SEND_BEARER)));
        assert_eq!(ended.signed_in().map(|_| ()), Err(Failure::unauthenticated(SESSION_ENDED)));
        assert_eq!(Caller::Anonymous.signed_in().map(|_| ()), Err(Failure::unauthenticated(SIGN_IN_FIRST)));
    }

    #[test]
    fn assets_skip_the_lookup() {
        assert!(is_static_asset("/pkg/app.wasm") && is_static_asset("/favicon.svg"));
        assert!(!is_static_asset("/admin") && !is_static_asset("/jobs.v1.JobService/ListJobs"));
    }
}
