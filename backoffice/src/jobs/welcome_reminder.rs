//! `mail.welcome_reminder`: one reminder with a fresh set-password link when a
//! welcome email's link was not used in time.
//!
//! Scheduled by the activation that sends the welcome email, in its transaction
//! ([`schedule`]), to run `WELCOME_REMINDER_AFTER_SECS` later (48 h by default;
//! 0 schedules none). When it runs:
//! - the account has a password (the link was used, or a later one): nothing;
//! - the account or its tenant is gone or not active: nothing;
//! - otherwise, in one transaction: a `welcome_reminders` row for the account
//!   (its primary key makes this happen once per account, ever), a fresh link
//!   that ends the unused earlier ones ([`crate::password_link::fresh_link`]),
//!   and the reminder in the outbox with its `mail.send` job. A retry after a
//!   crash either finds nothing committed and does it all, or finds the row and
//!   sends nothing more; the outbox then delivers the one message it holds.
//!
//! The old link is ended rather than left to expire: with the default delay it
//! expired a day earlier anyway, and with a shorter one the account should not
//! hold two working links.

use anyhow::Context;
use database::{Tx, query};
use jobengine::{Job, JobContext, JobError, Jobs, Micros};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::Error;

/// Remind one account to choose its password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeReminder {
    /// The account (a tenant admin) the welcome email went to.
    pub user_id: String,
}

/// Schedules `user_id`'s reminder `after` from `now`, inside `tx` (the
/// transaction that sends the welcome email). A zero `after` schedules nothing.
///
/// # Errors
/// A database failure.
pub async fn schedule(
    jobs: &Jobs,
    tx: &mut Tx,
    user_id: &str,
    now: Micros,
    after: std::time::Duration,
) -> Result<(), Error> {
    if after.is_zero() {
        return Ok(());
    }
    let at = now.saturating_add(i64::try_from(after.as_micros()).unwrap_or(i64::MAX));
    let job = jobs.new_job(&WelcomeReminder { user_id: user_id.to_owned() }, Some(at))?;
    jobs.store().enqueue_in(tx, &job, now).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Account {
    email: String,
    password_hash: Option<String>,
    tenant_id: Option<String>,
    status: Option<String>,
}

impl Job for WelcomeReminder {
    const KIND: &'static str = "mail.welcome_reminder";
    type Context = Env;

    fn unique_key(&self) -> Option<String> {
        Some(format!("welcome-reminder:{}", self.user_id))
    }

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        remind(&ctx.app, &self.user_id).await.context("sending the welcome reminder").map_err(JobError::retry)
    }
}

async fn remind(env: &Env, user_id: &str) -> anyhow::Result<()> {
    let now = env.jobs.clock().now();
    let mut tx = env.jobs.begin().await?;
    let account: Option<Account> = query(
        "SELECT u.email, u.password_hash, u.tenant_id, t.status
         FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut tx)
    .await?;
    let Some(a) = account else {
        tracing::info!(user = user_id, "no reminder: the account is gone");
        return Ok(());
    };
    if a.password_hash.is_some() {
        tracing::info!(user = user_id, "no reminder: the password is set");
        return Ok(());
    }
    if a.status.as_deref() != Some("active") {
        tracing::info!(user = user_id, status = ?a.status, "no reminder: the tenant is not active");
        return Ok(());
    }
    let token = crate::password_link::fresh_link(&mut tx, user_id, now).await?;
    let letter = env.mail.letters.welcome_reminder(&a.email, &token)?;
    let first = query(
        "INSERT INTO welcome_reminders (user_id, outbox_id, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(&letter.id)
    .bind(now)
    .execute(&mut tx)
    .await?;
    if first == 0 {
        // Dropping `tx` rolls back the fresh link: the reminder went out before.
        tracing::info!(user = user_id, "no reminder: it was sent before");
        return Ok(());
    }
    super::send_email::enqueue(&env.jobs, &mut tx, &letter, a.tenant_id.as_deref(), now).await?;
    tx.commit().await?;
    tracing::info!(user = user_id, outbox = %letter.id, "welcome reminder queued");
    Ok(())
}
