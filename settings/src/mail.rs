//! How email is composed and sent.

use std::path::Path;

use anyhow::{Context, anyhow};
use backoffice::mail::{
    DEFAULT_FROM, DEFAULT_PER_RECIPIENT_PER_HOUR, DEFAULT_PUBLIC_URL, DEFAULT_WELCOME_REMINDER_AFTER, Letters, Mail,
    Transport,
};
use clap::Args;

use crate::{Show, non_empty, redact_url};

/// `SMTP_URL`, `MAIL_FROM`, `PUBLIC_URL`, `MAIL_PER_RECIPIENT_PER_HOUR`,
/// `WELCOME_REMINDER_AFTER_SECS`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Email")]
pub struct MailArgs {
    /// Where email is sent: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port`, with `user:password@` if needed. Unset:
    /// each email is written to `DATA_DIR/mail/<id>.eml`.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The sender of every email (`Name <address>` or an address).
    #[arg(long, env = "MAIL_FROM", default_value = DEFAULT_FROM, hide_env_values = true)]
    pub mail_from: String,

    /// Where links in emails point: the product's address as users reach it.
    /// Unset: the server uses the address it listens on; a worker process,
    /// which listens nowhere, uses http://127.0.0.1:3000 (set it on workers).
    #[arg(long, env = "PUBLIC_URL", hide_env_values = true)]
    pub public_url: Option<String>,

    /// At most this many emails a public sign-up makes us send to one address
    /// per hour ("you already have an account", "name taken"), counted in the
    /// database so the cap holds across processes. Welcome emails are not
    /// capped (one per account).
    #[arg(long, env = "MAIL_PER_RECIPIENT_PER_HOUR", default_value_t = DEFAULT_PER_RECIPIENT_PER_HOUR, hide_env_values = true)]
    pub mail_per_recipient_per_hour: u32,

    /// Seconds after a welcome email at which its account gets one reminder with
    /// a fresh set-password link, if the first link was not used. 0: no reminders.
    #[arg(long, env = "WELCOME_REMINDER_AFTER_SECS", default_value_t = DEFAULT_WELCOME_REMINDER_AFTER.as_secs(), hide_env_values = true)]
    pub welcome_reminder_after_secs: u64,
}

impl MailArgs {
    /// The mail settings; files go under `data_dir/mail` when no SMTP URL is set;
    /// links point at `PUBLIC_URL`, else at `listening` (the server's own
    /// address), else at [`DEFAULT_PUBLIC_URL`].
    ///
    /// # Errors
    /// The sender, the public URL or the SMTP URL is unusable; the message names
    /// the setting.
    pub fn mail(&self, data_dir: &Path, listening: Option<&str>) -> anyhow::Result<Mail> {
        let from = if self.mail_from.trim().is_empty() { DEFAULT_FROM } else { &self.mail_from };
        let public_url = non_empty(&self.public_url).or(listening).unwrap_or(DEFAULT_PUBLIC_URL);
        // Checked one at a time, so the error names the flag as well as the variable.
        Letters::new(from, DEFAULT_PUBLIC_URL).context("--mail-from")?;
        Letters::new(DEFAULT_FROM, public_url).context("--public-url")?;
        let letters = Letters::new(from, public_url)?
            .with_per_recipient_per_hour(self.mail_per_recipient_per_hour)
            .with_welcome_reminder_after(std::time::Duration::from_secs(self.welcome_reminder_after_secs));
        let transport = match non_empty(&self.smtp_url) {
            None => Transport::Files(data_dir.join("mail")),
            // Only the root cause: the other layers repeat the URL, password included.
            Some(url) => Transport::smtp(url).map_err(|e| {
                anyhow!(
                    "--smtp-url / SMTP_URL={}: expected smtp://host:port or smtps://host:port ({})",
                    redact_url(url),
                    e.root_cause()
                )
            })?,
        };
        Ok(Mail { letters, transport })
    }
}

impl Show for MailArgs {
    fn show(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("SMTP_URL", non_empty(&self.smtp_url).map(redact_url).unwrap_or_default()));
        out.push(("MAIL_FROM", self.mail_from.clone()));
        out.push(("PUBLIC_URL", non_empty(&self.public_url).unwrap_or("").to_owned()));
        out.push(("MAIL_PER_RECIPIENT_PER_HOUR", self.mail_per_recipient_per_hour.to_string()));
        out.push(("WELCOME_REMINDER_AFTER_SECS", self.welcome_reminder_after_secs.to_string()));
    }
}
