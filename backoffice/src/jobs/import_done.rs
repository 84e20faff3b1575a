//! `tenants.import_done`: the completion job of a bulk tenant import's batch
//! (see [`crate::tenants::import`]). It runs once, after every tenant's
//! provisioning job has ended (so each tenant is `active` or `failed`: the
//! provisioning end hook fails a tenant in the transition that ends its job), and
//! sends the importing admin one notice counting them, in place of the per-tenant
//! toasts the import suppresses.

use anyhow::{Context, anyhow};
use database::query;
use jobengine::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::notify::{self, Kind, NewNotification};

/// Tell the importing admin how the import went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportDone {
    /// The super admin who imported the file.
    pub admin_id: String,
}

impl Job for ImportDone {
    const KIND: &'static str = "tenants.import_done";
    type Context = Env;

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        let batch = ctx.batch().await.map_err(JobError::retry)?;
        let batch = batch.ok_or_else(|| JobError::permanent(anyhow!("job {} completes no batch", ctx.job_id)))?;
        notify_admin(&ctx.app, &self.admin_id, batch.id).await.map_err(JobError::retry)
    }
}

/// The tenants of import `batch` per status, and the notice saying so. The
/// notice's key is the batch's, so a re-run (a worker dying after the commit)
/// writes nothing new.
async fn notify_admin(env: &Env, admin_id: &str, batch: i64) -> anyhow::Result<()> {
    let rows: Vec<(String, i64)> =
        query("SELECT status, COUNT(*) FROM tenants WHERE import_batch_id = $1 GROUP BY status")
            .bind(batch)
            .fetch_all(env.db.read())
            .await
            .context("counting the imported tenants")?;
    let count = |s: &str| rows.iter().filter(|r| r.0 == s).map(|r| r.1).sum::<i64>();
    let (total, active, failed) = (rows.iter().map(|r| r.1).sum::<i64>(), count("active"), count("failed"));
    let mut body = format!("{total} tenants: {active} active, {failed} failed");
    let other = total - active - failed;
    if other > 0 {
        body.push_str(&format!(", {other} still provisioning"));
    }
    let n = NewNotification {
        user_id: admin_id.to_owned(),
        kind: if failed == 0 { Kind::Success } else { Kind::Error },
        title: "Tenant import finished".to_owned(),
        body,
        link: format!("/hangfire/batches/{batch}"),
        dedupe_key: format!("import:{batch}:done"),
    };
    let now = env.jobs.clock().now();
    let mut tx = env.jobs.begin().await?;
    notify::publish_in(&mut tx, &n, now).await?;
    tx.commit().await?;
    Ok(())
}
