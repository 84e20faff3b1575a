//! The back office's jobs, one file each, registered in one list ([`registry`]).
//! Each runs with the same environment ([`crate::env::Env`]).
//!
//! - [`provision`]: `tenants.provision`, a tenant's database, migrations, seed
//!   and activation; its end hook marks the tenant failed when the job dies;
//! - [`send_email`]: `mail.send`, one outbox message out.

pub mod provision;
pub mod send_email;

use crate::env::Env;

/// The registry of every job the back office runs (plus the engine's
/// diagnostics), with their end hooks.
pub fn registry() -> jobengine::Registry<Env> {
    jobengine::registry_with_builtins()
        .register::<provision::ProvisionTenant>()
        .on_end::<provision::ProvisionTenant>()
        .register::<send_email::SendEmail>()
}
