//! Email through an outbox: compose in the transaction, deliver in a job.
//!
//! # Why an outbox
//! A welcome email must go out exactly when a tenant becomes active, and a retry
//! after a crash must not send a *different* second email. So the message is
//! rendered once, whole (headers, a fixed `Message-ID`, the body with its
//! set-password link), and written to the `outbox` table in the same transaction
//! that activates the tenant and issues the link's token. A [`SendEmail`] job,
//! enqueued in that transaction too, delivers exactly those bytes. A worker killed
//! after the SMTP server accepted the message but before the job recorded it sends
//! the same bytes again: the same `Message-ID`, which mail systems de-duplicate.
//! Once sent, the stored body is cleared, because it carries a live link.
//!
//! # Transports
//! - `SMTP_URL` unset: each message is written to `DATA_DIR/mail/<id>.eml` and a
//!   log line says where (the one-command default; nothing leaves the machine).
//! - `SMTP_URL=smtp://host:port` (plain), `smtp://host:port?tls=required`
//!   (STARTTLS) or `smtps://host:port` (TLS), with `user:password@` if needed.
//!
//! SMTP failures are sorted the way the protocol means them: a `5xx` answer is
//! permanent (the job goes to the dead-letter queue at once, visible on the
//! dashboard); `4xx`, refused connections and timeouts are retried with backoff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use jobengine::{Job, JobContext, JobError, Jobs, Micros, Transaction};
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::provision::Env;
use crate::{on_pool, on_tx};

/// The sender when `MAIL_FROM` is unset.
pub const DEFAULT_FROM: &str = "Back Office <no-reply@backoffice.local>";
/// The product's address in links when `PUBLIC_URL` is unset.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:3000";
/// How long one SMTP conversation may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// How messages leave.
#[derive(Clone)]
pub enum Transport {
    /// Written as `.eml` files into this directory.
    Files(PathBuf),
    /// Sent to an SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Files(dir) => write!(f, "files in {}", dir.display()),
            Transport::Smtp(_) => write!(f, "SMTP"),
        }
    }
}

/// Composes the product's emails: who they come from and where links point.
#[derive(Debug, Clone)]
pub struct Letters {
    from: Mailbox,
    public_url: String,
}

/// The mail settings: composition and transport.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Composition.
    pub letters: Letters,
    /// Delivery.
    pub transport: Transport,
}

impl Mail {
    /// From `SMTP_URL`, `MAIL_FROM` and `PUBLIC_URL`; files go under
    /// `data_dir/mail` when `SMTP_URL` is unset.
    ///
    /// # Errors
    /// A variable is set to something unusable; the message names it.
    pub fn from_env(data_dir: &Path) -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok(), data_dir)
    }

    /// As [`Mail::from_env`], reading through `lookup`.
    ///
    /// # Errors
    /// As [`Mail::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, data_dir: &Path) -> anyhow::Result<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let letters = Letters::new(
            get("MAIL_FROM").as_deref().unwrap_or(DEFAULT_FROM),
            get("PUBLIC_URL").as_deref().unwrap_or(DEFAULT_PUBLIC_URL),
        )?;
        let transport = match get("SMTP_URL") {
            None => Transport::Files(data_dir.join("mail")),
            Some(url) => Transport::smtp(&url)?,
        };
        Ok(Self { letters, transport })
    }
}

impl Transport {
    /// An SMTP transport from a URL such as `smtp://127.0.0.1:2525`.
    ///
    /// # Errors
    /// The URL is not one lettre understands.
    pub fn smtp(url: &str) -> anyhow::Result<Self> {
        let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("SMTP_URL={url:?}: expected smtp://host:port or smtps://host:port"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Transport::Smtp(t))
    }

    /// Delivers one stored message.
    async fn deliver(&self, row: &OutboxRow, message: &str) -> Result<String, JobError> {
        match self {
            Transport::Files(dir) => {
                let path = dir.join(format!("{}.eml", row.id));
                write_file(dir, &path, message.as_bytes()).await.map_err(JobError::retry)?;
                Ok(format!("written to {}", path.display()))
            }
            Transport::Smtp(smtp) => {
                let from =
                    row.sender.parse().map_err(|e| JobError::permanent(anyhow!("sender {:?}: {e}", row.sender)))?;
                let to = row
                    .recipient
                    .parse()
                    .map_err(|e| JobError::permanent(anyhow!("recipient {:?}: {e}", row.recipient)))?;
                let envelope = Envelope::new(Some(from), vec![to]).map_err(JobError::permanent)?;
                match smtp.send_raw(&envelope, message.as_bytes()).await {
                    Ok(resp) => Ok(format!("accepted by the SMTP server: {}", resp.code())),
                    // The server's own words go into the top-level message: that is
                    // what the dashboard lists.
                    Err(e) if e.is_permanent() => {
                        Err(JobError::permanent(anyhow!("the SMTP server refused the message: {e}")))
                    }
                    Err(e) => Err(JobError::retry(anyhow!("sending through SMTP failed, will retry: {e}"))),
                }
            }
        }
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a
/// message where a reader would take it for a whole one.
async fn write_file(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("eml.tmp");
    tokio::fs::write(&tmp, bytes).await.with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path).await.with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// One message composed and ready for the outbox.
#[derive(Debug, Clone)]
pub struct Composed {
    /// Outbox id (a UUID), the left part of the `Message-ID`.
    pub id: String,
    /// `welcome | account_exists`.
    pub kind: &'static str,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipient.
    pub recipient: String,
    /// Subject, for the dashboard.
    pub subject: String,
    /// The whole RFC 5322 message.
    pub message: String,
}

impl Letters {
    /// Letters from `from` (`Name <address>` or an address) with links under
    /// `public_url`.
    ///
    /// # Errors
    /// `from` is not a mailbox, or `public_url` not an http(s) URL.
    pub fn new(from: &str, public_url: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| anyhow!("MAIL_FROM={from:?}: {e}"))?;
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(anyhow!("PUBLIC_URL={public_url:?}: expected http://... or https://..."));
        }
        Ok(Self { from, public_url })
    }

    /// Where the product is reached (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    fn compose(&self, kind: &'static str, to: &str, subject: String, body: String) -> Result<Composed, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        let domain = self.from.email.domain().to_owned();
        let to_box: Mailbox = to.parse().map_err(|e| Error::Internal(anyhow!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::Internal(anyhow!("composing the {kind} email: {e}")))?;
        let message = String::from_utf8(message.formatted())
            .map_err(|e| Error::Internal(anyhow!("the {kind} email is not UTF-8: {e}")))?;
        Ok(Composed { id, kind, sender: self.from.email.to_string(), recipient: to.to_owned(), subject, message })
    }

    /// The welcome email: where to sign in, the username, and a set-password link.
    ///
    /// # Errors
    /// The address cannot be used (a bug: addresses are validated at the edge).
    pub fn welcome(&self, tenant_name: &str, email: &str, token: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Your workspace \"{tenant_name}\" is ready.\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             First choose your password with this link. It works once and expires in 24 hours:\n\
             {url}/set-password?token={token}\n\n\
             If you did not ask for this, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("welcome", email, format!("Your workspace \"{tenant_name}\" is ready"), body)
    }

    /// Sent instead of a second account when someone signs up with an address that
    /// already has one: the sign-up page says the same either way, the owner learns
    /// what happened here.
    ///
    /// # Errors
    /// As [`Letters::welcome`].
    pub fn account_exists(&self, company_name: &str, email: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Someone, hopefully you, tried to sign up \"{company_name}\" with this address.\n\
             You already have an account, so nothing new was created.\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             If this was not you, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("account_exists", email, "You already have an account".to_owned(), body)
    }
}

/// Writes `c` to the outbox and enqueues its delivery, inside `tx`. Returns the
/// delivery job's id.
///
/// # Errors
/// A database failure.
pub async fn enqueue(
    jobs: &Jobs,
    tx: &mut Transaction,
    c: &Composed,
    tenant_id: Option<&str>,
    now: Micros,
) -> Result<i64, Error> {
    on_tx!(tx, conn => sqlx::query(
        "INSERT INTO outbox (id, kind, tenant_id, sender, recipient, subject, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&c.id).bind(c.kind).bind(tenant_id).bind(&c.sender).bind(&c.recipient).bind(&c.subject)
        .bind(&c.message).bind(now).execute(conn).await.map(|_| ()))?;
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

/// Deliver one outbox message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendEmail {
    /// The outbox row.
    pub outbox_id: String,
}

impl Job for SendEmail {
    const KIND: &'static str = "mail.send";
    type Context = Env;

    fn unique_key(&self) -> Option<String> {
        Some(format!("mail:{}", self.outbox_id))
    }

    async fn run(self, ctx: JobContext<Env>) -> Result<(), JobError> {
        let env = &ctx.app;
        let row: Option<OutboxRow> = on_pool!(&env.pools, read, p => sqlx::query_as(
            "SELECT id, sender, recipient, message, sent_at FROM outbox WHERE id = $1")
            .bind(&self.outbox_id).fetch_optional(p).await)
        .context("loading the message")
        .map_err(JobError::retry)?;
        let Some(row) = row else {
            return Err(JobError::permanent(anyhow!("outbox message {} does not exist", self.outbox_id)));
        };
        let (None, Some(message)) = (row.sent_at, row.message.as_deref()) else {
            tracing::info!(id = %row.id, "message already sent; nothing to do");
            return Ok(());
        };
        let how = env.mail.transport.deliver(&row, message).await?;
        let now = env.jobs.clock().now();
        on_pool!(&env.pools, write, p => sqlx::query(
            "UPDATE outbox SET sent_at = $1, message = NULL WHERE id = $2 AND sent_at IS NULL")
            .bind(now).bind(&row.id).execute(p).await.map(|_| ()))
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

/// The text of a stored single-part message with its quoted-printable transfer
/// encoding undone (soft line breaks joined, `=XX` decoded): what a mail client
/// shows. For tests and operators reading `.eml` files.
pub fn plain_text(message: &str) -> String {
    let (head, body) = message.split_once("\r\n\r\n").unwrap_or(("", message));
    if !head.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
        return body.to_owned();
    }
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
