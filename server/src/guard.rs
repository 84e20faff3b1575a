//! Who may call what. Every RPC handler asks the [`Guard`] for the role it needs
//! before doing anything, so swapping the guard is all it takes to secure them.
//!
//! Until identity lands (sessions, bearer tokens, roles), the server runs with
//! [`Open`], which lets every caller through as "anonymous admin". That is only safe
//! on loopback: `main` refuses a non-loopback `BIND_ADDR` with the open guard unless
//! `ALLOW_OPEN_ADMIN=1` says otherwise.

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
}

/// Decides whether a call may proceed.
#[async_trait]
pub trait Guard: Send + Sync + 'static {
    /// The caller, if they hold `role`; otherwise `UNAUTHENTICATED` (no or bad
    /// credentials) or `PERMISSION_DENIED` (wrong role).
    async fn require(&self, metadata: &MetadataMap, role: Role) -> Result<Caller, Status>;
}

/// Lets everyone through: loopback development only (see the module docs).
#[derive(Debug, Default)]
pub struct Open;

#[async_trait]
impl Guard for Open {
    async fn require(&self, _metadata: &MetadataMap, _role: Role) -> Result<Caller, Status> {
        Ok(Caller { name: "anonymous admin (open guard)".to_owned() })
    }
}
