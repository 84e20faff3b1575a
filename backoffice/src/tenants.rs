//! Tenants in the control plane, and the two ways they are created: by a super
//! admin, or by a public sign-up.
//!
//! Creating a tenant writes its row (`provisioning`) and enqueues its
//! [`ProvisionTenant`] job in one transaction,
//! then returns: the slow work happens in a worker. No tenant can be left
//! `provisioning` without a job, and no job exists for a tenant that was not written.

pub mod import;

use std::sync::Arc;

use database::{Db, query};
use jobengine::{Jobs, Micros};
use serde::Serialize;

use crate::error::Error;
use crate::identity::User;
use crate::jobs::provision::ProvisionTenant;
use crate::mail::Letters;
use crate::validate::{Email, FieldErrors, TenantName};

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Its job has not finished yet.
    Provisioning,
    /// Ready to use.
    Active,
    /// Provisioning failed on its last attempt (`last_error` says why).
    Failed,
}

impl TenantStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Failed => "failed",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provisioning" => Some(TenantStatus::Provisioning),
            "active" => Some(TenantStatus::Active),
            "failed" => Some(TenantStatus::Failed),
            _ => None,
        }
    }
}

/// Who started a tenant's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A super admin, from the admin app or the API.
    Admin,
    /// A prospective client, from the public sign-up.
    Signup,
}

impl Origin {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Admin => "admin",
            Origin::Signup => "signup",
        }
    }
}

/// A tenant row.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Tenant {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// URL-friendly name (not unique: ids identify).
    pub slug: String,
    /// `provisioning | active | failed`.
    pub status: String,
    /// `admin | signup`.
    pub origin: String,
    /// The admin who created it.
    pub initiated_by: Option<String>,
    /// The tenant admin's email.
    pub admin_email: String,
    /// Its database's name, derived from the id.
    pub db_name: String,
    /// The last provisioning step reached.
    pub step: Option<String>,
    /// Why provisioning failed.
    pub last_error: Option<String>,
    /// The provisioning job.
    pub job_id: Option<i64>,
    /// Created.
    pub created_at: Micros,
    /// Last change.
    pub updated_at: Micros,
    /// When it became active.
    pub activated_at: Option<Micros>,
}

impl Tenant {
    /// The status as an enum.
    pub fn status(&self) -> TenantStatus {
        TenantStatus::parse(&self.status).unwrap_or(TenantStatus::Failed)
    }
}

/// The answer to a create: the tenant as written and its job.
#[derive(Debug, Clone)]
pub struct Created {
    /// The tenant (`provisioning`).
    pub tenant: Tenant,
    /// The provisioning job's id.
    pub job_id: i64,
}

/// The database name for a tenant id: `t_` and the UUID's hex. Never user text.
pub fn db_name_for(id: &uuid::Uuid) -> String {
    format!("t_{}", id.simple())
}

/// Tenant operations.
#[derive(Clone)]
pub struct Tenants {
    db: Db,
    jobs: Jobs,
    letters: Letters,
    clock: Arc<dyn jobengine::Clock>,
}

/// What [`Tenants::insert`] did.
enum Inserted {
    Created(Box<Created>),
    /// The email has an account, or a tenant that is not `failed` reserved it.
    EmailTaken,
    /// The name, or one that looks like it, belongs to a tenant that is not `failed`.
    NameTaken,
}

/// What of `name` and `email` is taken, seen from `tx`; when both are, the
/// answer `origin` gives first: a sign-up's is the email (its owner is the one
/// to tell), a super admin's the name (as it always was).
async fn taken(
    tx: &mut database::Tx,
    name: &TenantName,
    email: &Email,
    origin: Origin,
) -> Result<Option<Inserted>, Error> {
    let (has_account, name_taken) = conflicts(tx, name, email).await?;
    Ok(match (has_account, name_taken, origin) {
        (true, false, _) | (true, true, Origin::Signup) => Some(Inserted::EmailTaken),
        (_, true, _) => Some(Inserted::NameTaken),
        (false, false, _) => None,
    })
}

/// Whether `email` has an account or a live tenant, and whether `name` (or a
/// lookalike) belongs to a tenant, seen from `tx`: the one check every way of
/// creating tenants makes.
async fn conflicts(tx: &mut database::Tx, name: &TenantName, email: &Email) -> Result<(bool, bool), Error> {
    let (has_account, name_taken): (i64, i64) = query(
        "SELECT (SELECT COUNT(*) FROM users WHERE email = $1)
              + (SELECT COUNT(*) FROM tenants WHERE admin_email = $1 AND status <> 'failed'),
                (SELECT COUNT(*) FROM tenants WHERE name_key = $2 OR (name_skeleton = $3 AND status <> 'failed'))",
    )
    .bind(email.as_str())
    .bind(name.key())
    .bind(name.skeleton())
    .fetch_one(&mut *tx)
    .await?;
    Ok((has_account > 0, name_taken > 0))
}

/// Gives tenants written before names had skeletons (migration 2010) theirs, so
/// lookalikes of old names are refused too. A skeleton another live tenant
/// already holds is left unset (two old lookalikes cannot both keep it) and
/// logged. Run at start; cheap once done (an indexed empty scan).
///
/// # Errors
/// A database failure.
pub async fn backfill_skeletons(db: &Db) -> Result<(), Error> {
    let rows: Vec<(String, String)> =
        query("SELECT id, name FROM tenants WHERE name_skeleton IS NULL AND status <> 'failed'")
            .fetch_all(db.read())
            .await?;
    for (id, name) in rows {
        // Names stored before NFKC may not parse any more (a bidi control):
        // their skeleton is taken from the raw name.
        let skeleton = TenantName::parse("name", &name)
            .map_or_else(|_| crate::validate::lookalike::skeleton(&name), |n| n.skeleton());
        let set = query(
            "UPDATE tenants SET name_skeleton = $1 WHERE id = $2 AND NOT EXISTS
                 (SELECT 1 FROM tenants o WHERE o.name_skeleton = $1 AND o.status <> 'failed')",
        )
        .bind(&skeleton)
        .bind(&id)
        .execute(db.write())
        .await?;
        if set == 0 {
            tracing::warn!(tenant = %id, name = %name, "an older tenant looks like another; its name stays unreserved");
        }
    }
    Ok(())
}

/// The advisory-lock class of a recipient's notice count (see `Tx::lock`).
pub(crate) const NOTICE_LOCK_CLASS: i32 = 0x6e6f_7463; // "notc"
/// One hour, in the engine's microseconds.
pub(crate) const HOUR_MICROS: Micros = 3_600_000_000;

/// The page size `list` uses when asked for none.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page `list` returns.
pub const MAX_PAGE: u32 = 200;

impl Tenants {
    /// Tenants on the control plane that `jobs` runs on; `letters` composes the
    /// emails a sign-up may send.
    pub fn new(jobs: Jobs, letters: Letters) -> Self {
        Self { db: jobs.db().clone(), clock: jobs.clock().clone(), jobs, letters }
    }

    /// A super admin creates a tenant. Fields: `name`, `admin_email`.
    ///
    /// # Errors
    /// Field-by-field [`Error::Invalid`]; [`Error::AlreadyExists`] when the name is
    /// taken (case-insensitively, or by a name that looks like it) or the email
    /// already has an account or a tenant being provisioned; a database failure.
    /// Nothing is written on any error.
    pub async fn create_by_admin(&self, admin: &User, name: &str, admin_email: &str) -> Result<Created, Error> {
        let mut errs = FieldErrors::default();
        let name = errs.check(TenantName::parse("name", name));
        let email = errs.check(Email::parse("admin_email", admin_email));
        errs.into_result()?;
        let (Some(name), Some(email)) = (name, email) else { return Err(Error::Invalid(FieldErrors::default())) };
        match self.insert(&name, &email, Origin::Admin, Some(&admin.id)).await? {
            Inserted::Created(c) => Ok(*c),
            Inserted::EmailTaken => {
                Err(Error::AlreadyExists { field: "admin_email", message: "already has an account".to_owned() })
            }
            Inserted::NameTaken => {
                Err(Error::AlreadyExists { field: "name", message: "a tenant with this name already exists".into() })
            }
        }
    }

    /// A prospective client signs up. Fields: `company_name`, `email`.
    ///
    /// Every accepted sign-up gets the same answer, so the public learns neither
    /// which addresses have accounts nor which company names are customers'.
    /// When the email already has an account (or a tenant being provisioned),
    /// or the name is taken, nothing is created, `None` is returned and the
    /// person at the address is told privately by email ("you already have an
    /// account", "name taken"), at most [`Letters::per_recipient_per_hour`] such
    /// emails an hour.
    ///
    /// # Errors
    /// Field-by-field [`Error::Invalid`] on the sign-up's field names; a database
    /// failure.
    pub async fn sign_up(&self, company_name: &str, email: &str) -> Result<Option<Created>, Error> {
        let (name, email) = parse_sign_up(company_name, email)?;
        let letter = match self.insert(&name, &email, Origin::Signup, None).await? {
            Inserted::Created(c) => return Ok(Some(*c)),
            Inserted::EmailTaken => {
                tracing::info!(email = %email, "sign-up for an address that already has an account");
                self.letters.account_exists(email.as_str())?
            }
            Inserted::NameTaken => {
                tracing::info!(email = %email, "sign-up with a company name that is taken");
                self.letters.name_taken(email.as_str())?
            }
        };
        self.send_notice(&letter).await?;
        Ok(None)
    }

    /// Checks a sign-up's fields as [`Tenants::sign_up`] does, writing nothing:
    /// transports call it before counting the request against their rate limit,
    /// so a visitor's typo does not cost them part of their budget.
    ///
    /// # Errors
    /// Field-by-field [`Error::Invalid`] on the sign-up's field names.
    pub fn check_sign_up(company_name: &str, email: &str) -> Result<(), Error> {
        parse_sign_up(company_name, email).map(drop)
    }

    /// Queues a sign-up's private notice unless its recipient already got
    /// [`Letters::per_recipient_per_hour`] emails in the last hour (the outbox
    /// counts; a per-recipient lock makes count-and-write one step on
    /// PostgreSQL, SQLite's one writer does on its own).
    async fn send_notice(&self, letter: &crate::mail::Composed) -> Result<(), Error> {
        let now = self.clock.now();
        let mut tx = self.jobs.begin().await?;
        tx.lock(NOTICE_LOCK_CLASS, &letter.recipient).await?;
        let sent: i64 = query("SELECT COUNT(*) FROM outbox WHERE recipient = $1 AND created_at > $2")
            .bind(&letter.recipient)
            .bind(now - HOUR_MICROS)
            .scalar(&mut tx)
            .await?;
        if sent >= i64::from(self.letters.per_recipient_per_hour()) {
            tx.rollback().await?;
            tracing::warn!(
                to = %letter.recipient, kind = letter.kind, sent,
                "not sending: this address already got its emails for the hour (MAIL_PER_RECIPIENT_PER_HOUR)"
            );
            return Ok(());
        }
        crate::jobs::send_email::enqueue(&self.jobs, &mut tx, letter, None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the tenant and its job, or finds what is taken. The email is
    /// reserved by the tenant row itself (a unique index on `admin_email` over
    /// tenants that are not `failed`, beside `name_key` and `name_skeleton`), so
    /// of two concurrent requests only one can commit; the checks before the
    /// insert only choose which answer a loser gets (see [`taken`]).
    async fn insert(
        &self,
        name: &TenantName,
        email: &Email,
        origin: Origin,
        initiated_by: Option<&str>,
    ) -> Result<Inserted, Error> {
        let uuid = uuid::Uuid::new_v4();
        let id = uuid.to_string();
        let now = self.clock.now();
        let mut tx = self.jobs.begin().await?;
        if let Some(taken) = taken(&mut tx, name, email, origin).await? {
            tx.rollback().await?;
            return Ok(taken);
        }
        // The job first, so the tenant row is written once, already pointing at it;
        // a conflict rolls both back.
        let job = self.jobs.enqueue_in(&mut tx, &ProvisionTenant { tenant_id: id.clone() }).await?;
        let tenant: Option<Tenant> = query(
            "INSERT INTO tenants (id, name, name_key, name_skeleton, slug, status, origin, initiated_by, admin_email,
                                  db_name, job_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'provisioning', $6, $7, $8, $9, $10, $11, $11)
             ON CONFLICT DO NOTHING
             RETURNING *",
        )
        .bind(&id)
        .bind(name.as_str())
        .bind(name.key())
        .bind(name.skeleton())
        .bind(name.slug())
        .bind(origin.as_str())
        .bind(initiated_by)
        .bind(email.as_str())
        .bind(db_name_for(&uuid))
        .bind(job.id)
        .bind(now)
        .fetch_optional(&mut tx)
        .await?;
        let Some(tenant) = tenant else {
            // A concurrent request committed first (PostgreSQL; SQLite's one
            // writer saw it in the checks above): say what it took.
            tx.rollback().await?;
            let mut tx = self.db.begin_read().await?;
            let found = taken(&mut tx, name, email, origin).await?;
            tx.rollback().await?;
            return Ok(found.unwrap_or(Inserted::NameTaken));
        };
        tx.commit().await?;
        Ok(Inserted::Created(Box::new(Created { tenant, job_id: job.id })))
    }

    /// One tenant.
    ///
    /// # Errors
    /// [`Error::NotFound`] or a database failure.
    pub async fn get(&self, id: &str) -> Result<Tenant, Error> {
        let t: Option<Tenant> =
            query("SELECT * FROM tenants WHERE id = $1").bind(id).fetch_optional(self.db.read()).await?;
        t.ok_or(Error::NotFound("tenant"))
    }

    /// A page of tenants, newest first, optionally of one status; `after` is the
    /// previous page's last `(created_at, id)`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn list(
        &self,
        status: Option<TenantStatus>,
        after: Option<(Micros, String)>,
        limit: u32,
    ) -> Result<Vec<Tenant>, Error> {
        let limit = if limit == 0 { DEFAULT_PAGE } else { limit.min(MAX_PAGE) };
        let (at, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<Tenant> = query(
            "SELECT * FROM tenants
             WHERE ($1 IS NULL OR status = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(status.map(|s| s.as_str()))
        .bind(at)
        .bind(&id)
        .bind(i64::from(limit))
        .fetch_all(self.db.read())
        .await?;
        Ok(rows)
    }
}

/// A sign-up's fields, each named as the sign-up form names it.
fn parse_sign_up(company_name: &str, email: &str) -> Result<(TenantName, Email), Error> {
    let mut errs = FieldErrors::default();
    let name = errs.check(TenantName::parse("company_name", company_name));
    let email = errs.check(Email::parse("email", email));
    errs.into_result()?;
    let (Some(name), Some(email)) = (name, email) else { return Err(Error::Invalid(FieldErrors::default())) };
    Ok((name, email))
}
