//! The back office's domain: tenants, identity, provisioning and mail, on top of
//! the generic job engine.
//!
//! # Layout
//! - [`validate`]: inputs parsed into checked types at the edge;
//! - [`password`]: argon2id hashing, bounded;
//! - [`identity`]: users, sessions, login, set-password tokens;
//! - [`db`]: control-plane migrations and the portable-query macros;
//! - [`error`]: the domain's error type and its policy;
//! - [`tenants`]: tenants in the control plane, created by admins or sign-ups;
//! - [`provision`]: the `ProvisionTenant` job;
//! - [`tenant_db`]: each tenant's own database.

pub mod db;
pub mod error;
pub mod identity;
pub mod password;
pub mod provision;
pub mod tenant_db;
pub mod tenants;
pub mod validate;

pub use error::Error;

/// The registry of every job the back office runs (plus the engine's diagnostics).
pub fn registry() -> jobengine::Registry<provision::Env> {
    jobengine::registry_with_builtins().register::<provision::ProvisionTenant>()
}
