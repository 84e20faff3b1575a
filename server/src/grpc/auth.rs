//! `auth.v1.AuthService`: sign-in for browsers (cookie) and scripts (bearer token).

use std::sync::Arc;

use backoffice::identity::{self, Identity};
use backoffice::password_link::PasswordLinks;
use proto::auth::v1 as pb;
use proto::auth::v1::auth_service_server::AuthService;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::caller::Caller;
use crate::grpc::status::status;
use crate::ratelimit::Limiter;

/// New set-password links one client address may ask for in an hour.
pub const LINKS_PER_IP_PER_HOUR: u32 = 10;
/// New set-password links the server takes a minute from everyone (one network
/// gets at most a quarter of it: see `crate::ratelimit`).
pub const LINKS_PER_MINUTE: u32 = 60;
/// The one answer to every accepted `RequestPasswordLink` (the page's words).
pub const LINK_SENT: &str = app::pages::new_link::SENT;

/// The service.
pub struct AuthGrpc {
    identity: Identity,
    /// The site is served over https (`PUBLIC_URL`): every cookie gets `Secure`.
    https: bool,
    /// "Send me a new link".
    links: PasswordLinks,
    /// Its per-client and global limits.
    link_limits: Arc<Limiter>,
}

impl AuthGrpc {
    /// Serves sign-in against `identity`; `https` when the public URL is https,
    /// so the session cookie is never sent over plain HTTP. New set-password
    /// links go through `links`, limited by `link_limits`.
    pub fn new(identity: Identity, https: bool, links: PasswordLinks, link_limits: Arc<Limiter>) -> Self {
        Self { identity, https, links, link_limits }
    }

    /// Whether this answer's cookie gets `Secure`: the site is https, or this
    /// request came over TLS (a proxy that says so).
    fn secure<T>(&self, req: &Request<T>) -> bool {
        self.https || over_tls(req)
    }
}

/// The wire form of a user.
pub fn pb_user(u: &identity::User) -> pb::User {
    pb::User {
        id: u.id.clone(),
        email: u.email.clone(),
        role: match u.role {
            identity::Role::SuperAdmin => pb::Role::SuperAdmin,
            identity::Role::TenantAdmin => pb::Role::TenantAdmin,
        }
        .into(),
        tenant_id: u.tenant_id.clone().unwrap_or_default(),
    }
}

/// Whether the request came over TLS (directly or through a proxy that says so),
/// so the cookie gets `Secure`.
fn over_tls<T>(req: &Request<T>) -> bool {
    req.metadata().get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

fn cookie(value: &str, max_age: i64, secure: bool) -> Result<MetadataValue<tonic::metadata::Ascii>, Status> {
    let secure = if secure { "; Secure" } else { "" };
    format!("session={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
        .parse()
        .map_err(|_| Status::internal("cannot build the session cookie"))
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let secure = self.secure(&req);
        let client = crate::client::ip(req.extensions());
        let r = req.into_inner();
        let s = self.identity.login_from(&r.email, &r.password, client).await.map_err(status)?;
        let mut resp = Response::new(pb::LoginResponse {
            token: s.token.clone(),
            user: Some(pb_user(&s.user)),
            expires_at_unix_ms: s.expires_at / 1000,
        });
        let max_age = identity::SESSION_TTL.as_secs() as i64;
        resp.metadata_mut().insert("set-cookie", cookie(&s.token, max_age, secure)?);
        Ok(resp)
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let secure = self.secure(&req);
        if let Some(token) = Caller::of(&req).credential_token() {
            self.identity.logout(token).await.map_err(status)?;
        }
        let mut resp = Response::new(pb::LogoutResponse {});
        resp.metadata_mut().insert("set-cookie", cookie("", 0, secure)?);
        Ok(resp)
    }

    async fn me(&self, req: Request<pb::MeRequest>) -> Result<Response<pb::User>, Status> {
        let user = &Caller::of(&req).signed_in()?.user;
        Ok(Response::new(pb_user(user)))
    }

    async fn set_password(
        &self,
        req: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let r = req.into_inner();
        let user = self.identity.set_password(&r.token, &r.password).await.map_err(status)?;
        Ok(Response::new(pb::SetPasswordResponse { user: Some(pb_user(&user)) }))
    }

    async fn request_password_link(
        &self,
        req: Request<pb::RequestPasswordLinkRequest>,
    ) -> Result<Response<pb::RequestPasswordLinkResponse>, Status> {
        let client = crate::client::ip(req.extensions());
        let r = req.into_inner();
        // Bad input is answered as such before it costs the client its budget.
        backoffice::validate::Email::parse("email", &r.email)
            .map_err(|e| status(backoffice::Error::Invalid(backoffice::validate::FieldErrors(vec![e]))))?;
        if let Err(refused) = self.link_limits.check(client) {
            let what = "too many requests for new links from your address";
            return Err(status(backoffice::Error::rate_limited(what, refused.wait)));
        }
        self.links.request(&r.email).await.map_err(status)?;
        Ok(Response::new(pb::RequestPasswordLinkResponse { message: LINK_SENT.to_owned() }))
    }
}
