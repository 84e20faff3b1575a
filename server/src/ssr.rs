//! The in-process `proto` channel pages use while the server renders them.
//!
//! The app loads its data through the same gRPC contracts in both places
//! (`app::grpc`): gRPC-web from the browser, and here the server's own gRPC
//! router called as a `tower::Service`, with the page request's cookie
//! forwarded. So the first paint has the data, each call passes the same guard,
//! validation and error mapping as a script's, and nothing is implemented twice.

use std::convert::Infallible;

use app::grpc::InProcess;
use axum::Router;
use axum::http;
use leptos::nonce::use_nonce;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::ResponseOptions;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The gRPC router (`grpc`, the services as mounted for the network) as the
/// channel pages render with.
pub fn in_process(grpc: Router) -> InProcess {
    type Req = http::Request<tonic::body::Body>;
    let svc = ServiceExt::<Req>::map_response(grpc, |r: axum::response::Response| r.map(tonic::body::Body::new));
    let svc = ServiceExt::<Req>::map_err(svc, |e: Infallible| -> tower::BoxError { match e {} });
    InProcess::new(BoxCloneSyncService::new(svc))
}

/// What every page render gets in its context: the channel, and its
/// Content-Security-Policy naming its nonce.
pub fn context(channel: InProcess) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        provide_context(channel.clone());
        allow_page_scripts();
    }
}

/// Sets the page being rendered's Content-Security-Policy to [`crate::page_csp`]
/// with the nonce Leptos made for it (in the render's context, with the response
/// options, before the page renders), so that its own inline scripts run.
fn allow_page_scripts() {
    let (Some(nonce), Some(response)) = (use_nonce(), use_context::<ResponseOptions>()) else { return };
    if let Ok(value) = http::HeaderValue::from_str(&crate::page_csp(&nonce)) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}
