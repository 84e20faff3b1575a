//! `mail.send`: deliver one outbox message (see [`crate::mail`] for why an outbox).

use anyhow::{Context, anyhow};
use database::{Tx, query};
use jobengine::{Job, JobContext, JobError, Jobs, Micros};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::Error;
use crate::mail::{Composed, Transport};

/// Deliver one outbox message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendEmail {
    /// The outbox row.
    pub outbox_id: String,
}

/// Writes `c` to the outbox and enqueues its delivery, inside `tx`. Returns the
/// delivery job's id.
///
/// # Errors
/// A database failure.
pub async fn enqueue(
    jobs: &Jobs,
    tx: &mut Tx,
    c: &Composed,
    tenant_id: Option<&str>,
    now: Micros,
) -> Result<i64, Error> {
    query(
        "INSERT INTO outbox (id, kind, tenant_id, sender, recipient, subject, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&c.id)
    .bind(c.kind)
    .bind(tenant_id)
    .bind(&c.sender)
    .bind(&c.recipient)
    .bind(&c.subject)
    .bind(&c.message)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let job = jobs.enqueue_in(tx, &SendEmail { outbox_id: c.id.clone() }).await?;
    Ok(job.id)
}

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: String,
    sender: String,
    recipient: String,
    message: Option<String>,
    sent_at: Option<Micros>,
}

impl Job for SendEmail {
    const KIND: &'static str = "mail.send";
    type Context = Env;

    fn unique_key(&self) -> Option<String> {
        Some(format!("mail:{}", self.outbox_id))
    }

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        let env = &ctx.app;
        let row: Option<OutboxRow> = query("SELECT id, sender, recipient, message, sent_at FROM outbox WHERE id = $1")
            .bind(&self.outbox_id)
            .fetch_optional(env.db.read())
            .await
            .context("loading the message")
            .map_err(JobError::retry)?;
        let Some(row) = row else {
            return Err(JobError::permanent(anyhow!("outbox message {} does not exist", self.outbox_id)));
        };
        let (None, Some(message)) = (row.sent_at, row.message.as_deref()) else {
            tracing::info!(id = %row.id, "message already sent; nothing to do");
            return Ok(());
        };
        let how = env.mail.transport.deliver(&row.id, &row.sender, &row.recipient, message).await?;
        let now = env.jobs.clock().now();
        query("UPDATE outbox SET sent_at = $1, message = NULL WHERE id = $2 AND sent_at IS NULL")
            .bind(now)
            .bind(&row.id)
            .execute(env.db.write())
            .await
            .context("recording the message as sent")
            .map_err(JobError::retry)?;
        match &env.mail.transport {
            // Name the page that shows it: newcomers should not have to read
            // quoted-printable `.eml` files by hand.
            Transport::Files(_) => tracing::info!(
                id = %row.id, to = %row.recipient,
                "email {how}; read it at {}/admin/mail/{}", env.mail.letters.public_url(), row.id
            ),
            Transport::Smtp(_) => tracing::info!(id = %row.id, to = %row.recipient, "email {how}"),
        }
        Ok(())
    }
}
