//! The app's one way to the backend: the `proto` clients over a [`Channel`] that
//! is isomorphic.
//!
//! - In the browser (`hydrate`) the channel is gRPC-web to the page's own origin
//!   (`tonic-web-wasm-client`); the session cookie rides along (same origin) and
//!   the server's `Set-Cookie` on `Login` is honoured by the browser.
//! - While the server renders a page (`ssr`) the channel is [`InProcess`]: the
//!   server's own gRPC router called as a `tower::Service`, with the page
//!   request's cookie forwarded, so a page's first paint already has its data and
//!   goes through exactly the guards, validation and error mapping scripts get.
//!   No HTTP hop, no second implementation of anything.
//!
//! Pages load data through [`resource`]: a Leptos resource whose value is
//! computed during server rendering, serialized into the page as protobuf
//! ([`ProtoCodec`]), and read back during hydration instead of being fetched
//! again. Later changes of its source (route parameters, a refresh tick) fetch
//! in the browser.

use std::future::Future;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub use in_process::InProcess;

/// The transport the `proto` clients run over on this side.
#[cfg(feature = "ssr")]
pub type Channel = InProcess;
/// The transport the `proto` clients run over on this side.
#[cfg(not(feature = "ssr"))]
pub type Channel = tonic_web_wasm_client::Client;

/// A channel to the backend for the page being rendered (server) or shown
/// (browser).
#[cfg(not(feature = "ssr"))]
pub fn channel() -> Channel {
    let origin = window().location().origin().unwrap_or_default();
    tonic_web_wasm_client::Client::new(origin)
}

/// A channel to the backend for the page being rendered (server) or shown
/// (browser).
#[cfg(feature = "ssr")]
pub fn channel() -> Channel {
    let base = use_context::<InProcess>().unwrap_or_else(InProcess::unavailable);
    match use_context::<http::request::Parts>() {
        Some(parts) => base.for_request(&parts),
        None => base,
    }
}

/// `Send` where the future must cross threads (the server); nothing in the
/// browser, whose futures hold JavaScript values and never leave its one thread.
#[cfg(feature = "ssr")]
pub trait MaybeSend: Send {}
#[cfg(feature = "ssr")]
impl<T: Send> MaybeSend for T {}
/// `Send` where the future must cross threads (the server); nothing in the
/// browser, whose futures hold JavaScript values and never leave its one thread.
#[cfg(not(feature = "ssr"))]
pub trait MaybeSend {}
#[cfg(not(feature = "ssr"))]
impl<T> MaybeSend for T {}

/// Makes a future `Send` for Leptos' resources. On the server it already is; in
/// the browser (one thread) a `SendWrapper` is sound: it is never polled
/// elsewhere.
#[cfg(feature = "ssr")]
pub fn sendable<F: Future + MaybeSend + 'static>(f: F) -> impl Future<Output = F::Output> + Send + 'static {
    f
}
/// Makes a future `Send` for Leptos' resources. On the server it already is; in
/// the browser (one thread) a `SendWrapper` is sound: it is never polled
/// elsewhere.
#[cfg(not(feature = "ssr"))]
pub fn sendable<F: Future + MaybeSend + 'static>(f: F) -> impl Future<Output = F::Output> + Send + 'static {
    send_wrapper::SendWrapper::new(f)
}

/// A failed call as a page shows it. Serializable, so an error met during server
/// rendering hydrates as the same error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// The gRPC status code (`tonic::Code as i32`).
    pub code: i32,
    /// For a person.
    pub message: String,
    /// `(field, problem)` pairs; a general problem has the field `""`.
    pub fields: Vec<(String, String)>,
}

impl CallError {
    /// The record of the job, tenant or email was not found.
    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound as i32 || self.code == tonic::Code::InvalidArgument as i32
    }
}

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        Self { code: s.code() as i32, message: message(&s), fields: field_errors(&s) }
    }
}

/// What a page loaded: the response, or why not.
pub type Loaded<T> = Result<T, CallError>;

/// Serializes a [`Loaded`] protobuf message into the page: one tag byte (0: the
/// message's protobuf bytes follow, 1: a [`CallError`] as JSON), base64 in the
/// HTML (Leptos does that for byte encodings). Protobuf because the messages
/// already have it; no serde derive on generated code needed.
#[derive(Debug, Clone, Copy)]
pub struct ProtoCodec;

impl<T: prost::Message> codee::Encoder<Loaded<T>> for ProtoCodec {
    type Error = serde_json::Error;
    type Encoded = Vec<u8>;

    fn encode(val: &Loaded<T>) -> Result<Vec<u8>, Self::Error> {
        Ok(match val {
            Ok(m) => {
                let mut out = vec![0u8];
                out.extend(m.encode_to_vec());
                out
            }
            Err(e) => {
                let mut out = vec![1u8];
                out.extend(serde_json::to_vec(e)?);
                out
            }
        })
    }
}

impl<T: prost::Message + Default> codee::Decoder<Loaded<T>> for ProtoCodec {
    type Error = String;
    type Encoded = [u8];

    fn decode(val: &[u8]) -> Result<Loaded<T>, Self::Error> {
        match val.split_first() {
            Some((0, rest)) => T::decode(rest).map(Ok).map_err(|e| e.to_string()),
            Some((1, rest)) => serde_json::from_slice(rest).map(Err).map_err(|e| e.to_string()),
            _ => Err("not a serialized call result".into()),
        }
    }
}

/// A resource loading one `proto` call: during server rendering through
/// [`InProcess`], hydrated from the page, fetched again in the browser when
/// `source` changes. `call` gets a fresh channel and the source value.
pub fn resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    call: impl Fn(Channel, S) -> Fut + Send + Sync + 'static,
) -> Resource<Loaded<T>, ProtoCodec>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: prost::Message + Default + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + MaybeSend + 'static,
{
    Resource::new_with_options(
        source,
        move |s| {
            let fut = call(channel(), s);
            sendable(async move { fut.await.map(tonic::Response::into_inner).map_err(CallError::from) })
        },
        false,
    )
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

/// Per-field messages of an `INVALID_ARGUMENT` / `ALREADY_EXISTS` status; anything
/// else is a general message under `""`.
///
/// Reads the standard `google.rpc.BadRequest` details when the server sends them
/// (`tonic-types`); otherwise falls back to the message's `field: problem;
/// field: problem` form, which is what servers without details send.
pub fn field_errors(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    if !matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) {
        return vec![(String::new(), message(status))];
    }
    if let Some(bad) = status.get_details_bad_request()
        && !bad.field_violations.is_empty()
    {
        return bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect();
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

/// Runs `fut` in the browser's event loop (on the server: on the current task's
/// executor; nothing on the server calls it outside rendering).
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    leptos::task::spawn_local(fut);
}

/// Runs `fut` in the browser until it ends or the reactive owner that started
/// it is cleaned up (the page or component is gone), whichever comes first. A
/// page's streams close with the page: without TLS the browser allows only six
/// connections per origin, and a stream left open by a page already left would
/// hold one.
pub fn spawn_scoped(fut: impl Future<Output = ()> + 'static) {
    let (handle, registration) = futures::future::AbortHandle::new_pair();
    on_cleanup(move || handle.abort());
    spawn(async move {
        let _ = futures::future::Abortable::new(fut, registration).await;
    });
}

/// Waits `ms` milliseconds (browser timers).
#[cfg(not(feature = "ssr"))]
pub async fn sleep_ms(ms: i32) {
    let promise = leptos::web_sys::js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Waits `ms` milliseconds (only the browser waits; the server never calls it).
#[cfg(feature = "ssr")]
pub async fn sleep_ms(_ms: i32) {}

/// Goes to `path` with a full page load (so the server renders it with the new
/// session).
pub fn go(path: &str) {
    let _ = window().location().assign(path);
}

#[cfg(feature = "ssr")]
mod in_process {
    //! The server's gRPC router as the SSR channel.

    use std::task::{Context, Poll};

    use http::header::{COOKIE, HeaderName};
    use tower::BoxError;
    use tower::util::BoxCloneSyncService;

    type Svc = BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, BoxError>;

    /// Request headers a page request passes on to its in-process calls: who is
    /// signed in, and whether the visitor came over TLS (the `Login` cookie's
    /// `Secure` flag depends on it).
    const FORWARDED: [HeaderName; 2] = [COOKIE, HeaderName::from_static("x-forwarded-proto")];

    /// The server's gRPC services as one `tower::Service`, called without a
    /// network hop; built by the server and put into each page render's context.
    #[derive(Clone)]
    pub struct InProcess {
        svc: Svc,
        headers: http::HeaderMap,
        extensions: http::Extensions,
    }

    impl std::fmt::Debug for InProcess {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("InProcess").finish_non_exhaustive()
        }
    }

    impl InProcess {
        /// Wraps the server's gRPC router (or any service answering gRPC).
        pub fn new(svc: Svc) -> Self {
            Self { svc, headers: http::HeaderMap::new(), extensions: http::Extensions::new() }
        }

        /// A channel whose every call fails `UNAVAILABLE`: what a render gets
        /// when the server provided none (never in the real server).
        pub fn unavailable() -> Self {
            Self::new(BoxCloneSyncService::new(tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
                Ok::<_, BoxError>(tonic::Status::unavailable("no in-process channel").into_http())
            })))
        }

        /// The same channel acting for the request `parts`: its cookie and
        /// forwarding headers, and its extensions (the client's address, which
        /// the sign-up limits read).
        pub fn for_request(&self, parts: &http::request::Parts) -> Self {
            let mut headers = http::HeaderMap::new();
            for name in FORWARDED {
                for v in parts.headers.get_all(&name) {
                    headers.append(name.clone(), v.clone());
                }
            }
            Self { svc: self.svc.clone(), headers, extensions: parts.extensions.clone() }
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for InProcess {
        type Response = http::Response<tonic::body::Body>;
        type Error = BoxError;
        type Future = <Svc as tower::Service<http::Request<tonic::body::Body>>>::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.svc.poll_ready(cx)
        }

        fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
            // gRPC proper is HTTP/2; the gRPC-web layer in front of the services
            // refuses plain gRPC over anything else.
            *req.version_mut() = http::Version::HTTP_2;
            for (name, value) in &self.headers {
                req.headers_mut().append(name.clone(), value.clone());
            }
            req.extensions_mut().extend(self.extensions.clone());
            self.svc.call(req)
        }
    }
}
