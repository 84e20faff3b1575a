//! Email: composing the product's letters, and the transports that deliver them.
//! Delivery itself is a job reading an outbox ([`crate::jobs::send_email`]).
//!
//! # Why an outbox
//! A welcome email must go out exactly when a tenant becomes active, and a retry
//! after a crash must not send a *different* second email. So the message is
//! rendered once, whole (headers, a fixed `Message-ID`, the body with its
//! set-password link), and written to the `outbox` table in the same transaction
//! that activates the tenant and issues the link's token. A `SendEmail` job,
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
use jobengine::JobError;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::error::Error;

/// The sender when `MAIL_FROM` is unset.
pub const DEFAULT_FROM: &str = "Back Office <no-reply@backoffice.local>";
/// The product's address in links when `PUBLIC_URL` is unset.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:3000";
/// How long one SMTP conversation may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Emails a public sign-up may make us send to one address in an hour
/// (`MAIL_PER_RECIPIENT_PER_HOUR` unset): enough for a person who forgot they
/// had an account, too few to make us a harassment relay.
pub const DEFAULT_PER_RECIPIENT_PER_HOUR: u32 = 5;
/// The most of a company name a welcome email shows.
pub const NAME_IN_EMAIL_CHARS: usize = 60;
/// How long after a welcome email its reminder goes out when the set-password
/// link was not used (`WELCOME_REMINDER_AFTER_SECS` unset): 48 hours.
pub const DEFAULT_WELCOME_REMINDER_AFTER: Duration = Duration::from_secs(48 * 3600);

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
    per_recipient_per_hour: u32,
    welcome_reminder_after: Duration,
}

/// The mail settings: composition and transport.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Composition.
    pub letters: Letters,
    /// Delivery.
    pub transport: Transport,
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

    /// Delivers one stored message: `id` names its file, `sender` and
    /// `recipient` make the envelope. Returns how, for the log.
    pub(crate) async fn deliver(
        &self,
        id: &str,
        sender: &str,
        recipient: &str,
        message: &str,
    ) -> Result<String, JobError> {
        match self {
            Transport::Files(dir) => {
                let path = dir.join(format!("{id}.eml"));
                write_file(dir, &path, message.as_bytes()).await.map_err(JobError::retry)?;
                Ok(format!("written to {}", path.display()))
            }
            Transport::Smtp(smtp) => {
                let from = sender.parse().map_err(|e| JobError::permanent(anyhow!("sender {sender:?}: {e}")))?;
                let to = recipient.parse().map_err(|e| JobError::permanent(anyhow!("recipient {recipient:?}: {e}")))?;
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
    /// `welcome | welcome_reminder | password_link | account_exists | name_taken`.
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
        Ok(Self {
            from,
            public_url,
            per_recipient_per_hour: DEFAULT_PER_RECIPIENT_PER_HOUR,
            welcome_reminder_after: DEFAULT_WELCOME_REMINDER_AFTER,
        })
    }

    /// At most `n` emails caused by public sign-ups per recipient per hour
    /// (counted in the outbox, so the cap holds across processes).
    #[must_use]
    pub fn with_per_recipient_per_hour(mut self, n: u32) -> Self {
        self.per_recipient_per_hour = n;
        self
    }

    /// The cap set by [`Letters::with_per_recipient_per_hour`].
    pub fn per_recipient_per_hour(&self) -> u32 {
        self.per_recipient_per_hour
    }

    /// A welcome email whose link is still unused this long after it was sent
    /// gets one reminder with a fresh link (see
    /// [`crate::jobs::welcome_reminder`]); zero sends none. It lives with the
    /// letters because every process that sends welcome emails (server and
    /// workers) builds them from the same mail settings.
    #[must_use]
    pub fn with_welcome_reminder_after(mut self, after: Duration) -> Self {
        self.welcome_reminder_after = after;
        self
    }

    /// The delay set by [`Letters::with_welcome_reminder_after`].
    pub fn welcome_reminder_after(&self) -> Duration {
        self.welcome_reminder_after
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
    /// The company name is someone's input (a public sign-up), so it never reaches
    /// the subject and appears once, labelled as data, shortened to
    /// [`NAME_IN_EMAIL_CHARS`], after our own words: text like "URGENT: verify at
    /// http://…" in a name cannot read as our instruction.
    ///
    /// # Errors
    /// The address cannot be used (a bug: addresses are validated at the edge).
    pub fn welcome(&self, tenant_name: &str, email: &str, token: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let name = shown_name(tenant_name);
        let body = format!(
            "Hello,\n\n\
             Your new Back Office workspace is ready.\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             First choose your password with this link. It works once and expires in 24 hours:\n\
             {url}/set-password?token={token}\n\n\
             Workspace name (as entered at sign-up): {name}\n\n\
             If you did not ask for this, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("welcome", email, "Your Back Office workspace is ready".to_owned(), body)
    }

    /// The one reminder for a welcome email whose link was not used: a fresh
    /// link (the earlier one no longer works). Nothing anyone typed appears in it.
    ///
    /// # Errors
    /// As [`Letters::welcome`].
    pub fn welcome_reminder(&self, email: &str, token: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Your Back Office workspace is waiting for you: you have not chosen a password yet.\n\n\
             Choose it with this new link. It works once and expires in 24 hours\n\
             (the link in our first email no longer works):\n\
             {url}/set-password?token={token}\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             This is the only reminder we send. If you did not ask for this, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("welcome_reminder", email, "Reminder: choose your Back Office password".to_owned(), body)
    }

    /// A fresh set-password link someone asked for on the set-password page
    /// ("send me a new link"). Earlier links stop working.
    ///
    /// # Errors
    /// As [`Letters::welcome`].
    pub fn new_link(&self, email: &str, token: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Someone, hopefully you, asked for a new link to choose your Back Office password.\n\n\
             Choose it with this link. It works once and expires in 24 hours\n\
             (earlier links no longer work):\n\
             {url}/set-password?token={token}\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             If this was not you, you can ignore this email: your password has not changed.\n\n\
             -- Back Office\n"
        );
        self.compose("password_link", email, "Your new Back Office password link".to_owned(), body)
    }

    /// Sent instead of a second account when someone signs up with an address that
    /// already has one: the sign-up page says the same either way, the owner learns
    /// what happened here. Nothing the visitor typed appears in it (anyone can
    /// type anyone's address).
    ///
    /// # Errors
    /// As [`Letters::welcome`].
    pub fn account_exists(&self, email: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Someone, hopefully you, tried to sign up for Back Office with this address.\n\
             You already have an account, so nothing new was created.\n\n\
             Sign in at: {url}/login\n\
             Username:   {email}\n\n\
             If this was not you, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("account_exists", email, "You already have an account".to_owned(), body)
    }

    /// Sent when a sign-up chose a company name another workspace has (or one
    /// that looks like it): the page answers every sign-up the same way, so
    /// customer names are not revealed to the public; the person at this address
    /// learns it here. The name itself is not repeated.
    ///
    /// # Errors
    /// As [`Letters::welcome`].
    pub fn name_taken(&self, email: &str) -> Result<Composed, Error> {
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             Someone, hopefully you, tried to sign up for Back Office with this address,\n\
             but the company name entered is already used by another workspace,\n\
             so nothing was created.\n\n\
             To try again with a different name: {url}/signup\n\n\
             If this was not you, you can ignore this email.\n\n\
             -- Back Office\n"
        );
        self.compose("name_taken", email, "Your sign-up could not be completed".to_owned(), body)
    }
}

/// A company name as an email shows it: at most [`NAME_IN_EMAIL_CHARS`]
/// characters, quoted, with an ellipsis when cut.
fn shown_name(name: &str) -> String {
    let mut shown: String = name.chars().take(NAME_IN_EMAIL_CHARS).collect();
    if name.chars().count() > NAME_IN_EMAIL_CHARS {
        shown.push('…');
    }
    format!("\"{shown}\"")
}
