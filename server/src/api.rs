//! The JSON facade for curl users: the same domain calls as the gRPC services.
//!
//! | Method and path          | Who                         | Body                          | Answer |
//! |--------------------------|-----------------------------|-------------------------------|--------|
//! | `POST /api/signup`       | anyone (rate-limited)       | `{"company_name", "email"}`   | `202`, `Location`, the tenant |
//! | `POST /api/tenants`      | super admin (bearer)        | `{"name", "admin_email"}`     | `202`, `Location`, the tenant |
//! | `GET /api/tenants/{id}`  | super admin, or that tenant's admin (bearer) | –            | `200`, `{id, name, status, ...}` |
//!
//! Errors are JSON too: `{"error": "...", "fields": [{"field", "message"}]}` with
//! `400` (not JSON, not UTF-8, wrong types), `401`, `403`, `404`, `409` (name
//! taken), `413` (over 64 KiB), `415` (not `application/json`), `422` (field
//! checks), `429` (rate limit), `503` (database away) or `500`, from the table in
//! [`crate::boundary`] that the gRPC services answer from too.
//!
//! Only `Authorization: Bearer` tokens are accepted here, never the browser's
//! cookie, so a cross-site page cannot make a signed-in browser call these.
//!
//! A sign-up for an address that already has an account must not reveal that.
//! It is answered exactly like a new one (`202`, a fresh id, `provisioning`);
//! nothing is created and the address's owner is emailed instead. Reading a
//! tenant needs a session, which the sign-up caller does not have, so the answer
//! cannot be probed further.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use backoffice::Error;
use backoffice::identity::{Role, User};
use backoffice::tenants::{Tenant, Tenants};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::boundary::Failure;
use crate::caller::Caller;
use crate::grpc::tenants::{SIGNUP_MESSAGE, uuid_like};
use crate::ratelimit::Limiter;

/// What the facade needs.
#[derive(Clone)]
pub struct Api {
    /// Tenant operations.
    pub tenants: Tenants,
    /// The sign-up limit (shared with the gRPC service).
    pub signups: Arc<Limiter>,
}

/// The routes, with a 64 KiB body limit.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/signup", post(sign_up))
        .route("/api/tenants", post(create_tenant))
        .route("/api/tenants/{id}", get(get_tenant))
        .layer(DefaultBodyLimit::max(crate::MAX_REQUEST_BYTES))
        .with_state(api)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    fields: Vec<(String, String)>,
    /// `Retry-After`, for a 429 or 503 that may succeed later.
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), fields: Vec::new(), retry_after: None }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        Self { status: f.http_status(), message: f.message, fields: f.fields, retry_after: f.retry_after }
    }
}

/// Domain errors answer from the shared table ([`crate::boundary`]).
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Failure::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let fields: Vec<_> = self.fields.iter().map(|(f, m)| json!({ "field": f, "message": m })).collect();
        let mut resp = (self.status, Json(json!({ "error": self.message, "fields": fields }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            crate::boundary::set_retry_after(resp.headers_mut(), after);
        }
        resp
    }
}

/// A tenant as the facade shows it.
#[derive(Debug, Serialize)]
pub struct TenantJson {
    id: String,
    name: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

impl From<&Tenant> for TenantJson {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            status: t.status.clone(),
            step: t.step.clone(),
            last_error: t.last_error.clone(),
            message: None,
        }
    }
}

/// Reads a JSON body: `application/json`, UTF-8, the right shape. Missing
/// fields read as empty, so the field checks name them.
fn parse<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as Content-Type: application/json",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    serde_json::from_str(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not the JSON expected: {e}")))
}

fn accepted(t: TenantJson) -> Response {
    let location = format!("/api/tenants/{}", t.id);
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(t)).into_response()
}

/// The signed-in user of a bearer token, from the caller the identity layer
/// resolved ([`crate::caller`]); a cookie alone does not count (module docs).
fn bearer_user(caller: Option<Extension<Caller>>) -> Result<User, ApiError> {
    let caller = caller.map(|Extension(c)| c).unwrap_or(Caller::Anonymous);
    Ok(caller.bearer()?.user.clone())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignUpBody {
    company_name: String,
    email: String,
}

async fn sign_up(
    State(api): State<Api>,
    Extension(client): Extension<crate::client::ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: SignUpBody = parse(&headers, body)?;
    // Bad input is answered as such before it costs the client its budget.
    backoffice::tenants::Tenants::check_sign_up(&b.company_name, &b.email)?;
    api.signups.check(Some(client.0)).map_err(|r| ApiError::from(r.signup_error()))?;
    let mut t = match api.tenants.sign_up(&b.company_name, &b.email).await? {
        Some(created) => TenantJson::from(&created.tenant),
        // The address has an account: answered like a new sign-up (module docs).
        None => TenantJson {
            id: uuid::Uuid::new_v4().to_string(),
            name: b.company_name.split_whitespace().collect::<Vec<_>>().join(" "),
            status: "provisioning".to_owned(),
            step: None,
            last_error: None,
            message: None,
        },
    };
    t.message = Some(SIGNUP_MESSAGE);
    Ok(accepted(t))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateBody {
    name: String,
    admin_email: String,
}

async fn create_tenant(
    State(api): State<Api>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = caller.map(|Extension(c)| c).unwrap_or(Caller::Anonymous);
    let user = caller.bearer()?.require_super_admin()?.user.clone();
    let b: CreateBody = parse(&headers, body)?;
    let created = api.tenants.create_by_admin(&user, &b.name, &b.admin_email).await?;
    Ok(accepted(TenantJson::from(&created.tenant)))
}

async fn get_tenant(
    State(api): State<Api>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = bearer_user(caller)?;
    let id = uuid_like(&id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "tenant not found"))?;
    let allowed = user.role == Role::SuperAdmin || user.tenant_id.as_deref() == Some(id);
    if !allowed {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only super admins and the tenant's own admin may read it"));
    }
    let t = api.tenants.get(id).await?;
    Ok(Json(TenantJson::from(&t)).into_response())
}
