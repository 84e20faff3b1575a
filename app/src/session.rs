//! Who is signed in, known on the server before the first paint and handed to
//! the browser with the page.
//!
//! The server resolves the `session` cookie once per page request (its page
//! middleware) and puts a [`SessionInfo`] into the request's extensions. The app
//! reads it there while rendering, inside a Leptos `SharedValue`: the value is
//! serialized into the page by the framework, like every resource's data, and the
//! browser reads it back during hydration, so both sides render the same frame.
//! (A resource calling `AuthService.Me` would cost a second session lookup per
//! page for the same answer, and would put the whole frame behind a `Suspense`.)
//! The cookie itself is HttpOnly and never visible to scripts.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The signed-in user, as pages need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Email (the username).
    pub email: String,
    /// `super_admin` or `tenant_admin`.
    pub role: String,
    /// A tenant admin's tenant.
    pub tenant_id: Option<String>,
}

impl SessionInfo {
    /// Operates the platform.
    pub fn is_super_admin(&self) -> bool {
        self.role == "super_admin"
    }
}

/// The session of the page being rendered, in context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSession(pub Option<SessionInfo>);

/// The signed-in user, if any.
pub fn use_session() -> Option<SessionInfo> {
    use_context::<CurrentSession>().and_then(|s| s.0)
}

/// The session of this render: from the request on the server, from the page's
/// serialized data in the browser (see the module docs). Call once, at the top
/// of the app, so both sides agree on the order of serialized values.
pub fn shared() -> Option<SessionInfo> {
    SharedValue::new(from_request).into_inner()
}

/// Server: the session the middleware resolved for this request.
#[cfg(feature = "ssr")]
fn from_request() -> Option<SessionInfo> {
    use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<SessionInfo>().cloned())
}

/// Browser outside hydration (never reached: the app is only hydrated).
#[cfg(not(feature = "ssr"))]
fn from_request() -> Option<SessionInfo> {
    None
}
