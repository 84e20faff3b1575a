//! The `ProvisionTenant` job: create the tenant's database, migrate it, seed it,
//! activate the tenant.
//!
//! Every step is idempotent (create-if-absent, migrations that record themselves,
//! seeding by upsert, a conditional status change), so when a worker dies at any
//! point the re-run converges on one database, one seed, one activation. Each step
//! is reported as job progress and as the tenant's `step`, for the dashboard and
//! for `WatchTenant`.
//!
//! When the job ends for good without activating the tenant (dead: the last
//! attempt failed, or its workers kept dying; or deleted by an admin), its end
//! hook marks the tenant `failed` with the reason and tells its creator, in the
//! transaction that ends the job.
//!
//! Deleting the job while it runs cancels it (see `jobengine::cancel`): the
//! tenant is failed with "provisioning cancelled by <who>" by the hook at once,
//! and the running attempt sees its token and stops before its next step (a
//! step already under way finishes; every step is idempotent, so a requeue later
//! converges as a re-run does).

use anyhow::{Context, anyhow};
use database::{Db, Tx, query};
use jobengine::{EndContext, Ended, Job, JobContext, JobError, Micros, OnEnd};
use serde::{Deserialize, Serialize};

use crate::env::{Env, Fault};
use crate::notify::{self, Kind, NewNotification};

/// The steps, in order, as reported.
pub const STEPS: [&str; 4] = ["creating database", "migrating", "seeding", "activating"];

/// Provision one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionTenant {
    /// The tenant's id.
    pub tenant_id: String,
}

impl Job for ProvisionTenant {
    const KIND: &'static str = "tenants.provision";
    type Context = Env;

    fn unique_key(&self) -> Option<String> {
        Some(format!("provision:{}", self.tenant_id))
    }

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        provision(&self.tenant_id, &ctx).await.map_err(|e| {
            // Retrying cannot free an address another account holds: fail at once.
            if e.chain().any(|c| c.is::<AccountElsewhere>() || c.is::<TenantFailed>()) {
                JobError::permanent(e)
            } else {
                JobError::retry(e)
            }
        })
    }
}

impl OnEnd for ProvisionTenant {
    async fn on_end(self, end: EndContext<'_, Env>) -> anyhow::Result<()> {
        let why = match &end.ended {
            Ended::Succeeded => return Ok(()),
            Ended::Dead { error } => error.clone(),
            // The engine's reason is "deleted by <who>".
            Ended::Deleted { reason } => {
                format!("provisioning cancelled by {}", reason.strip_prefix("deleted by ").unwrap_or(reason))
            }
        };
        mark_failed(end.tx, &self.tenant_id, &why, end.now).await
    }
}

/// The admin email belongs to another account: a permanent conflict (sign-ups
/// reserve their email, so only an account made outside them, such as a super
/// admin seeded with that address, gets here).
#[derive(Debug, thiserror::Error)]
#[error("{0} already has an account elsewhere")]
pub struct AccountElsewhere(String);

/// The tenant failed before this run (its job was requeued by hand, or ran late):
/// permanent, since a failed tenant is never brought back.
#[derive(Debug, thiserror::Error)]
#[error("tenant {0} has failed and released its name and email; create it again instead")]
pub struct TenantFailed(String);

#[derive(sqlx::FromRow)]
struct Target {
    name: String,
    initiated_by: Option<String>,
    status: String,
    db_name: String,
    admin_email: String,
    /// Set for a tenant of a bulk import: its batch sends one notice for all.
    import_batch_id: Option<i64>,
}

async fn step(ctx: &JobContext<Env>, tenant_id: &str, name: &str) -> anyhow::Result<()> {
    if ctx.is_cancelled() {
        return Err(anyhow!("provisioning cancelled before {name}"));
    }
    ctx.progress(name).await.context("recording progress")?;
    let now = ctx.app.jobs.clock().now();
    query("UPDATE tenants SET step = $1, updated_at = $2 WHERE id = $3 AND status = 'provisioning'")
        .bind(name)
        .bind(now)
        .bind(tenant_id)
        .execute(ctx.app.db.write())
        .await
        .context("recording the tenant's step")?;
    if let Some(Fault::Slow(d)) = &ctx.app.fault {
        tokio::select! {
            _ = tokio::time::sleep(*d) => {}
            _ = ctx.cancelled() => return Err(anyhow!("provisioning cancelled during {name}")),
        }
    }
    Ok(())
}

async fn provision(tenant_id: &str, ctx: &JobContext<Env>) -> anyhow::Result<()> {
    let env = &ctx.app;
    let t: Option<Target> =
        query("SELECT name, initiated_by, status, db_name, admin_email, import_batch_id FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(env.db.read())
            .await
            .context("loading the tenant")?;
    let t = t.ok_or_else(|| anyhow!("tenant {tenant_id} does not exist"))?;
    if t.status == "active" {
        return Ok(()); // A re-run after the activation committed: nothing left to do.
    }
    if t.status == "failed" {
        // A failed tenant released its name and email (see `mark_failed`), which
        // others may hold now: it is never brought back; a new one is created.
        return Err(TenantFailed(tenant_id.to_owned()).into());
    }

    step(ctx, tenant_id, STEPS[0]).await?;
    env.tenant_dbs.create(&t.db_name).await.context("creating the tenant database")?;

    step(ctx, tenant_id, STEPS[1]).await?;
    let fail = match &env.fault {
        Some(Fault::Fail) => true,
        Some(Fault::FailNamed(text)) => t.name.contains(text.as_str()),
        _ => false,
    };
    if fail {
        return Err(anyhow!("PROVISION_FAULT=fail is set")).context("migrating the tenant database");
    }
    let tenant_db = env.tenant_dbs.open(&t.db_name).await.context("opening the tenant database")?;
    let seeded = async {
        env.tenant_dbs.migrate(&tenant_db).await.context("migrating the tenant database")?;
        step(ctx, tenant_id, STEPS[2]).await?;
        seed(env, tenant_id, &t.admin_email, &tenant_db).await.context("seeding the tenant")
    }
    .await;
    tenant_db.close().await;
    let admin_id = seeded?;

    step(ctx, tenant_id, STEPS[3]).await?;
    activate(env, tenant_id, &t, &admin_id).await.context("activating the tenant")?;
    tracing::info!(tenant = tenant_id, admin = %admin_id, "tenant provisioned");
    Ok(())
}

/// One transaction: the tenant becomes `active`, its admin gets a set-password
/// token, the welcome email carrying it goes into the outbox with its delivery
/// job, its reminder is scheduled (`super::welcome_reminder`), and the super admin who asked for it (if one did) is notified. The status change is conditional, so a re-run after this committed does
/// nothing: one activation, one token, one email.
async fn activate(env: &Env, tenant_id: &str, t: &Target, admin_id: &str) -> anyhow::Result<()> {
    let now = env.jobs.clock().now();
    let mut tx = env.jobs.begin().await?;
    let changed = query(
        "UPDATE tenants SET status = 'active', step = 'done', activated_at = $1, updated_at = $1, last_error = NULL
         WHERE id = $2 AND status = 'provisioning'",
    )
    .bind(now)
    .bind(tenant_id)
    .execute(&mut tx)
    .await?;
    if changed == 1 {
        let token = crate::identity::insert_password_token(&mut tx, admin_id, now).await?;
        let letter = env.mail.letters.welcome(&t.name, &t.admin_email, &token)?;
        super::send_email::enqueue(&env.jobs, &mut tx, &letter, Some(tenant_id), now).await?;
        let after = env.mail.letters.welcome_reminder_after();
        super::welcome_reminder::schedule(&env.jobs, &mut tx, admin_id, now, after).await?;
        // An imported tenant's admin hears once, from the import's batch.
        if let (Some(admin), None) = (&t.initiated_by, t.import_batch_id) {
            notify::publish_in(&mut tx, &activated_notice(tenant_id, &t.name, admin), now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Roles every tenant starts with.
pub const DEFAULT_ROLES: [(&str, &str); 3] = [
    ("admin", "Manages the tenant: users, roles, settings"),
    ("member", "Works with the tenant's data"),
    ("viewer", "Reads the tenant's data"),
];

/// Settings every tenant starts with.
pub const DEFAULT_SETTINGS: [(&str, &str); 2] = [("locale", "en"), ("timezone", "UTC")];

/// Upserts the tenant admin (control plane and tenant database), roles and
/// settings; returns the admin's user id.
async fn seed(env: &Env, tenant_id: &str, admin_email: &str, tenant_db: &Db) -> anyhow::Result<String> {
    let now = env.jobs.clock().now();
    let new_id = uuid::Uuid::new_v4().to_string();
    query(
        "INSERT INTO users (id, email, password_hash, role, tenant_id, created_at)
         VALUES ($1, $2, NULL, 'tenant_admin', $3, $4) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&new_id)
    .bind(admin_email)
    .bind(tenant_id)
    .bind(now)
    .execute(env.db.write())
    .await?;
    let (admin_id, owner): (String, Option<String>) =
        query("SELECT id, tenant_id FROM users WHERE email = $1").bind(admin_email).fetch_one(env.db.read()).await?;
    if owner.as_deref() != Some(tenant_id) {
        return Err(AccountElsewhere(admin_email.to_owned()).into());
    }
    let mut tx = tenant_db.begin().await?;
    for (name, description) in DEFAULT_ROLES {
        query("INSERT INTO roles (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(description)
            .execute(&mut tx)
            .await?;
    }
    for (key, value) in DEFAULT_SETTINGS {
        query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut tx)
            .await?;
    }
    query("INSERT INTO users (id, email, role) VALUES ($1, $2, 'admin') ON CONFLICT (id) DO NOTHING")
        .bind(&admin_id)
        .bind(admin_email)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(admin_id)
}

/// The toast for the super admin who created a tenant that is now active.
fn activated_notice(tenant_id: &str, name: &str, admin: &str) -> NewNotification {
    NewNotification {
        user_id: admin.to_owned(),
        kind: Kind::Success,
        title: "Tenant ready".to_owned(),
        body: format!("Tenant {name} has been successfully provisioned."),
        link: format!("/admin/tenants/{tenant_id}"),
        dedupe_key: format!("tenant:{tenant_id}:active"),
    }
}

/// The toast for the super admin who created a tenant that failed for good.
fn failed_notice(tenant_id: &str, name: &str, admin: &str, error: &str) -> NewNotification {
    let reason: String = error.lines().next().unwrap_or("").chars().take(200).collect();
    NewNotification {
        user_id: admin.to_owned(),
        kind: Kind::Error,
        title: "Tenant provisioning failed".to_owned(),
        body: format!("Tenant {name} could not be provisioned: {reason}"),
        link: format!("/admin/tenants/{tenant_id}"),
        dedupe_key: format!("tenant:{tenant_id}:failed"),
    }
}

/// Marks the tenant `failed` with `error` and notifies its creator, inside the
/// transaction that ends its job. Does nothing to a tenant that is not
/// `provisioning` (active already, or failed before).
///
/// A failed tenant holds nothing for ever: its name and admin email are
/// released (the reservation indexes skip failed tenants, and `name_key`
/// becomes ' failed <id>', which no trimmed name produces), and the admin
/// account seeding may have made is removed (it never had a password: tokens
/// are issued at activation). The row stays, with its error, for the dashboard;
/// the same name and email can sign up again.
async fn mark_failed(tx: &mut Tx, tenant_id: &str, error: &str, now: Micros) -> anyhow::Result<()> {
    let short: String = error.chars().take(2000).collect();
    let row: Option<(String, Option<String>, Option<i64>)> = query(
        "UPDATE tenants SET status = 'failed', last_error = $1, updated_at = $2, name_key = ' failed ' || id
         WHERE id = $3 AND status = 'provisioning' RETURNING name, initiated_by, import_batch_id",
    )
    .bind(&short)
    .bind(now)
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_some() {
        query("DELETE FROM users WHERE tenant_id = $1 AND role = 'tenant_admin' AND password_hash IS NULL")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
    }
    // An imported tenant's admin hears once, from the import's batch.
    if let Some((name, Some(admin), None)) = row {
        notify::publish_in(tx, &failed_notice(tenant_id, &name, &admin, &short), now).await?;
    }
    Ok(())
}
