//! What the server does around the web app's pages: it resolves the `session`
//! cookie once per page request and hands the user to the app (request
//! extensions, read by `app::session`), so the first paint already knows who is
//! signed in; and it sends anonymous visitors of signed-in-only pages to
//! `/login?next=…` before anything renders. Role checks (403) are the pages' own,
//! and every RPC behind them checks again.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backoffice::identity::{Identity, Role};

/// Paths that need a signed-in user.
fn needs_sign_in(path: &str) -> bool {
    ["/admin", "/hangfire", "/app"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The middleware (see the module docs).
pub async fn session_layer(State(identity): State<Identity>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/pkg/") || path == "/favicon.svg" {
        return next.run(req).await;
    }
    let metadata = tonic::metadata::MetadataMap::from_headers(req.headers().clone());
    let user = match crate::guard::session_token(&metadata) {
        Some(token) => identity.authenticate(&token).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "resolving a page's session");
            None
        }),
        None => None,
    };
    match user {
        Some(u) => {
            req.extensions_mut().insert(app::SessionInfo {
                email: u.email,
                role: match u.role {
                    Role::SuperAdmin => "super_admin",
                    Role::TenantAdmin => "tenant_admin",
                }
                .to_owned(),
                tenant_id: u.tenant_id,
            });
        }
        None if needs_sign_in(&path) => {
            let target = req.uri().path_and_query().map_or(path.clone(), |p| p.as_str().to_owned());
            let location = format!("/login?next={}", encode(&target));
            let mut resp = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
        None => {}
    }
    let mut resp = next.run(req).await;
    // Pages depend on the session: never cache them in shared caches.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_need_sign_in() {
        for p in ["/admin/tenants", "/hangfire", "/hangfire/jobs/dead", "/app"] {
            assert!(needs_sign_in(p), "{p}");
        }
        for p in ["/", "/login", "/signup", "/signup/thanks", "/set-password", "/apple", "/hangfires"] {
            assert!(!needs_sign_in(p), "{p}");
        }
        assert_eq!(encode("/hangfire/jobs/dead?x=1&y=a b"), "/hangfire/jobs/dead%3Fx%3D1%26y%3Da%20b");
    }
}
