//! The back office's domain: tenants, identity, provisioning and mail, on top of
//! the generic job engine.
//!
//! # Layout
//! - [`validate`]: inputs parsed into checked types at the edge;
//! - [`password`]: argon2id hashing, bounded;
//! - [`identity`]: users, sessions, login, set-password tokens;
//! - [`db`]: control-plane migrations and the portable-query macros;
//! - [`error`]: the domain's error type and its policy.

pub mod db;
pub mod error;
pub mod identity;
pub mod password;
pub mod validate;

pub use error::Error;
