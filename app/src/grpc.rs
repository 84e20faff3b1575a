//! The browser's gRPC-web client: every call the app makes goes through the same
//! `proto` contracts scripts and grpcurl use. The session cookie rides along
//! (same origin); the server's `Set-Cookie` on `Login` is honoured by the browser.
//!
//! These run only in the browser (event handlers and effects); on the server the
//! pages render without calling them.

use std::future::Future;

use tonic_web_wasm_client::Client;

/// A gRPC-web channel to the page's own origin.
pub fn channel() -> Client {
    let origin = leptos::prelude::window().location().origin().unwrap_or_default();
    Client::new(origin)
}

/// The message of a failed call, for a person.
pub fn message(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown if status.message().is_empty() => {
            "the server cannot be reached; try again".to_owned()
        }
        _ => status.message().to_owned(),
    }
}

/// Splits an `INVALID_ARGUMENT` message (`field: problem; field: problem`) into
/// per-field messages; anything else is a general message under `""`.
pub fn field_errors(status: &tonic::Status) -> Vec<(String, String)> {
    if !matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) {
        return vec![(String::new(), message(status))];
    }
    status
        .message()
        .split("; ")
        .map(|part| match part.split_once(": ") {
            Some((field, msg)) if !field.contains(' ') => (field.to_owned(), msg.to_owned()),
            _ => (String::new(), part.to_owned()),
        })
        .collect()
}

/// Runs `fut` in the browser's event loop.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    leptos::task::spawn_local(fut);
}

/// Waits `ms` milliseconds (browser timers).
pub async fn sleep_ms(ms: i32) {
    let promise = leptos::web_sys::js_sys::Promise::new(&mut |resolve, _| {
        let _ = leptos::prelude::window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Goes to `path` with a full page load (so the server renders it with the new
/// session).
pub fn go(path: &str) {
    let _ = leptos::prelude::window().location().assign(path);
}
