//! The back office's web app, shared by the server (feature `ssr`: renders HTML)
//! and the browser (feature `hydrate`: takes over that HTML and makes it live).
//!
//! The browser talks to the backend only through the `proto` clients over
//! gRPC-web ([`grpc`]), never through private server functions, so the same
//! contracts serve the app, scripts and grpcurl.
//!
//! # Layout
//! - [`shell`], the HTML document around the app (hydration scripts, styles, the
//!   session handed to the browser);
//! - [`App`], the routes and the frame (navigation, toasts);
//! - [`session`]: who is signed in, on both sides;
//! - [`pages`]: one module per page; [`toasts`]: the notification area;
//! - [`grpc`]: the browser's gRPC-web client.

#![recursion_limit = "256"]

pub mod grpc;
pub mod pages;
pub mod session;
pub mod toasts;

pub use session::SessionInfo;

use leptos::prelude::*;
use leptos_meta::{Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The document the server renders around the app.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    let session = session::from_request();
    let embedded = session::to_embedded_json(&session);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
                <script id="session-data" type="application/json" inner_html=embedded></script>
            </head>
            <body>
                <App session/>
            </body>
        </html>
    }
}

/// The app's routes inside the frame: navigation, toasts for signed-in users.
#[component]
pub fn App(
    /// Who is signed in (from the server's middleware, or the page's JSON).
    session: Option<SessionInfo>,
) -> impl IntoView {
    provide_meta_context();
    provide_context(session::CurrentSession(session.clone()));
    let signed_in = session.is_some();
    view! {
        <Stylesheet id="app" href="/pkg/app.css"/>
        <Title text="Back office"/>
        <Router>
            <pages::Nav/>
            <main>
                <Routes fallback=|| view! { <pages::NotFound/> }>
                    <Route path=path!("/") view=pages::home::HomePage/>
                    <Route path=path!("/login") view=pages::login::LoginPage/>
                    <Route path=path!("/signup") view=pages::signup::SignUpPage/>
                    <Route path=path!("/signup/thanks") view=pages::signup::ThanksPage/>
                    <Route path=path!("/set-password") view=pages::login::SetPasswordPage/>
                    <Route path=path!("/app") view=pages::tenant_home::TenantHomePage/>
                    <Route path=path!("/admin/tenants") view=pages::admin::TenantsPage/>
                    <Route path=path!("/admin/tenants/:id") view=pages::admin::TenantPage/>
                    <Route path=path!("/hangfire") view=pages::hangfire::OverviewPage/>
                    <Route path=path!("/hangfire/jobs/:state") view=pages::hangfire::JobListPage/>
                    <Route path=path!("/hangfire/job/:id") view=pages::hangfire::JobPage/>
                </Routes>
            </main>
            <Show when=move || signed_in>
                <toasts::Toasts/>
            </Show>
        </Router>
    }
}

/// The browser's entry point: hydrates the server-rendered body.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    let session = session::from_document();
    leptos::mount::hydrate_body(move || view! { <App session=session.clone()/> });
    // A marker for tests and tools: the page is interactive from here on.
    if let Some(body) = document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
        if let Some(perf) = window().performance() {
            let _ = body.set_attribute("data-hydrated-ms", &format!("{:.0}", perf.now()));
        }
    }
}
