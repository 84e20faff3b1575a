//! The back office's jobs, one file each, registered in one list ([`registry`]).
//! Each runs with the same environment ([`crate::env::Env`]).
//!
//! - [`provision`]: `tenants.provision`, a tenant's database, migrations, seed
//!   and activation; its end hook marks the tenant failed when the job dies;
//! - [`import_done`]: `tenants.import_done`, the one notice when a bulk
//!   import's batch has ended;
//! - [`send_email`]: `mail.send`, one outbox message out;
//! - [`welcome_reminder`]: `mail.welcome_reminder`, the one reminder for an
//!   unused welcome link, scheduled when the welcome email is sent;
//! - [`prune`]: `identity.prune`, expired sessions, tokens and login failures,
//!   a recurring job ([`recurring`] lists the back office's schedules).

pub mod import_done;
pub mod provision;
pub mod prune;
pub mod send_email;
pub mod welcome_reminder;

use crate::env::Env;

/// The registry of every job the back office runs (plus the engine's
/// diagnostics), with their end hooks.
pub fn registry() -> jobengine::Registry<Env> {
    jobengine::registry_with_builtins()
        .register::<provision::ProvisionTenant>()
        .on_end::<provision::ProvisionTenant>()
        .register::<import_done::ImportDone>()
        .register::<send_email::SendEmail>()
        .register::<prune::PruneIdentity>()
        .register::<welcome_reminder::WelcomeReminder>()
}

/// The back office's recurring jobs, declared by every worker at start.
pub fn recurring() -> Vec<jobengine::Recurring> {
    // The expressions are ours and valid; a failure here would be a typo caught by
    // this crate's tests.
    [prune::recurring()].into_iter().filter_map(Result::ok).collect()
}
