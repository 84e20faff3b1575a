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
//! - [`tenant_db`]: each tenant's own database;
//! - [`mail`]: the email outbox and its delivery job;
//! - [`notify`]: notifications for signed-in users (toasts).

pub mod db;
pub mod error;
pub mod identity;
pub mod mail;
pub mod notify;
pub mod password;
pub mod provision;
pub mod tenant_db;
pub mod tenants;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;

/// The registry of every job the back office runs (plus the engine's diagnostics).
pub fn registry() -> jobengine::Registry<provision::Env> {
    jobengine::registry_with_builtins().register::<provision::ProvisionTenant>().register::<mail::SendEmail>()
}

/// Opens the control plane named by `database_url`: the job engine's and the
/// control plane's migrations, and the environment the jobs run in. Tenant SQLite
/// files go under `data_dir/tenants`; email leaves through `mail`; `fault`
/// (tests only) slows or breaks provisioning.
///
/// # Errors
/// The database cannot be opened or migrated.
pub async fn open(
    database_url: &str,
    data_dir: std::path::PathBuf,
    mail: mail::Mail,
    fault: Option<provision::Fault>,
) -> anyhow::Result<(jobengine::Jobs, std::sync::Arc<provision::Env>)> {
    use anyhow::Context;
    let jobs = jobengine::Jobs::connect(database_url).await.context("opening the job store")?;
    let pools = jobs.store().pools();
    db::migrate(&pools).await.context("migrating the control plane")?;
    let tenant_dbs = tenant_db::TenantDbs::new(pools.clone(), database_url, data_dir)?;
    if let Some(f) = &fault {
        tracing::warn!(?f, "PROVISION_FAULT is set: provisioning is deliberately slowed or broken");
    }
    tracing::info!(transport = ?mail.transport, "email");
    let env = provision::Env { jobs: jobs.clone(), pools, tenant_dbs, fault, mail };
    Ok((jobs, std::sync::Arc::new(env)))
}
