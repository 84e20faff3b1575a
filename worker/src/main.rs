//! The job runner as a process of its own: `DATABASE_URL=... worker`.
//!
//! Runs the same [`jobengine::Worker`] the server embeds; start as many as you like
//! against one PostgreSQL database. `worker --help` lists every setting (each a
//! flag and an environment variable: the database, the data folder, email, the
//! `WORKER_*` / `JOB_*` engine settings). SIGTERM or SIGINT: stop fetching, let
//! running jobs finish within the grace period, release the rest.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::{Parser, Subcommand};
use jobengine::{Jobs, Worker};
use settings::{DatabaseArgs, MailArgs, ProvisionArgs, Show, WorkerArgs};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Runs the back office's jobs (tenant provisioning, email) from the control-plane
/// database, beside or instead of the server's embedded worker.
///
/// Every setting is a flag and an environment variable (the flag wins).
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Settings {
    /// What to do; without one, run jobs.
    #[command(subcommand)]
    command: Option<Command>,

    /// Where to serve Prometheus metrics at `/metrics` (this process's counters and
    /// the cluster's jobs by state), e.g. `127.0.0.1:9101`; port 0 picks a free one
    /// (the address is printed). Unset: no endpoint.
    #[arg(long, env = "METRICS_ADDR", hide_env_values = true)]
    metrics_addr: Option<SocketAddr>,

    /// The database and the data folder.
    #[command(flatten)]
    database: DatabaseArgs,

    /// Email.
    #[command(flatten)]
    mail: MailArgs,

    /// The worker.
    #[command(flatten)]
    jobs: WorkerArgs,

    /// Fault injection for tests.
    #[command(flatten)]
    provision: ProvisionArgs,
}

/// The worker's subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Command {
    /// Run jobs until SIGTERM/SIGINT (the default).
    Run,
    /// Print the effective settings (secrets hidden) as VARIABLE=value lines, and exit.
    Config,
}

impl Settings {
    /// Every setting's effective value, as `worker config` prints them.
    fn shown(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("METRICS_ADDR", self.metrics_addr.map(|a| a.to_string()).unwrap_or_default())];
        self.database.show(&mut out);
        self.mail.show(&mut out);
        self.jobs.show(&mut out);
        self.provision.show(&mut out);
        out
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, before anything is opened: `--help`, `--version` and bad values end
    // the process here.
    let settings = Settings::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let data_dir = settings.database.data_dir.clone();
    let mail = settings.mail.mail(&data_dir, None)?;
    let config = settings.jobs.worker_config();
    if settings.command == Some(Command::Config) {
        print!("{}", settings::render(&settings.shown()));
        return Ok(());
    }
    let url = &settings.database.database_url;
    let (jobs, env) = backoffice::open(url, data_dir, mail, settings.provision.fault())
        .await
        .with_context(|| format!("opening the control plane at {}", settings::redact_url(url)))?;
    let shutdown = jobengine::signals::shutdown_on_signals();
    // A deleted SQLite control database stops the worker, as it stops the server.
    let watch = tokio::spawn(backoffice::control_file::watch(url.clone(), shutdown.clone()));
    if let Some(addr) = settings.metrics_addr {
        serve_metrics(addr, jobs.clone(), shutdown.clone()).await?;
    }
    let mut config = config;
    // Housekeeping goes together: with retention off, no pruning either.
    if config.retention.is_some() {
        config.recurring.extend(backoffice::recurring());
    }
    let worker = Worker::new(&jobs, backoffice::registry(), env, config);
    worker.run(shutdown.clone()).await.context("running the worker")?;
    shutdown.cancel();
    match watch.await {
        Ok(Some(why)) => anyhow::bail!(why),
        _ => Ok(()),
    }
}

/// Binds `addr`, prints the bound address (`Metrics on http://ADDR/metrics`: with
/// port 0 that is how a caller learns it), and serves `/metrics` until `shutdown`.
///
/// # Errors
/// The address cannot be bound.
async fn serve_metrics(addr: SocketAddr, jobs: Jobs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding METRICS_ADDR={addr}"))?;
    let bound = listener.local_addr().context("reading the metrics address")?;
    println!("Metrics on http://{bound}/metrics");
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics)).with_state(jobs);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "serving /metrics failed");
        }
    });
    Ok(())
}

/// `GET /metrics`: the server's rendering ([`jobengine::metrics::scrape`]); a
/// database failure is a 503 so scrapers see the outage.
async fn metrics(State(jobs): State<Jobs>) -> Response {
    match jobengine::metrics::scrape(&jobs).await {
        Ok(text) => ([(header::CONTENT_TYPE, jobengine::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot read the job store");
            (StatusCode::SERVICE_UNAVAILABLE, "job store unavailable\n").into_response()
        }
    }
}
