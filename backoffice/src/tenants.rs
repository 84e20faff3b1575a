//! Tenants in the control plane, and the two ways they are created: by a super
//! admin, or by a public sign-up.
//!
//! Creating a tenant writes its row (`provisioning`) and enqueues its
//! [`ProvisionTenant`] job in one transaction,
//! then returns: the slow work happens in a worker. No tenant can be left
//! `provisioning` without a job, and no job exists for a tenant that was not written.

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
    /// taken (case-insensitively) or the email already has an account; a database
    /// failure. Nothing is written on any error.
    pub async fn create_by_admin(&self, admin: &User, name: &str, admin_email: &str) -> Result<Created, Error> {
        let mut errs = FieldErrors::default();
        let name = errs.check(TenantName::parse("name", name));
        let email = errs.check(Email::parse("admin_email", admin_email));
        errs.into_result()?;
        let (Some(name), Some(email)) = (name, email) else { return Err(Error::Invalid(FieldErrors::default())) };
        if self.email_has_account(&email).await? {
            return Err(Error::AlreadyExists { field: "admin_email", message: "already has an account".to_owned() });
        }
        self.insert(&name, &email, Origin::Admin, Some(&admin.id), "name").await
    }

    /// A prospective client signs up. Fields: `company_name`, `email`.
    ///
    /// When the email already has an account, nothing is created: the owner is sent
    /// a "you already have an account" email instead and `None` is returned, so
    /// the caller gives the same answer either way.
    ///
    /// # Errors
    /// As [`Tenants::create_by_admin`], on the sign-up's field names.
    pub async fn sign_up(&self, company_name: &str, email: &str) -> Result<Option<Created>, Error> {
        let mut errs = FieldErrors::default();
        let name = errs.check(TenantName::parse("company_name", company_name));
        let email = errs.check(Email::parse("email", email));
        errs.into_result()?;
        let (Some(name), Some(email)) = (name, email) else { return Err(Error::Invalid(FieldErrors::default())) };
        if self.email_has_account(&email).await? {
            tracing::info!(email = %email, "sign-up for an address that already has an account");
            let letter = self.letters.account_exists(name.as_str(), email.as_str())?;
            let mut tx = self.jobs.begin().await?;
            crate::jobs::send_email::enqueue(&self.jobs, &mut tx, &letter, None, self.clock.now()).await?;
            tx.commit().await?;
            return Ok(None);
        }
        self.insert(&name, &email, Origin::Signup, None, "company_name").await.map(Some)
    }

    async fn email_has_account(&self, email: &Email) -> Result<bool, Error> {
        let n: i64 =
            query("SELECT COUNT(*) FROM users WHERE email = $1").bind(email.as_str()).scalar(self.db.read()).await?;
        Ok(n > 0)
    }

    async fn insert(
        &self,
        name: &TenantName,
        email: &Email,
        origin: Origin,
        initiated_by: Option<&str>,
        name_field: &'static str,
    ) -> Result<Created, Error> {
        let uuid = uuid::Uuid::new_v4();
        let id = uuid.to_string();
        let now = self.clock.now();
        // The job first, so the tenant row is written once, already pointing at it;
        // a taken name rolls both back.
        let mut tx = self.jobs.begin().await?;
        let job = self.jobs.enqueue_in(&mut tx, &ProvisionTenant { tenant_id: id.clone() }).await?;
        let tenant: Option<Tenant> = query(
            "INSERT INTO tenants (id, name, name_key, slug, status, origin, initiated_by, admin_email, db_name,
                                  job_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'provisioning', $5, $6, $7, $8, $9, $10, $10)
             ON CONFLICT (name_key) DO NOTHING
             RETURNING *",
        )
        .bind(&id)
        .bind(name.as_str())
        .bind(name.key())
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
            tx.rollback().await?;
            return Err(Error::AlreadyExists {
                field: name_field,
                message: "a tenant with this name already exists".into(),
            });
        };
        tx.commit().await?;
        Ok(Created { tenant, job_id: job.id })
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
