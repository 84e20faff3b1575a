//! `tenants.v1.TenantService`: create (super admins), sign up (public), read.

use std::sync::Arc;

use backoffice::tenants::{Tenant, TenantStatus, Tenants};
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_server::TenantService;
use tonic::{Request, Response, Status};

use crate::boundary::invalid_field;
use crate::caller::Caller;
use crate::grpc::status::status;
use crate::ratelimit::Limiter;
use std::pin::Pin;
use std::time::Duration;

use backoffice::identity::Identity;
use backoffice::jobs::provision::STEPS;
use backoffice::tenant_db::TenantDbs;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// What every sign-up is told, whatever happened behind it.
pub const SIGNUP_MESSAGE: &str = "Thanks for signing up! Check your email shortly for your login details.";

/// The service.
pub struct TenantsGrpc {
    tenants: Tenants,
    signups: Arc<Limiter>,
    shutdown: CancellationToken,
    tenant_dbs: TenantDbs,
    /// Who created a tenant, by email.
    identity: Identity,
}

/// How often `WatchTenant` looks at the tenant.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

impl TenantsGrpc {
    /// Serves `tenants` (admin calls to super admins, [`Caller`]), sign-ups
    /// limited by `signups`; streams end when `shutdown` fires. A tenant admin's
    /// own tenant is read from `tenant_dbs`.
    pub fn new(
        tenants: Tenants,
        signups: Arc<Limiter>,
        shutdown: CancellationToken,
        tenant_dbs: TenantDbs,
        identity: Identity,
    ) -> Self {
        Self { tenants, signups, shutdown, tenant_dbs, identity }
    }
}

fn pb_status(s: TenantStatus) -> pb::TenantStatus {
    match s {
        TenantStatus::Provisioning => pb::TenantStatus::Provisioning,
        TenantStatus::Active => pb::TenantStatus::Active,
        TenantStatus::Failed => pb::TenantStatus::Failed,
    }
}

/// The wire form of a tenant.
pub fn pb_tenant(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        slug: t.slug.clone(),
        status: pb_status(t.status()).into(),
        origin: t.origin.clone(),
        admin_email: t.admin_email.clone(),
        step: t.step.clone().unwrap_or_default(),
        last_error: t.last_error.clone().unwrap_or_default(),
        job_id: t.job_id.unwrap_or_default(),
        created_at_unix_ms: t.created_at / 1000,
        activated_at_unix_ms: t.activated_at.unwrap_or_default() / 1000,
        // Needs a lookup; GetTenant fills it.
        created_by: String::new(),
    }
}

/// What `WatchTenant` sends: status, step, progress.
pub fn progress(t: &Tenant) -> pb::TenantProgress {
    let step = t.step.clone().unwrap_or_default();
    let total = STEPS.len() as u32;
    let done = match t.status() {
        TenantStatus::Active => total,
        _ => STEPS.iter().position(|s| *s == step).map_or(0, |i| i as u32),
    };
    pb::TenantProgress {
        tenant_id: t.id.clone(),
        status: pb_status(t.status()).into(),
        step,
        last_error: t.last_error.clone().unwrap_or_default(),
        steps_done: done,
        steps_total: total,
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::TenantProgress, Status>> + Send>>;

#[tonic::async_trait]
impl TenantService for TenantsGrpc {
    type WatchTenantStream = ProgressStream;

    async fn get_my_tenant(&self, req: Request<pb::GetMyTenantRequest>) -> Result<Response<pb::MyTenant>, Status> {
        let user = &Caller::of(&req).signed_in()?.user;
        let id =
            user.tenant_id.clone().ok_or_else(|| Status::failed_precondition("only tenant admins have a tenant"))?;
        let t = self.tenants.get(&id).await.map_err(status)?;
        if t.status() != TenantStatus::Active {
            return Err(Status::failed_precondition(format!("the tenant is {}", t.status)));
        }
        let home = self.tenant_dbs.read_home(&t.db_name).await.map_err(|e| {
            if let Some(broken) = e.downcast_ref::<backoffice::tenant_db::Broken>() {
                // Not the caller's fault and not passing: an operator must restore it.
                tracing::error!(tenant = %t.id, name = %t.name, "tenant is broken: {broken}");
                return Status::failed_precondition(format!(
                    "tenant {:?} ({}) is broken: its database is missing or damaged; an operator must restore it",
                    t.name, t.id
                ));
            }
            tracing::error!(error = %format!("{e:#}"), tenant = %t.id, "reading a tenant database");
            Status::internal("the tenant's database cannot be read; see the server log")
        })?;
        Ok(Response::new(pb::MyTenant {
            tenant: Some(pb_tenant(&t)),
            roles: home.roles.into_iter().map(|(name, description)| pb::TenantRole { name, description }).collect(),
            settings: home.settings.into_iter().map(|(key, value)| pb::TenantSetting { key, value }).collect(),
            database: t.db_name.clone(),
        }))
    }

    async fn watch_tenant(&self, req: Request<pb::WatchTenantRequest>) -> Result<Response<ProgressStream>, Status> {
        Caller::of(&req).require_super_admin()?;
        let id = uuid_like(&req.get_ref().id).ok_or_else(|| invalid_field("id", "not a tenant id"))?.to_owned();
        let first = self.tenants.get(&id).await.map_err(status)?;
        let (tx, rx) = mpsc::channel(1);
        let (tenants, shutdown) = (self.tenants.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let mut last = progress(&first);
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            // Polled: a few watchers at a time (admins following a provisioning),
            // each one indexed read per tick, and it ends with the provisioning.
            while last.status == pb::TenantStatus::Provisioning as i32 {
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the server is shutting down; reconnect"))).await;
                        return;
                    }
                    () = tx.closed() => return,
                }
                let now = match tenants.get(&id).await {
                    Ok(t) => progress(&t),
                    Err(e) => {
                        tracing::warn!(error = %e, "watching a tenant");
                        continue;
                    }
                };
                if now != last {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let admin = Caller::of(&req).require_super_admin()?.user.clone();
        let r = req.into_inner();
        let created = self.tenants.create_by_admin(&admin, &r.name, &r.admin_email).await.map_err(status)?;
        Ok(Response::new(pb::CreateTenantResponse { tenant: Some(pb_tenant(&created.tenant)), job_id: created.job_id }))
    }

    async fn import_tenants(
        &self,
        req: Request<pb::ImportTenantsRequest>,
    ) -> Result<Response<pb::ImportTenantsResponse>, Status> {
        let admin = Caller::of(&req).require_super_admin()?.user.clone();
        let r = req.into_inner();
        let done = self.tenants.import_by_admin(&admin, &r.csv).await.map_err(status)?;
        Ok(Response::new(pb::ImportTenantsResponse {
            batch_id: done.batch_id,
            tenants: done.tenants.iter().map(pb_tenant).collect(),
        }))
    }

    async fn sign_up(&self, req: Request<pb::SignUpRequest>) -> Result<Response<pb::SignUpResponse>, Status> {
        let ip = crate::client::ip(req.extensions());
        let r = req.into_inner();
        // Bad input is answered as such before it costs the client its budget.
        backoffice::tenants::Tenants::check_sign_up(&r.company_name, &r.email).map_err(status)?;
        self.signups.check(ip).map_err(|r| status(r.signup_error()))?;
        self.tenants.sign_up(&r.company_name, &r.email).await.map_err(status)?;
        Ok(Response::new(pb::SignUpResponse { message: SIGNUP_MESSAGE.to_owned() }))
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        Caller::of(&req).require_super_admin()?;
        let id = &req.get_ref().id;
        if uuid_like(id).is_none() {
            return Err(invalid_field("id", "not a tenant id"));
        }
        let t = self.tenants.get(id).await.map_err(status)?;
        let mut out = pb_tenant(&t);
        if let Some(by) = &t.initiated_by {
            out.created_by = self.identity.email_of(by).await.map_err(status)?.unwrap_or_default();
        }
        Ok(Response::new(out))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let r = req.get_ref();
        let status_filter = match pb::TenantStatus::try_from(r.status) {
            Ok(pb::TenantStatus::Unspecified) => None,
            Ok(pb::TenantStatus::Provisioning) => Some(TenantStatus::Provisioning),
            Ok(pb::TenantStatus::Active) => Some(TenantStatus::Active),
            Ok(pb::TenantStatus::Failed) => Some(TenantStatus::Failed),
            Err(_) => return Err(invalid_field("status", format!("{} is not a TenantStatus", r.status))),
        };
        if r.page_size > backoffice::tenants::MAX_PAGE {
            return Err(invalid_field(
                "page_size",
                format!("at most {}, got {}", backoffice::tenants::MAX_PAGE, r.page_size),
            ));
        }
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(
                t.split_once('/')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, uuid_like(id)?.to_owned())))
                    .ok_or_else(|| invalid_field("page_token", "not a token from a previous response"))?,
            ),
        };
        let limit = if r.page_size == 0 { backoffice::tenants::DEFAULT_PAGE } else { r.page_size };
        let rows = self.tenants.list(status_filter, after, limit).await.map_err(status)?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() == limit as usize => format!("{}/{}", last.created_at, last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTenantsResponse { tenants: rows.iter().map(pb_tenant).collect(), next_page_token }))
    }
}

/// `s` if it is shaped like a UUID (hex and dashes, 36 characters).
pub fn uuid_like(s: &str) -> Option<&str> {
    (s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(s)
}
