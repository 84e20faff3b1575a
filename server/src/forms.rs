//! The web app's forms without JavaScript: plain `POST`s answered by the server.
//!
//! Every form in the app is `<form method="post" action=…>`. Hydrated, the app
//! intercepts the submit and calls the backend over gRPC-web; before hydration,
//! or with JavaScript off, the browser posts the form here. Each handler makes
//! the same `proto` call through the in-process channel (`crate::ssr`), so it
//! passes the same guard, validation, rate limits and error mapping, and then
//! answers like a web form should: `303 See Other` to the next page on success
//! (post/redirect/get, so a reload never posts twice), or the same page rendered
//! again with the errors next to their fields and the values typed (never
//! passwords), with a 4xx status.
//!
//! # CSRF
//! Only same-origin posts are taken: `Sec-Fetch-Site: same-origin`, or, from
//! browsers that do not send it, an `Origin` whose host is this request's
//! `Host`; a post with neither is refused (403). The session cookie is also
//! `SameSite=Strict`, so a cross-site post would arrive signed out anyway.
//!
//! Sign-in sets the very `Set-Cookie` the gRPC `Login` answers with (HttpOnly,
//! SameSite=Strict, `Secure` behind TLS), and `next` only ever leads to a path
//! on this site (`app::pages::login::safe_next`). No secret is put in a URL.

use app::grpc::InProcess;
use app::pages::Submitted;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1::job_service_client::JobServiceClient;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

/// Largest form body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Largest bulk tenant import form (the CSV itself may be 1 MiB; URL encoding
/// can triple it).
const MAX_IMPORT_FORM_BYTES: usize = 3 << 20;
/// Most jobs one bulk action takes.
const MAX_BULK: usize = 500;

/// The form routes, to merge into the pages' router (inside its session layer,
/// so a re-rendered page knows who is signed in).
pub fn router(grpc: InProcess) -> Router<LeptosOptions> {
    let route = |f: fn(Ctx) -> futures::future::BoxFuture<'static, Response>| {
        let grpc = grpc.clone();
        post(move |State(options): State<LeptosOptions>, req: Request| {
            let grpc = grpc.clone();
            async move { handle(grpc, options, req, f).await }
        })
    };
    Router::new()
        .route("/login", route(|c| Box::pin(login(c))))
        .route("/logout", route(|c| Box::pin(logout(c))))
        .route("/signup", route(|c| Box::pin(signup(c))))
        .route("/set-password", route(|c| Box::pin(set_password(c))))
        .route("/set-password/new-link", route(|c| Box::pin(new_link(c))))
        .route("/admin/tenants", route(|c| Box::pin(create_tenant(c))))
        .route("/admin/tenants/import", route(|c| Box::pin(import_tenants(c))))
        .route("/hangfire/jobs/{state}", route(|c| Box::pin(bulk(c))))
        .route("/hangfire/job/{id}", route(|c| Box::pin(job_action(c))))
        .route("/hangfire/recurring", route(|c| Box::pin(recurring_action(c))))
}

/// One posted form and what answering it needs.
struct Ctx {
    /// The channel acting for the poster (their cookie, their address).
    grpc: InProcess,
    options: LeptosOptions,
    parts: axum::http::request::Parts,
    fields: Vec<(String, String)>,
}

impl Ctx {
    /// The first value posted as `name`, or `""`.
    fn get(&self, name: &str) -> String {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// The page posted to, rendered again with `submitted`, answered with `status`.
    async fn again(self, submitted: Submitted, answer: impl Into<Answer>) -> Response {
        let mut req = Request::new(Body::empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = self.parts.uri.clone();
        *req.headers_mut() = self.parts.headers.clone();
        req.headers_mut().remove(header::CONTENT_TYPE);
        req.headers_mut().remove(header::CONTENT_LENGTH);
        *req.extensions_mut() = self.parts.extensions.clone();
        let (grpc, options) = (self.grpc, self.options);
        let shell_options = options.clone();
        // What every page render gets (crate::ssr::context), and the post.
        let page = crate::ssr::context(grpc);
        let render = leptos_axum::render_app_async_with_context(
            move || {
                page();
                provide_context(submitted.clone());
                provide_context(options.clone());
            },
            move || app::shell(shell_options.clone()),
        );
        answer.into().apply(render(req).await.into_response())
    }
}

async fn handle(
    grpc: InProcess,
    options: LeptosOptions,
    req: Request,
    f: fn(Ctx) -> futures::future::BoxFuture<'static, Response>,
) -> Response {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers) {
        return (StatusCode::FORBIDDEN, "Refused: forms are only accepted from this site's own pages.").into_response();
    }
    let limit = if parts.uri.path() == "/admin/tenants/import" { MAX_IMPORT_FORM_BYTES } else { MAX_FORM_BYTES };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response(),
    };
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    let grpc = grpc.for_request(&parts);
    f(Ctx { grpc, options, parts, fields }).await
}

/// Whether a post comes from this site's own pages (see the module docs).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return site == "same-origin";
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority == host),
        _ => false,
    }
}

/// `303 See Other` to `to` (a path on this site).
fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// How a failed call is answered: the page's status and, when the call may
/// succeed later (a rate limit, the database away), `Retry-After`.
struct Answer {
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
}

impl From<&tonic::Status> for Answer {
    fn from(s: &tonic::Status) -> Self {
        Self { status: http_status(s), retry_after: crate::boundary::retry_after(s) }
    }
}

impl From<StatusCode> for Answer {
    fn from(status: StatusCode) -> Self {
        Self { status, retry_after: None }
    }
}

impl Answer {
    fn apply(self, mut resp: Response) -> Response {
        *resp.status_mut() = self.status;
        if let Some(after) = self.retry_after {
            crate::boundary::set_retry_after(resp.headers_mut(), after);
        }
        resp
    }
}

/// A failed call answered with its message alone (no form to show again).
fn answer_failed(s: &tonic::Status) -> Response {
    Answer::from(s).apply(app::grpc::message(s).into_response())
}

/// The HTTP status a page with this call's errors is answered with.
fn http_status(status: &tonic::Status) -> StatusCode {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Copies the call's `Set-Cookie` (the session cookie) onto `resp`.
fn with_cookie<T>(mut resp: Response, call: &tonic::Response<T>) -> Response {
    for v in call.metadata().get_all("set-cookie").iter() {
        if let Ok(v) = HeaderValue::from_bytes(v.as_encoded_bytes()) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn submitted(form: &str, values: &[(&str, String)], errors: Vec<(String, String)>) -> Submitted {
    Submitted {
        form: form.to_owned(),
        values: values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        errors,
    }
}

async fn login(c: Ctx) -> Response {
    use proto::auth::v1 as pb;
    let (email, password, next) = (c.get("email"), c.get("password"), c.get("next"));
    match AuthServiceClient::new(c.grpc.clone()).login(pb::LoginRequest { email: email.clone(), password }).await {
        Ok(resp) => {
            let role = resp.get_ref().user.as_ref().map(|u| u.role).unwrap_or_default();
            let to = app::pages::login::safe_next(&next, app::pages::login::home_of(role));
            with_cookie(see_other(&to), &resp)
        }
        Err(s) => {
            let errors = vec![(String::new(), app::grpc::message(&s))];
            c.again(submitted("login", &[("email", email), ("next", next)], errors), &s).await
        }
    }
}

async fn logout(c: Ctx) -> Response {
    match AuthServiceClient::new(c.grpc.clone()).logout(proto::auth::v1::LogoutRequest {}).await {
        Ok(resp) => with_cookie(see_other("/login"), &resp),
        Err(s) => answer_failed(&s),
    }
}

async fn signup(c: Ctx) -> Response {
    use proto::tenants::v1 as pb;
    let (company_name, email) = (c.get("company_name"), c.get("email"));
    let req = pb::SignUpRequest { company_name: company_name.clone(), email: email.clone() };
    match TenantServiceClient::new(c.grpc.clone()).sign_up(req).await {
        Ok(_) => see_other("/signup/thanks"),
        Err(s) => {
            let errors = app::grpc::field_errors(&s);
            c.again(submitted("signup", &[("company_name", company_name), ("email", email)], errors), &s).await
        }
    }
}

async fn set_password(c: Ctx) -> Response {
    use proto::auth::v1 as pb;
    let (token, password, again) = (c.get("token"), c.get("password"), c.get("again"));
    if password != again {
        let errors = vec![("again".to_owned(), "the two passwords differ".to_owned())];
        return c.again(submitted("set-password", &[("token", token)], errors), StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    match AuthServiceClient::new(c.grpc.clone())
        .set_password(pb::SetPasswordRequest { token: token.clone(), password })
        .await
    {
        Ok(_) => see_other("/login?password_set=1"),
        Err(s) => {
            let errors = app::grpc::field_errors(&s);
            c.again(submitted("set-password", &[("token", token)], errors), &s).await
        }
    }
}

async fn new_link(c: Ctx) -> Response {
    use proto::auth::v1 as pb;
    let email = c.get("email");
    match AuthServiceClient::new(c.grpc.clone())
        .request_password_link(pb::RequestPasswordLinkRequest { email: email.clone() })
        .await
    {
        Ok(_) => see_other("/set-password/new-link?sent=1"),
        Err(s) => {
            let errors = app::grpc::field_errors(&s);
            c.again(submitted("new-link", &[("email", email)], errors), &s).await
        }
    }
}

async fn create_tenant(c: Ctx) -> Response {
    use proto::tenants::v1 as pb;
    let (name, admin_email) = (c.get("name"), c.get("admin_email"));
    let req = pb::CreateTenantRequest { name: name.clone(), admin_email: admin_email.clone() };
    match TenantServiceClient::new(c.grpc.clone()).create_tenant(req).await {
        Ok(r) => {
            let id = r.into_inner().tenant.map(|t| t.id).unwrap_or_default();
            see_other(&format!("/admin/tenants?created={}", app::pages::encode(&id)))
        }
        Err(s) => {
            let errors = app::grpc::field_errors(&s);
            c.again(submitted("create-tenant", &[("name", name), ("admin_email", admin_email)], errors), &s).await
        }
    }
}

/// The bulk import (see `app::pages::admin_import`): on success to the tenants
/// page showing the batch's progress; otherwise the page again with every bad
/// row and the text as sent.
async fn import_tenants(mut c: Ctx) -> Response {
    use proto::tenants::v1 as pb;
    // The form lives on the tenants page: errors render that page.
    if let Ok(uri) = "/admin/tenants".parse() {
        c.parts.uri = uri;
    }
    let csv = c.get("csv");
    match TenantServiceClient::new(c.grpc.clone()).import_tenants(pb::ImportTenantsRequest { csv: csv.clone() }).await {
        Ok(r) => see_other(&format!("/admin/tenants?import={}", r.into_inner().batch_id)),
        Err(s) => {
            let errors = app::grpc::field_errors(&s);
            c.again(submitted("import-tenants", &[("csv", csv)], errors), &s).await
        }
    }
}

/// Runs one job action through the in-process channel.
async fn job_call(grpc: &InProcess, action: &str, id: i64) -> Result<(), tonic::Status> {
    let req = proto::jobs::v1::JobIdRequest { id };
    let mut c = JobServiceClient::new(grpc.clone());
    match action {
        "trigger" => c.trigger_job(req).await.map(|_| ()),
        "requeue" => c.requeue_job(req).await.map(|_| ()),
        "delete" => c.delete_job(req).await.map(|_| ()),
        other => Err(tonic::Status::invalid_argument(format!("action: {other:?} is not trigger, requeue or delete"))),
    }
}

async fn bulk(c: Ctx) -> Response {
    let state = c.parts.uri.path().trim_start_matches("/hangfire/jobs/").to_owned();
    if app::pages::hangfire::find_state(&state).is_none() {
        return (StatusCode::NOT_FOUND, "No such job list.").into_response();
    }
    let action = c.get("action");
    let ids: Vec<i64> = c.fields.iter().filter(|(k, _)| k == "id").filter_map(|(_, v)| v.parse().ok()).collect();
    if ids.len() > MAX_BULK {
        return (StatusCode::UNPROCESSABLE_ENTITY, format!("id: at most {MAX_BULK} jobs at once")).into_response();
    }
    let mut failed = 0usize;
    for id in &ids {
        if let Err(s) = job_call(&c.grpc, &action, *id).await {
            if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) {
                return answer_failed(&s);
            }
            failed += 1;
        }
    }
    see_other(&format!("/hangfire/jobs/{state}?done={}&failed={failed}", ids.len()))
}

async fn job_action(c: Ctx) -> Response {
    let id = c.parts.uri.path().trim_start_matches("/hangfire/job/").to_owned();
    let Some(id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return (StatusCode::NOT_FOUND, "No such job.").into_response();
    };
    match job_call(&c.grpc, &c.get("action"), id).await {
        Ok(()) => see_other(&format!("/hangfire/job/{id}?done=1")),
        Err(s) => answer_failed(&s),
    }
}

/// Pause, resume or trigger one recurring job (`name`, `action`).
async fn recurring_action(c: Ctx) -> Response {
    let req = proto::jobs::v1::RecurringNameRequest { name: c.get("name") };
    let action = c.get("action");
    let mut client = JobServiceClient::new(c.grpc.clone());
    let job = match action.as_str() {
        "pause" => client.pause_recurring(req).await.map(|_| 0),
        "resume" => client.resume_recurring(req).await.map(|_| 0),
        "trigger" => client.trigger_recurring(req).await.map(|r| r.into_inner().job_id),
        other => Err(tonic::Status::invalid_argument(format!("action: {other:?} is not pause, resume or trigger"))),
    };
    match job {
        Ok(job) => see_other(&format!(
            "/hangfire/recurring?done={}&name={}&job={job}",
            app::pages::encode(&action),
            app::pages::encode(&c.get("name"))
        )),
        Err(s) => answer_failed(&s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_posts() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site"), ("origin", "http://a:1"), ("host", "a:1")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&h(&[("origin", "http://127.0.0.1:3000"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&h(&[("origin", "https://evil.example"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&h(&[("origin", "null"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:3000")])));
    }
}
