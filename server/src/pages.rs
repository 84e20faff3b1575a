//! What the server does around the web app's pages: it hands the caller that
//! [`crate::caller::layer`] resolved to the app (request extensions, read by
//! `app::session`), so the first paint already knows who is signed in; it sends
//! anonymous visitors of signed-in-only pages to `/login?next=…` before anything
//! renders; and when the session could not be checked (the database is away) it
//! answers 503 rather than render the page as if the visitor had signed out. Role checks (403) are the pages' own,
//! and every RPC behind them checks again.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backoffice::identity::Role;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::caller::Caller;

/// Paths that need a signed-in user.
fn needs_sign_in(path: &str) -> bool {
    ["/admin", "/hangfire", "/app"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// What `next=` escapes: everything but unreserved characters (RFC 3986) and
/// `/`, so the path stays readable and its query cannot leak into ours.
const NEXT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The middleware (see the module docs). It reads the caller that
/// [`crate::caller::layer`] resolved; it never queries the database itself.
pub async fn session_layer(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/pkg/") || path == "/favicon.svg" {
        return next.run(req).await;
    }
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or(Caller::Anonymous);
    match caller {
        Caller::SignedIn(s) => {
            let u = s.user;
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
        // The visitor's session could not be checked: rendering the page as
        // anonymous would look like a sign-out, so say what happened instead.
        Caller::Unchecked(_, failure) => {
            let mut resp = (failure.http_status(), failure.message).into_response();
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some(after) = failure.retry_after {
                crate::boundary::set_retry_after(resp.headers_mut(), after);
            }
            return resp;
        }
        Caller::Anonymous | Caller::Ended(_) if needs_sign_in(&path) => {
            let target = req.uri().path_and_query().map_or(path.clone(), |p| p.as_str().to_owned());
            let location = format!("/login?next={}", utf8_percent_encode(&target, NEXT));
            let mut resp = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
        Caller::Anonymous | Caller::Ended(_) => {}
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
        let encode = |s: &str| utf8_percent_encode(s, NEXT).to_string();
        assert_eq!(encode("/hangfire/jobs/dead?x=1&y=a b"), "/hangfire/jobs/dead%3Fx%3D1%26y%3Da%20b");
        assert_eq!(encode("/app/ü"), "/app/%C3%BC");
    }
}
