//! Who is signed in, known on the server before the first paint and handed to
//! the browser with the page.
//!
//! The server resolves the `session` cookie in a middleware and puts a
//! [`SessionInfo`] into the request's extensions; the shell reads it from there
//! while rendering and also writes it into the page as JSON (`#session-data`),
//! from which the browser reads it before hydrating, so both render the same
//! thing. The cookie itself is HttpOnly and never visible to scripts.

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

/// Server: the session the middleware resolved for this request.
#[cfg(feature = "ssr")]
pub fn from_request() -> Option<SessionInfo> {
    use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<SessionInfo>().cloned())
}

/// The JSON the shell embeds, safe inside `<script>` (no `<` at all).
pub fn to_embedded_json(s: &Option<SessionInfo>) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "null".into()).replace('<', "\\u003c")
}

/// Browser: the session the server embedded in the page.
#[cfg(feature = "hydrate")]
pub fn from_document() -> Option<SessionInfo> {
    let text = document().get_element_by_id("session-data")?.text_content()?;
    serde_json::from_str(&text).ok().flatten()
}
