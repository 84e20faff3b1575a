//! The back office's domain: tenants, identity, provisioning and mail, on top of
//! the generic job engine.
//!
//! # Layout
//! - [`validate`]: inputs parsed into checked types at the edge;
//! - [`password`]: argon2id hashing, bounded;
//! - [`identity`]: users, sessions, login, set-password tokens;
//! - [`throttle`]: sign-in throttling per client and per account from a client;
//! - [`password_link`]: fresh set-password links ("send me a new link", the
//!   welcome reminder);
//! - [`maintenance`]: pruning what ages out (throttle rows, sessions, tokens);
//! - [`control_file`]: the SQLite control database's file, guarded at start and
//!   while running;
//! - [`db`]: the control plane's migrations (queries are written once with
//!   [`database::query`] and run on either backend);
//! - [`error`]: the domain's error type and its policy;
//! - [`tenants`]: tenants in the control plane, created by admins or sign-ups;
//! - [`jobs`]: the jobs, one file each, and their registry;
//! - [`env`]: what the jobs run with;
//! - [`tenant_db`]: each tenant's own database;
//! - [`mail`]: composing email and the transports that deliver it;
//! - [`notify`]: notifications for signed-in users (toasts);
//! - [`relocate`]: moving an SQLite installation to PostgreSQL.

pub mod control_file;
pub mod db;
pub mod env;
pub mod error;
pub mod identity;
pub mod jobs;
pub mod mail;
pub mod maintenance;
pub mod notify;
pub mod password;
pub mod password_link;
pub mod relocate;
pub mod tenant_db;
pub mod tenants;
pub mod throttle;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use jobs::{recurring, registry};

/// Opens the control plane named by `database_url`: the job engine's and the
/// control plane's migrations, and the environment the jobs run in. Tenant SQLite
/// files go under `data_dir/tenants`; email leaves through `mail`; `fault`
/// (tests only) slows or breaks provisioning.
///
/// # Errors
/// The database cannot be opened or migrated, or the SQLite control database is
/// missing while tenant databases are present
/// ([`control_file::refuse_orphaned_tenants`]).
pub async fn open(
    database_url: &str,
    data_dir: std::path::PathBuf,
    mail: mail::Mail,
    fault: Option<env::Fault>,
) -> anyhow::Result<(jobengine::Jobs, std::sync::Arc<env::Env>)> {
    use anyhow::Context;
    control_file::refuse_orphaned_tenants(database_url, &data_dir)?;
    let jobs = jobengine::Jobs::connect(database_url).await.context("opening the job store")?;
    let db = jobs.db().clone();
    db.migrate(db::migrations()).await.context("migrating the control plane")?;
    tenants::backfill_skeletons(&db).await.context("reserving the names of older tenants")?;
    let tenant_dbs = tenant_db::TenantDbs::new(&db, data_dir);
    if let Some(f) = &fault {
        tracing::warn!(?f, "PROVISION_FAULT is set: provisioning is deliberately slowed or broken");
    }
    tracing::info!(transport = ?mail.transport, "email");
    let env = std::sync::Arc::new(env::Env { jobs: jobs.clone(), db, tenant_dbs, fault, mail });
    // Before any worker or admin can end a job: the hooks must see every end.
    jobs.install_end_hooks(&registry(), env.clone());
    Ok((jobs, env))
}
