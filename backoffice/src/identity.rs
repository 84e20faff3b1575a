//! Users, sessions and passwords.
//!
//! - Sessions are random 256-bit tokens; only their SHA-256 is stored, so a leaked
//!   database holds no usable session. The same token is the browser's cookie and
//!   a script's bearer token.
//! - Login answers the same for an unknown email and a wrong password, and takes
//!   the same time: an unknown email is checked against a dummy argon2 hash.
//! - Brute force: attempts are throttled per (account, client address) and per
//!   client address with growing delays ([`crate::throttle`]), checked before any
//!   password hashing; an account is never locked for every address, so its owner
//!   signs in from elsewhere while someone hammers it.
//! - An email too long to be one, or with control characters, is refused as
//!   `email` before anything is stored or queried.
//! - Set-password links carry a single-use 256-bit token, stored hashed, valid 24 h.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use database::{Db, Tx, query};
use jobengine::{Clock, Micros};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::password::Hasher;
use crate::throttle;
use crate::validate::{Email, FieldErrors, MAX_EMAIL_LEN};

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a set-password link is valid.
pub const PASSWORD_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Shortest password accepted (NIST SP 800-63B: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (argon2 is fine with more; this bounds the work).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Operates the platform: tenants, the job dashboard.
    SuperAdmin,
    /// Administers one tenant.
    TenantAdmin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::TenantAdmin => "tenant_admin",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "super_admin" => Ok(Role::SuperAdmin),
            "tenant_admin" => Ok(Role::TenantAdmin),
            other => Err(Error::Internal(anyhow::anyhow!("unknown role {other:?} in users table"))),
        }
    }
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id (UUID).
    pub id: String,
    /// Email, lower-cased.
    pub email: String,
    /// Role.
    pub role: Role,
    /// The tenant of a tenant admin.
    pub tenant_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    password_hash: Option<String>,
    role: String,
    tenant_id: Option<String>,
}

impl UserRow {
    fn user(self) -> Result<User, Error> {
        Ok(User { id: self.id, email: self.email, role: Role::parse(&self.role)?, tenant_id: self.tenant_id })
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The secret: cookie value and bearer token. Shown once, stored hashed.
    pub token: String,
    /// Its owner.
    pub user: User,
    /// When it stops working.
    pub expires_at: Micros,
}

/// A random 256-bit secret, hex-encoded.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The SHA-256 of a secret, hex-encoded: what is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Issues a single-use set-password token for `user_id` inside `tx`, valid for
/// [`PASSWORD_TOKEN_TTL`] from `now`; returns the token (only its hash is stored).
///
/// # Errors
/// A database failure.
pub async fn insert_password_token(tx: &mut Tx, user_id: &str, now: Micros) -> Result<String, Error> {
    let token = new_secret();
    query("INSERT INTO password_tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(secret_hash(&token))
        .bind(user_id)
        .bind(now)
        .bind(now + PASSWORD_TOKEN_TTL.as_micros() as i64)
        .execute(tx)
        .await?;
    Ok(token)
}

/// The account a sign-in names: trimmed and lower-cased, and refused (as
/// `email`) when no address could be that long or it holds control characters,
/// so neither reaches storage (PostgreSQL refuses NUL, and a long key would
/// overflow its index).
///
/// # Errors
/// The field error.
pub fn login_account(email: &str) -> Result<String, FieldErrors> {
    let account = email.trim().to_ascii_lowercase();
    let mut errs = FieldErrors::default();
    if account.len() > MAX_EMAIL_LEN {
        errs.push("email", format!("must be at most {MAX_EMAIL_LEN} bytes"));
    } else if account.chars().any(char::is_control) {
        errs.push("email", "must not contain control characters");
    }
    errs.into_result().map(|()| account)
}

/// Checks a new password's length.
///
/// # Errors
/// Too short or too long, as a field error on `field`.
pub fn check_password(field: &'static str, password: &str) -> Result<(), FieldErrors> {
    let n = password.chars().count();
    let mut errs = FieldErrors::default();
    if n < MIN_PASSWORD_CHARS {
        errs.push(field, format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    } else if n > MAX_PASSWORD_CHARS {
        errs.push(field, format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    errs.into_result()
}

/// Users, sessions, passwords.
#[derive(Clone)]
pub struct Identity {
    db: Db,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
}

impl Identity {
    /// Identity on the control-plane database `db`.
    pub fn new(db: Db, hasher: Hasher, clock: Arc<dyn Clock>) -> Self {
        Self { db, hasher, clock }
    }

    /// The password hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Makes sure a super admin with `email` exists. With `password` given, a new
    /// account gets it; with none, a random one is generated and returned (to be
    /// printed once). An existing account is left as it is.
    ///
    /// # Errors
    /// A bad email or password, or a database failure.
    pub async fn seed_super_admin(&self, email: &str, password: Option<&str>) -> Result<Option<String>, Error> {
        let email = Email::parse("SUPERADMIN_EMAIL", email).map_err(|e| Error::Invalid(FieldErrors(vec![e])))?;
        let exists: Option<String> =
            query("SELECT id FROM users WHERE email = $1").bind(email.as_str()).scalar_optional(self.db.read()).await?;
        if exists.is_some() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => {
                check_password("SUPERADMIN_PASSWORD", p)?;
                (p.to_owned(), None)
            }
            None => {
                let p = new_secret()[..24].to_owned();
                (p.clone(), Some(p))
            }
        };
        let hash = self.hasher.hash(&password).await?;
        let id = uuid::Uuid::new_v4().to_string();
        query(
            "INSERT INTO users (id, email, password_hash, role, tenant_id, created_at)
             VALUES ($1, $2, $3, 'super_admin', NULL, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(email.as_str())
        .bind(&hash)
        .bind(self.clock.now())
        .execute(self.db.write())
        .await?;
        Ok(generated)
    }

    /// Signs in from this process (no client address: the command line, tests).
    /// See [`Identity::login_from`].
    ///
    /// # Errors
    /// As [`Identity::login_from`].
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, Error> {
        self.login_from(email, password, None).await
    }

    /// Signs in a client at `client`. Unknown email and wrong password give the
    /// same [`Error::BadCredentials`] in the same time.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `email` when it is longer than an address can be
    /// or holds control characters (nothing is recorded), bad credentials,
    /// [`Error::RateLimited`] while this client must wait ([`crate::throttle`]),
    /// or a database failure.
    pub async fn login_from(&self, email: &str, password: &str, client: Option<IpAddr>) -> Result<Session, Error> {
        let account = login_account(email)?;
        let now = self.clock.now();
        let keys = throttle::keys(client, &account);
        if let Err(wait) = throttle::admit(&self.db, &keys, now).await? {
            let wait = Duration::from_micros(wait.max(0).unsigned_abs());
            return Err(Error::rate_limited("too many failed sign-in attempts from your address", wait));
        }
        let row: Option<UserRow> =
            query("SELECT id, email, password_hash, role, tenant_id FROM users WHERE email = $1")
                .bind(&account)
                .fetch_optional(self.db.read())
                .await?;
        let hash = row.as_ref().and_then(|r| r.password_hash.as_deref());
        let password = if password.chars().count() > MAX_PASSWORD_CHARS { "" } else { password };
        let fair_key = throttle::keys(client, "")[1].0.clone();
        let ok = self.hasher.verify_as(&fair_key, password, hash).await?;
        // A failure was counted on admission; only a success changes anything.
        let Some(row) = row.filter(|_| ok) else { return Err(Error::BadCredentials) };
        throttle::forgive(&self.db, &keys, now).await?;
        self.upgrade_hash(&row, password).await;
        let token = new_secret();
        let expires_at = now + SESSION_TTL.as_micros() as i64;
        query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(secret_hash(&token))
            .bind(&row.id)
            .bind(now)
            .bind(expires_at)
            .execute(self.db.write())
            .await?;
        Ok(Session { token, user: row.user()?, expires_at })
    }

    /// Stores `password` again at the current hash setting if `row`'s hash was
    /// made with another ([`crate::password`]: older settings), unless the hash
    /// changed meanwhile (a password set at the same moment wins). A failure only
    /// leaves the older hash, which still verifies: logged, not the sign-in's.
    async fn upgrade_hash(&self, row: &UserRow, password: &str) {
        let Some(old) = row.password_hash.as_deref().filter(|h| !Hasher::is_current(h)) else { return };
        let stored = match self.hasher.hash(password).await {
            Ok(new) => query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(&new)
                .bind(&row.id)
                .bind(old)
                .execute(self.db.write())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            tracing::warn!(user = %row.id, error = %e, "storing the password at the current hash setting failed");
        }
    }

    /// The user a session token belongs to, if it is valid.
    ///
    /// # Errors
    /// A database failure.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, Error> {
        Ok(self.session(token).await?.map(|(user, _)| user))
    }

    /// As [`Identity::authenticate`], with the session's expiry (for streams that
    /// must end when it does).
    ///
    /// # Errors
    /// A database failure.
    pub async fn session(&self, token: &str) -> Result<Option<(User, Micros)>, Error> {
        if token.len() != 64 {
            return Ok(None);
        }
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            expires_at: Micros,
        }
        let row: Option<Row> = query(
            "SELECT u.id, u.email, u.password_hash, u.role, u.tenant_id, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(secret_hash(token))
        .bind(self.clock.now())
        .fetch_optional(self.db.read())
        .await?;
        row.map(|r| Ok((r.user.user()?, r.expires_at))).transpose()
    }

    /// Revokes a session server-side (the token stops working everywhere).
    ///
    /// # Errors
    /// A database failure.
    pub async fn logout(&self, token: &str) -> Result<(), Error> {
        query("UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
            .bind(self.clock.now())
            .bind(secret_hash(token))
            .execute(self.db.write())
            .await?;
        Ok(())
    }

    /// The email of the user with `id`, if there is one (who created a tenant, for
    /// its page).
    ///
    /// # Errors
    /// A database failure.
    pub async fn email_of(&self, id: &str) -> Result<Option<String>, Error> {
        Ok(query("SELECT email FROM users WHERE id = $1").bind(id).scalar_optional(self.db.read()).await?)
    }

    /// Issues a set-password token, in a transaction of its own, for the user with
    /// `email` (for the welcome email and for operators).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown email, or a database failure.
    pub async fn issue_password_token_for_email(&self, email: &str) -> Result<String, Error> {
        let email = email.trim().to_ascii_lowercase();
        let id: Option<String> =
            query("SELECT id FROM users WHERE email = $1").bind(&email).scalar_optional(self.db.read()).await?;
        let id = id.ok_or(Error::NotFound("user"))?;
        let mut tx = self.db.begin().await?;
        let token = insert_password_token(&mut tx, &id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Sets a password through a set-password token, which is then used up.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad password, [`Error::BadToken`] for an unknown,
    /// used or expired token, or a database failure.
    pub async fn set_password(&self, token: &str, password: &str) -> Result<User, Error> {
        check_password("password", password)?;
        let hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let user_id: Option<String> = query(
            "UPDATE password_tokens SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
        )
        .bind(now)
        .bind(secret_hash(token))
        .scalar_optional(&mut tx)
        .await?;
        let user_id = user_id.ok_or(Error::BadToken)?;
        let row: UserRow = query(
            "UPDATE users SET password_hash = $1 WHERE id = $2 RETURNING id, email, password_hash, role, tenant_id",
        )
        .bind(&hash)
        .bind(&user_id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        row.user()
    }
}

/// The super admin's password from the command line (`server
/// reset-admin-password`) and the start-up check of `SUPERADMIN_PASSWORD`: an
/// operator with access to the database and the settings, so no token or old
/// password is asked for.
impl Identity {
    /// Whether `password` is the stored password of the super admin `email`;
    /// `None` when no super admin has that email. Unlike [`Identity::login`] it
    /// records no failure and opens no session.
    ///
    /// # Errors
    /// A database or hashing failure.
    pub async fn super_admin_password_matches(&self, email: &str, password: &str) -> Result<Option<bool>, Error> {
        let email = email.trim().to_ascii_lowercase();
        let row: Option<UserRow> =
            query("SELECT id, email, password_hash, role, tenant_id FROM users WHERE email = $1")
                .bind(&email)
                .fetch_optional(self.db.read())
                .await?;
        let Some(row) = row.filter(|r| r.role == Role::SuperAdmin.as_str()) else { return Ok(None) };
        Ok(Some(self.hasher.verify(password, row.password_hash.as_deref()).await?))
    }

    /// Gives the super admin `email` a new password, `password` or (with `None`) a
    /// generated one, which is returned to be shown once, and revokes the
    /// account's open sessions (a reset usually means the old password is lost or
    /// leaked). Creates the account when there is none yet, as the first start would.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad email or password, [`Error::NotFound`] when the
    /// email belongs to a user who is not a super admin, or a database failure.
    pub async fn reset_super_admin_password(&self, email: &str, password: Option<&str>) -> Result<String, Error> {
        let parsed = Email::parse("SUPERADMIN_EMAIL", email).map_err(|e| Error::Invalid(FieldErrors(vec![e])))?;
        let password = match password {
            Some(p) => {
                check_password("SUPERADMIN_PASSWORD", p)?;
                p.to_owned()
            }
            None => new_secret()[..24].to_owned(),
        };
        let hash = self.hasher.hash(&password).await?;
        let mut tx = self.db.begin().await?;
        let id: Option<String> =
            query("UPDATE users SET password_hash = $1 WHERE email = $2 AND role = 'super_admin' RETURNING id")
                .bind(&hash)
                .bind(parsed.as_str())
                .scalar_optional(&mut tx)
                .await?;
        if let Some(id) = id {
            query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(self.clock.now())
                .bind(&id)
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            return Ok(password);
        }
        tx.rollback().await?;
        // No super admin by that email: create one, unless another user holds it.
        self.seed_super_admin(parsed.as_str(), Some(&password)).await?;
        match self.super_admin_password_matches(parsed.as_str(), &password).await? {
            Some(true) => {}
            _ => return Err(Error::NotFound("super admin")),
        }
        Ok(password)
    }
}
