//! Fresh set-password links: "send me a new link" on the set-password page, and
//! the welcome reminder ([`crate::jobs::welcome_reminder`]).
//!
//! - **One live link per account.** Issuing a fresh link ends every unused earlier
//!   one (they answer "invalid or expired" like any old link), so an account never
//!   has a pile of working links in old mailboxes.
//! - **No account enumeration.** [`PasswordLinks::request`] answers the same for
//!   an address with an account, one without, and one whose tenant failed or is
//!   still being provisioned: only the mailbox learns the difference.
//! - **Limits.** Per account, the email cap every publicly triggered email obeys
//!   (`MAIL_PER_RECIPIENT_PER_HOUR`, counted in the outbox under the same lock as
//!   sign-up notices, so it holds across processes); over it, nothing is sent and
//!   the answer is still the same. Per client address, the server's in-memory
//!   limiter (`server::ratelimit`) answers RESOURCE_EXHAUSTED, which says nothing
//!   about any account.
//! - **Who gets one.** Tenant admins of *active* tenants. A super admin resets
//!   their password on the command line (`server reset-admin-password`): the
//!   platform's owner account is never reset by whoever can read one mailbox.

use database::{Tx, query};
use jobengine::{Jobs, Micros};

use crate::error::Error;
use crate::identity::insert_password_token;
use crate::mail::Letters;
use crate::tenants::{HOUR_MICROS, NOTICE_LOCK_CLASS};
use crate::validate::{Email, FieldErrors};

/// Ends `user_id`'s unused links and issues a fresh one inside `tx`; returns the
/// new token.
///
/// # Errors
/// A database failure.
pub(crate) async fn fresh_link(tx: &mut Tx, user_id: &str, now: Micros) -> Result<String, Error> {
    query("UPDATE password_tokens SET expires_at = $1 WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1")
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    insert_password_token(tx, user_id, now).await
}

/// "Send me a new link".
#[derive(Clone)]
pub struct PasswordLinks {
    jobs: Jobs,
    letters: Letters,
}

impl PasswordLinks {
    /// Links on the control plane `jobs` runs on, sent as `letters` compose them.
    pub fn new(jobs: Jobs, letters: Letters) -> Self {
        Self { jobs, letters }
    }

    /// Sends a fresh set-password link to `email` if it is the admin of an active
    /// tenant and under its hourly email cap; otherwise does nothing. The answer
    /// is the same in every case (see the module docs).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `email` when it is not an address; a database
    /// failure.
    pub async fn request(&self, email: &str) -> Result<(), Error> {
        let email = Email::parse("email", email).map_err(|e| Error::Invalid(FieldErrors(vec![e])))?;
        let now = self.jobs.clock().now();
        let mut tx = self.jobs.begin().await?;
        // Count-and-write as one step per recipient (as sign-up notices do).
        tx.lock(NOTICE_LOCK_CLASS, email.as_str()).await?;
        let target: Option<(String, String)> = query(
            "SELECT u.id, t.id FROM users u JOIN tenants t ON t.id = u.tenant_id
             WHERE u.email = $1 AND u.role = 'tenant_admin' AND t.status = 'active'",
        )
        .bind(email.as_str())
        .fetch_optional(&mut tx)
        .await?;
        let Some((user_id, tenant_id)) = target else {
            tx.rollback().await?;
            tracing::info!(email = %email, "new set-password link asked for an address with no active account");
            return Ok(());
        };
        let sent: i64 = query("SELECT COUNT(*) FROM outbox WHERE recipient = $1 AND created_at > $2")
            .bind(email.as_str())
            .bind(now - HOUR_MICROS)
            .scalar(&mut tx)
            .await?;
        if sent >= i64::from(self.letters.per_recipient_per_hour()) {
            tx.rollback().await?;
            tracing::warn!(
                to = %email, sent,
                "not sending a new link: this address already got its emails for the hour (MAIL_PER_RECIPIENT_PER_HOUR)"
            );
            return Ok(());
        }
        let token = fresh_link(&mut tx, &user_id, now).await?;
        let letter = self.letters.new_link(email.as_str(), &token)?;
        crate::jobs::send_email::enqueue(&self.jobs, &mut tx, &letter, Some(&tenant_id), now).await?;
        tx.commit().await?;
        Ok(())
    }
}
