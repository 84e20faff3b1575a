//! The `ProvisionTenant` job: create the tenant's database, migrate it, seed it,
//! activate the tenant.
//!
//! Every step is idempotent (create-if-absent, migrations that record themselves,
//! seeding by upsert, a conditional status change), so when a worker dies at any
//! point the re-run converges on one database, one seed, one activation. Each step
//! is reported as job progress and as the tenant's `step`, for the dashboard and
//! for `WatchTenant`. On the last failed attempt the tenant becomes `failed` with
//! the error kept.

use std::time::Duration;

use anyhow::{Context, anyhow};
use jobengine::{Job, JobContext, JobError, Jobs, Pools};
use serde::{Deserialize, Serialize};

use crate::notify::{self, Kind, NewNotification};
use crate::tenant_db::{TenantDbs, TenantPool};
use crate::{on_pool, on_tx};

/// Test-only slowness or failure, from `PROVISION_FAULT`: `slow:<ms>` waits that
/// long in every step; `fail` fails every attempt at the migrating step;
/// `fail:<text>` does so only for tenants whose name contains `<text>` (so one
/// server can show both outcomes). Off unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Sleep this long in each step.
    Slow(Duration),
    /// Fail at the migrating step.
    Fail,
    /// Fail at the migrating step when the tenant's name contains this.
    FailNamed(String),
}

impl Fault {
    /// Parses `PROVISION_FAULT`.
    ///
    /// # Errors
    /// Not `slow:<ms>` or `fail`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "fail" => Ok(Fault::Fail),
            other if other.starts_with("fail:") && other.len() > 5 => Ok(Fault::FailNamed(other[5..].to_owned())),
            other => other
                .strip_prefix("slow:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| Fault::Slow(Duration::from_millis(ms)))
                .ok_or_else(|| anyhow!("PROVISION_FAULT={other:?}: expected slow:<ms>, fail or fail:<text>")),
        }
    }

    /// From the environment; `None` when unset.
    ///
    /// # Errors
    /// Set to something unparsable.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        std::env::var("PROVISION_FAULT").ok().filter(|s| !s.is_empty()).map(|s| Self::parse(&s)).transpose()
    }
}

/// What provisioning needs.
pub struct Env {
    /// The job engine (for follow-up jobs).
    pub jobs: Jobs,
    /// The control plane.
    pub pools: Pools,
    /// Tenant databases.
    pub tenant_dbs: TenantDbs,
    /// Injected slowness or failure, for tests.
    pub fault: Option<Fault>,
    /// Email composition and delivery.
    pub mail: crate::mail::Mail,
}

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
        match provision(&self.tenant_id, &ctx).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if ctx.attempt >= ctx.max_attempts {
                    mark_failed(&ctx.app.jobs, &self.tenant_id, &format!("{e:#}"), ctx.app.jobs.clock().now())
                        .await
                        .map_err(JobError::retry)?;
                }
                Err(JobError::retry(e))
            }
        }
    }
}

#[derive(sqlx::FromRow)]
struct Target {
    name: String,
    initiated_by: Option<String>,
    status: String,
    db_name: String,
    admin_email: String,
}

async fn step(ctx: &JobContext<Env>, tenant_id: &str, name: &str) -> anyhow::Result<()> {
    ctx.progress(name).await.context("recording progress")?;
    let now = ctx.app.jobs.clock().now();
    on_pool!(&ctx.app.pools, write, p => sqlx::query(
        "UPDATE tenants SET step = $1, updated_at = $2 WHERE id = $3 AND status = 'provisioning'")
        .bind(name).bind(now).bind(tenant_id).execute(p).await.map(|_| ()))
    .context("recording the tenant's step")?;
    if let Some(Fault::Slow(d)) = &ctx.app.fault {
        tokio::time::sleep(*d).await;
    }
    Ok(())
}

async fn provision(tenant_id: &str, ctx: &JobContext<Env>) -> anyhow::Result<()> {
    let env = &ctx.app;
    let t: Option<Target> = on_pool!(&env.pools, read, p => sqlx::query_as(
        "SELECT name, initiated_by, status, db_name, admin_email FROM tenants WHERE id = $1").bind(tenant_id).fetch_optional(p).await)
    .context("loading the tenant")?;
    let t = t.ok_or_else(|| anyhow!("tenant {tenant_id} does not exist"))?;
    if t.status == "active" {
        return Ok(()); // A re-run after the activation committed: nothing left to do.
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
    let pool = env.tenant_dbs.open(&t.db_name).await.context("opening the tenant database")?;
    env.tenant_dbs.migrate(&pool).await.context("migrating the tenant database")?;

    step(ctx, tenant_id, STEPS[2]).await?;
    let admin_id = seed(env, tenant_id, &t.admin_email, &pool).await.context("seeding the tenant")?;
    match pool {
        TenantPool::Sqlite(p) => p.close().await,
        TenantPool::Postgres(p) => p.close().await,
    }

    step(ctx, tenant_id, STEPS[3]).await?;
    activate(env, tenant_id, &t, &admin_id).await.context("activating the tenant")?;
    tracing::info!(tenant = tenant_id, admin = %admin_id, "tenant provisioned");
    Ok(())
}

/// One transaction: the tenant becomes `active`, its admin gets a set-password
/// token, the welcome email carrying it goes into the outbox with its delivery
/// job, and the super admin who asked for it (if one did) is notified. The status change is conditional, so a re-run after this committed does
/// nothing: one activation, one token, one email.
async fn activate(env: &Env, tenant_id: &str, t: &Target, admin_id: &str) -> anyhow::Result<()> {
    let now = env.jobs.clock().now();
    let mut tx = env.jobs.begin().await?;
    let changed = on_tx!(tx, c => sqlx::query(
        "UPDATE tenants SET status = 'active', step = 'done', activated_at = $1, updated_at = $1, last_error = NULL
         WHERE id = $2 AND status <> 'active'")
        .bind(now).bind(tenant_id).execute(c).await.map(|r| r.rows_affected()))?;
    if changed == 1 {
        let token = crate::identity::insert_password_token(&mut tx, admin_id, now).await?;
        let letter = env.mail.letters.welcome(&t.name, &t.admin_email, &token)?;
        crate::mail::enqueue(&env.jobs, &mut tx, &letter, Some(tenant_id), now).await?;
        if let Some(admin) = &t.initiated_by {
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
async fn seed(env: &Env, tenant_id: &str, admin_email: &str, pool: &TenantPool) -> anyhow::Result<String> {
    let now = env.jobs.clock().now();
    let new_id = uuid::Uuid::new_v4().to_string();
    on_pool!(&env.pools, write, p => sqlx::query(
        "INSERT INTO users (id, email, password_hash, role, tenant_id, created_at)
         VALUES ($1, $2, NULL, 'tenant_admin', $3, $4) ON CONFLICT (email) DO NOTHING")
        .bind(&new_id).bind(admin_email).bind(tenant_id).bind(now).execute(p).await.map(|_| ()))?;
    let (admin_id, owner): (String, Option<String>) = on_pool!(&env.pools, read, p => sqlx::query_as(
        "SELECT id, tenant_id FROM users WHERE email = $1").bind(admin_email).fetch_one(p).await)?;
    if owner.as_deref() != Some(tenant_id) {
        return Err(anyhow!("{admin_email} already has an account elsewhere"));
    }
    macro_rules! seed_on {
        ($p:expr) => {{
            for (name, description) in DEFAULT_ROLES {
                sqlx::query("INSERT INTO roles (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(description)
                    .execute($p)
                    .await?;
            }
            for (key, value) in DEFAULT_SETTINGS {
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute($p)
                    .await?;
            }
            sqlx::query("INSERT INTO users (id, email, role) VALUES ($1, $2, 'admin') ON CONFLICT (id) DO NOTHING")
                .bind(&admin_id)
                .bind(admin_email)
                .execute($p)
                .await?;
        }};
    }
    match pool {
        TenantPool::Sqlite(p) => seed_on!(p),
        TenantPool::Postgres(p) => seed_on!(p),
    }
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

/// Marks the tenant `failed` with `error` and notifies its creator, in one
/// transaction.
async fn mark_failed(jobs: &Jobs, tenant_id: &str, error: &str, now: i64) -> anyhow::Result<()> {
    let short: String = error.chars().take(2000).collect();
    let mut tx = jobs.begin().await?;
    let row: Option<(String, Option<String>)> = on_tx!(tx, c => sqlx::query_as(
        "UPDATE tenants SET status = 'failed', last_error = $1, updated_at = $2
         WHERE id = $3 AND status = 'provisioning' RETURNING name, initiated_by")
        .bind(&short).bind(now).bind(tenant_id).fetch_optional(c).await)?;
    if let Some((name, Some(admin))) = row {
        notify::publish_in(&mut tx, &failed_notice(tenant_id, &name, &admin, &short), now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks `failed` every tenant still `provisioning` whose job is dead.
///
/// The job marks its tenant failed itself when its last attempt fails, but when a
/// worker dies during the last attempt it is the rescuer that dead-letters the job,
/// and the rescuer knows nothing of tenants. This sweep closes that gap; it is cheap
/// (an indexed look at dead provisioning jobs) and idempotent. Returns how many
/// tenants it marked.
///
/// # Errors
/// A database failure.
pub async fn reconcile_failed(jobs: &Jobs, now: i64) -> anyhow::Result<u64> {
    let mut tx = jobs.begin().await?;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = on_tx!(tx, c => sqlx::query_as(
        "UPDATE tenants SET status = 'failed', updated_at = $1,
                last_error = COALESCE((SELECT j.last_error FROM jobs j WHERE j.id = tenants.job_id), 'provisioning job is dead')
         WHERE status = 'provisioning'
           AND job_id IN (SELECT id FROM jobs WHERE state = 'dead' AND kind = $2)
         RETURNING id, name, initiated_by, last_error")
        .bind(now).bind(ProvisionTenant::KIND).fetch_all(c).await)?;
    for (id, name, admin, error) in &rows {
        if let Some(admin) = admin {
            let notice = failed_notice(id, name, admin, error.as_deref().unwrap_or(""));
            notify::publish_in(&mut tx, &notice, now).await?;
        }
    }
    tx.commit().await?;
    let n = rows.len() as u64;
    if n > 0 {
        tracing::warn!(tenants = n, "marked tenants failed whose provisioning job died with its worker");
    }
    Ok(n)
}

/// How often [`reconcile_loop`] sweeps.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// Runs [`reconcile_failed`] every [`RECONCILE_EVERY`] until `stop` fires.
pub async fn reconcile_loop(env: std::sync::Arc<Env>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = reconcile_failed(&env.jobs, env.jobs.clock().now()).await {
            tracing::warn!(error = %e, "reconciling failed tenants");
        }
    }
}
