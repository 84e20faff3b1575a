//! Who may call what. Every RPC handler asks the [`Guard`] for the role it needs
//! before doing anything, so swapping the guard is all it takes to secure them.
//!
//! [`Sessions`] checks a session token (bearer or cookie) and the user's role; it
//! guards the job service (the dashboard's API) and the tenant service.

use async_trait::async_trait;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// A role an RPC can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Operates the whole platform (tenants, the job dashboard).
    SuperAdmin,
}

/// Who is calling, as far as the guard could tell.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A name for audit lines ("requeued by ...").
    pub name: String,
    /// The signed-in user, when there is one.
    pub user: Option<backoffice::identity::User>,
}

/// A request's signed-in session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session token it came with.
    pub token: String,
    /// Whose session it is.
    pub user: backoffice::identity::User,
    /// When the session expires (Unix microseconds).
    pub expires_at: jobengine::Micros,
}

/// The session a request carries (bearer or cookie): `UNAUTHENTICATED` without
/// one or when it has ended. One query.
///
/// # Errors
/// As above, or the database's failure as a status.
pub async fn signed_in(identity: &backoffice::identity::Identity, metadata: &MetadataMap) -> Result<SignedIn, Status> {
    let token = session_token(metadata).ok_or_else(|| Status::unauthenticated("sign in first"))?;
    let (user, expires_at) = identity
        .session(&token)
        .await
        .map_err(crate::grpc::status::status)?
        .ok_or_else(|| Status::unauthenticated("your session has ended; sign in again"))?;
    Ok(SignedIn { token, user, expires_at })
}

/// Decides whether a call may proceed.
#[async_trait]
pub trait Guard: Send + Sync + 'static {
    /// The caller, if they hold `role`; otherwise `UNAUTHENTICATED` (no or bad
    /// credentials) or `PERMISSION_DENIED` (wrong role).
    async fn require(&self, metadata: &MetadataMap, role: Role) -> Result<Caller, Status>;
}

/// The session token of a request: `authorization: Bearer <token>` (scripts) or
/// the `session` cookie (browsers).
pub fn session_token(metadata: &MetadataMap) -> Option<String> {
    if let Some(v) = metadata.get("authorization").and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim().to_owned());
    }
    metadata
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("session="))
        .map(str::to_owned)
        .next()
}

/// Lets through signed-in users holding the role.
#[derive(Clone)]
pub struct Sessions {
    /// Where sessions are checked.
    pub identity: backoffice::identity::Identity,
}

#[async_trait]
impl Guard for Sessions {
    async fn require(&self, metadata: &MetadataMap, role: Role) -> Result<Caller, Status> {
        let user = signed_in(&self.identity, metadata).await?.user;
        let ok = match role {
            Role::SuperAdmin => user.role == backoffice::identity::Role::SuperAdmin,
        };
        if !ok {
            return Err(Status::permission_denied("only super admins may do this"));
        }
        Ok(Caller { name: user.email.clone(), user: Some(user) })
    }
}
