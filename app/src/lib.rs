//! The back office's web app, shared by the server (feature `ssr`: renders HTML)
//! and the browser (feature `hydrate`: takes over that HTML and makes it live).
//!
//! The browser talks to the backend only through the `proto` clients over
//! gRPC-web ([`grpc`]), never through private server functions, so the same
//! contracts serve the app, scripts and grpcurl.
//!
//! # Layout
//! - [`shell`], the HTML document around the app (hydration scripts, styles);
//! - [`App`], the routes;
//! - [`pages`]: one module per page;
//! - [`grpc`]: the browser's gRPC-web client.

pub mod grpc;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
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

/// The app's routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="app" href="/pkg/app.css"/>
        <Title text="Back office"/>
        <Router>
            <main>
                <Routes fallback=|| view! { <pages::NotFound/> }>
                    <Route path=path!("/") view=pages::home::HomePage/>
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
}
