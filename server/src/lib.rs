//! The back office's server: one axum router on one port serving the Leptos app
//! (SSR + hydration), every gRPC service (plain gRPC for grpcurl and scripts,
//! gRPC-web for the browser, with server reflection), and `/metrics`.
//!
//! `main` is thin: it reads [`config::Config`], opens the job store, binds, and
//! calls [`run`] with a shutdown token, so tests start the real server on port 0
//! with a token of their own.
//!
//! # Layout
//! - [`api`]: the JSON facade for curl users (`/api/...`);
//! - [`boundary`]: the one table from errors to gRPC codes and HTTP statuses;
//! - [`caller`]: the layer that resolves cookie or bearer into the caller, for
//!   pages, gRPC and the JSON facade alike, and the role check;
//! - [`config`]: settings from flags and the environment (clap);
//! - [`hub`]: fans notifications out to open streams;
//! - [`grpc`]: the gRPC services;
//! - [`metrics`]: Prometheus text at `/metrics`;
//! - [`pages`]: the session around page requests (who is signed in, sign-in redirects);
//! - [`ratelimit`]: sign-up limits per client network, per source and per server;
//! - [`serve`]: the accept loop with header and keep-alive timeouts;
//! - [`ssr`]: the in-process `proto` channel pages render with;
//! - [`forms`]: the app's forms as plain POSTs (no JavaScript needed);
//! - [`mailbox`]: the built-in mailbox (`mail.v1`) for the file transport.

pub mod api;
pub mod boundary;
pub mod caller;
pub mod client;
pub mod config;
pub mod forms;
pub mod grpc;
pub mod hub;
pub mod mailbox;
pub mod metrics;
pub mod pages;
pub mod ratelimit;
pub mod serve;
pub mod ssr;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use app::{App, shell};
use axum::Router;
use axum::routing::get;
use jobengine::{Jobs, Worker};
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use proto::auth::v1::auth_service_server::AuthServiceServer;
use proto::jobs::v1::job_service_server::JobServiceServer;
use proto::notifications::v1::notification_service_server::NotificationServiceServer;
use proto::tenants::v1::tenant_service_server::TenantServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_web::GrpcWebLayer;
use tower::ServiceBuilder;

use crate::config::{Config, WorkerMode};

/// Largest gRPC request accepted, on every service.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most password hashes computed at once (9 MiB each): the bound on login floods.
pub const MAX_HASH_PERMITS: usize = 4;

/// Password hashes computed at once: one per core, at most [`MAX_HASH_PERMITS`].
///
/// A hash is pure CPU and memory bandwidth, so more at once than cores only adds
/// blocks and cache thrash: on 2 cores, 4 permits peaked at 106 MiB and 2 at 65 MiB
/// over bursts of 50 sign-ins, with the same p99 (`benches/login.rs`; hashes of
/// 19 MiB then, 9 MiB since).
pub fn hash_permits() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(MAX_HASH_PERMITS)
}

/// What the server serves: the job engine, the jobs' environment, identity.
#[derive(Clone)]
pub struct Backend {
    /// The job engine.
    pub jobs: Jobs,
    /// What jobs run with (the control plane, tenant databases).
    pub env: Arc<backoffice::env::Env>,
    /// Users and sessions.
    pub identity: backoffice::identity::Identity,
    /// Open notification streams.
    pub hub: Arc<hub::Hub>,
}

impl Backend {
    /// Opens the control plane named by `config` (migrating it).
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let (jobs, env) = backoffice::open(
            &config.database_url,
            config.data_dir.clone(),
            config.mail.clone(),
            config.provision_fault.clone(),
        )
        .await?;
        let hasher = backoffice::password::Hasher::new(hash_permits()).context("preparing password hashing")?;
        let identity = backoffice::identity::Identity::new(jobs.db().clone(), hasher, jobs.clock().clone());
        Ok(Self { jobs, env, identity, hub: Arc::default() })
    }
}

/// Builds the router: pages, gRPC services, `/metrics`.
///
/// # Errors
/// The reflection service cannot read the compiled descriptors (a build bug).
pub fn router(
    backend: &Backend,
    config: &Config,
    leptos_options: LeptosOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    let jobs = backend.jobs.clone();
    let mailbox_svc = proto::mail::v1::mailbox_service_server::MailboxServiceServer::new(mailbox::MailboxGrpc::new(
        &backend.env.mail.transport,
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let jobs_svc = JobServiceServer::new(grpc::jobs::JobsGrpc::new(jobs.clone(), shutdown.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let link_limits = Arc::new(ratelimit::Limiter::new(
        grpc::auth::LINKS_PER_IP_PER_HOUR,
        Duration::from_secs(3600),
        grpc::auth::LINKS_PER_MINUTE,
        Duration::from_secs(60),
    ));
    tokio::spawn(link_limits.clone().forget_idle_every(Duration::from_secs(60), shutdown.clone()));
    let links = backoffice::password_link::PasswordLinks::new(jobs.clone(), backend.env.mail.letters.clone());
    let auth_svc =
        AuthServiceServer::new(grpc::auth::AuthGrpc::new(backend.identity.clone(), config.https(), links, link_limits))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
    let tenants = backoffice::tenants::Tenants::new(jobs.clone(), backend.env.mail.letters.clone());
    let signups = Arc::new(ratelimit::Limiter::new(
        config.signup_per_ip_per_hour,
        Duration::from_secs(3600),
        config.signup_per_minute,
        Duration::from_secs(60),
    ));
    // Clients whose budget has refilled are forgotten, so the table stays small.
    tokio::spawn(signups.clone().forget_idle_every(Duration::from_secs(60), shutdown.clone()));
    let api = api::router(api::Api { tenants: tenants.clone(), signups: signups.clone() });
    let tenants_svc = TenantServiceServer::new(grpc::tenants::TenantsGrpc::new(
        tenants,
        signups,
        shutdown.clone(),
        backend.env.tenant_dbs.clone(),
        backend.identity.clone(),
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let notifications_svc = NotificationServiceServer::new(grpc::notifications::NotificationsGrpc::new(
        backend.identity.clone(),
        backoffice::notify::Notifications::new(jobs.db().clone()),
        backend.hub.clone(),
        jobs.clock().clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    // Reflection also describes `google.rpc`'s error details (`BadRequest`,
    // `RetryInfo`), so grpcurl prints them rather than their raw bytes.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection (v1)")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?;
    // Each service gets its own path and the gRPC-web translation; mounting them one
    // by one (rather than merging tonic's own router, which brings a fallback of its
    // own) keeps the Leptos fallback the only one.
    let grpc = Router::new()
        .route_service(
            "/jobs.v1.JobService/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(jobs_svc),
        )
        .route_service(
            "/auth.v1.AuthService/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(auth_svc),
        )
        .route_service(
            "/tenants.v1.TenantService/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(tenants_svc),
        )
        .route_service(
            "/notifications.v1.NotificationService/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(notifications_svc),
        )
        .route_service(
            "/mail.v1.MailboxService/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(mailbox_svc),
        )
        .route_service(
            "/grpc.reflection.v1.ServerReflection/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(reflection_v1),
        )
        .route_service(
            "/grpc.reflection.v1alpha.ServerReflection/{*rest}",
            ServiceBuilder::new().layer(GrpcWebLayer::new()).service(reflection_v1alpha),
        );
    let metrics = Router::new().route("/metrics", get(metrics::handler)).with_state(jobs).layer(
        axum::middleware::from_fn_with_state(metrics::Access::new(config.metrics_token.as_deref()), metrics::guard),
    );
    let routes = generate_route_list(App);
    // In-process calls pass the same caller layer as calls over the network.
    let in_process = ssr::in_process(
        grpc.clone().layer(axum::middleware::from_fn_with_state(backend.identity.clone(), caller::layer)),
    );
    let site = Router::new()
        .leptos_routes_with_context(&leptos_options, routes, ssr::context(in_process.clone()), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .merge(forms::router(in_process.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context(ssr::context(in_process), shell))
        .with_state(leptos_options)
        .layer(axum::middleware::from_fn(pages::session_layer))
        // A gRPC call to a service or method not mounted above lands here: answer
        // it in gRPC (UNIMPLEMENTED), not with an HTML page.
        .layer(axum::middleware::from_fn(unknown_grpc))
        // Pages and the wasm bundle travel gzipped (the gRPC routes are not
        // wrapped: their streams must not be buffered by a compressor).
        .layer(tower_http::compression::CompressionLayer::new());
    // Outermost: the client's address and who is calling, resolved once for
    // pages, gRPC and the facade; and the browser's security headers on every
    // answer.
    Ok(security_headers(
        site.merge(grpc)
            .merge(metrics)
            .merge(api)
            .layer(axum::middleware::from_fn_with_state(backend.identity.clone(), caller::layer))
            .layer(axum::middleware::from_fn_with_state(config.trusted_proxies.clone(), client::layer)),
    ))
}

/// The Content-Security-Policy of every answer but a page's. Scripts: our own
/// bundle and its WebAssembly (`'wasm-unsafe-eval'` lets the browser compile
/// it), no inline script. Everything else only from this origin; no plugins, no
/// `<base>`, forms post here only, and no framing by any site (clickjacking).
/// A page also runs the inline scripts Leptos writes into it (the start of
/// hydration, the data loaded on the server), which carry a nonce made for that
/// answer (leptos_axum's `nonce` feature): its policy is [`page_csp`], set while
/// it renders (in [`ssr::context`]).
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// [`CSP`] for a page whose inline scripts carry `nonce`: those run, and no
/// other inline script (one injected into the page has no nonce).
pub fn page_csp(nonce: &str) -> String {
    CSP.replacen("script-src 'self'", &format!("script-src 'self' 'nonce-{nonce}'"), 1)
}

/// `router`'s answers with the browser's security headers, unless a handler set
/// its own: the CSP above; `X-Frame-Options: DENY` (what `frame-ancestors` says,
/// for older browsers); `nosniff` (a download is never run as a script);
/// `Referrer-Policy: no-referrer` (set-password links carry a token in the
/// URL, which must not leak to another site).
fn security_headers(router: Router) -> Router {
    use axum::http::{HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    let set = |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    router
        .layer(set(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}

/// Answers a gRPC or gRPC-web request that reached the pages (no such service
/// or method) with `UNIMPLEMENTED` and `grpc-status`, as gRPC clients expect;
/// anything else goes on to the pages.
async fn unknown_grpc(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/grpc") {
        return next.run(req).await;
    }
    let web = content_type.starts_with("application/grpc-web").then(|| content_type.to_owned());
    let status = tonic::Status::unimplemented(format!("no such gRPC method: {}", req.uri().path()));
    let mut resp = status.into_http::<axum::body::Body>();
    if let Some(ct) = web.and_then(|ct| axum::http::HeaderValue::from_str(&ct).ok()) {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

/// Serves on `listener` until `shutdown` fires, running an embedded worker when
/// configured; then drains connections and stops the worker gracefully.
///
/// # Errors
/// The router could not be built, the worker could not start, or serving failed.
pub async fn run(
    listener: TcpListener,
    config: &Config,
    backend: Backend,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the bound address")?;
    if let Some(warning) = config.plain_http_warning(addr) {
        tracing::warn!("{warning}");
    }
    let leptos_options = LeptosOptions::builder()
        .output_name("app")
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let worker = match config.worker {
        WorkerMode::Embedded => {
            let mut cfg = config.worker_config.clone();
            // Housekeeping goes together: with retention off, no pruning either.
            if cfg.retention.is_some() {
                cfg.recurring.extend(backoffice::recurring());
            }
            let w = Worker::new(&backend.jobs, backoffice::registry(), backend.env.clone(), cfg);
            let token = shutdown.clone();
            Some(tokio::spawn(async move {
                // Said when it happens, not only at shutdown: until then this
                // process serves but runs no jobs.
                let ended = w.run(token).await;
                if let Err(e) = &ended {
                    tracing::error!(error = %e, "the embedded worker stopped: this server runs no jobs");
                }
                ended
            }))
        }
        WorkerMode::Off => None,
    };
    tokio::spawn(hub::run_sources(
        backend.hub.clone(),
        backend.jobs.db().clone(),
        backend.jobs.clock().clone(),
        shutdown.clone(),
    ));
    let app = router(&backend, config, leptos_options, shutdown.clone())?;
    // Each request carries its client's address (per-address limits); slow and
    // silent connections are closed (see `serve`).
    serve::serve(listener, app, config.timeouts, shutdown.clone()).await;
    if let Some(w) = worker {
        match w.await {
            Ok(ended) => ended.context("embedded worker failed")?,
            // The runtime is going away under us (a test's end): nothing failed.
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e).context("embedded worker panicked"),
        }
    }
    Ok(())
}
