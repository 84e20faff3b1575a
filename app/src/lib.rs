//! The back office's web app, shared by the server (feature `ssr`: renders HTML)
//! and the browser (feature `hydrate`: takes over that HTML and makes it live).
//!
//! The browser talks to the backend only through the `proto` clients over
//! gRPC-web ([`grpc`]), never through private server functions, so the same
//! contracts serve the app, scripts and grpcurl.
//!
//! # Layout
//! - [`shell`], the HTML document around the app (hydration scripts, styles);
//! - [`App`], the routes and the frame (navigation, toasts);
//! - [`session`]: who is signed in, on both sides;
//! - [`pages`]: one module per page; [`toasts`]: the notification area;
//! - [`grpc`]: the isomorphic `proto` client (gRPC-web in the browser,
//!   in-process while the server renders) and resources built on it.

#![recursion_limit = "256"]

pub mod grpc;
pub mod pages;
pub mod session;
pub mod toasts;

pub use session::SessionInfo;

use leptos::prelude::*;
use leptos_meta::{Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

/// The document the server renders around the app.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
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
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app's routes inside the frame: a skip link, navigation, toasts for
/// signed-in users.
///
/// Pages that load data render with `SsrMode::Async`: the server waits for their
/// resources before it sends the page, so the first paint has the data, and the
/// HTTP status (404 for a job that does not exist) is known before the head is
/// sent.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let session = session::shared();
    provide_context(session::CurrentSession(session.clone()));
    let signed_in = session.is_some();
    view! {
        <Stylesheet id="app" href="/pkg/app.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Back office".to_owned() } else { format!("{page} · Back office") }/>
        <Router>
            <a class="skip-link" href="#main" rel="external">"Skip to main content"</a>
            <pages::Nav/>
            {signed_in.then(|| view! { <toasts::Toasts/> })}
            <main id="main" tabindex="-1">
                <Routes fallback=|| view! { <pages::NotFound/> }>
                    <Route path=path!("/") view=pages::home::HomePage/>
                    <Route path=path!("/login") view=pages::login::LoginPage/>
                    <Route path=path!("/signup") view=pages::signup::SignUpPage/>
                    <Route path=path!("/signup/thanks") view=pages::signup::ThanksPage/>
                    <Route path=path!("/set-password") view=pages::login::SetPasswordPage/>
                    <Route path=path!("/set-password/new-link") view=pages::new_link::NewLinkPage/>
                    <Route path=path!("/app") view=pages::tenant_home::TenantHomePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/tenants") view=pages::admin::TenantsPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/tenants/:id") view=pages::admin::TenantPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/mail") view=pages::mail::MailboxPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/mail/:id") view=pages::mail::MailPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire") view=pages::hangfire::OverviewPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire/jobs/:state") view=pages::hangfire::JobListPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire/job/:id") view=pages::hangfire::JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire/recurring") view=pages::hangfire_recurring::RecurringPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire/batches") view=pages::hangfire_batches::BatchesPage ssr=SsrMode::Async/>
                    <Route path=path!("/hangfire/batches/:id") view=pages::hangfire_batches::BatchPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The browser's entry point: hydrates the server-rendered body.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
    // A marker for tests and tools: the page is interactive from here on.
    if let Some(body) = document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
        if let Some(perf) = window().performance() {
            let _ = body.set_attribute("data-hydrated-ms", &format!("{:.0}", perf.now()));
        }
    }
}
