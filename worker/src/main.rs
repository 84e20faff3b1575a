//! The job runner as a process of its own: `DATABASE_URL=... worker`.
//!
//! Runs the same [`jobengine::Worker`] the server embeds; start as many as you like
//! against one PostgreSQL database. Settings: `DATABASE_URL` (default
//! `sqlite://data/app.db`), `WORKER_CONCURRENCY`, `WORKER_QUEUES`, `JOB_LEASE_MS`,
//! `JOB_GRACE_MS`, `JOB_POLL_MS` and the rest of [`jobengine::WorkerConfig`].
//! `DATA_DIR` (default `data`) holds tenant SQLite files. SIGTERM or SIGINT: stop fetching, let running jobs finish within the grace
//! period, release the rest.

use anyhow::Context;
use jobengine::{Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

/// The control-plane database when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "sqlite://data/app.db";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let config = WorkerConfig::from_env().context("reading worker settings")?;
    let data_dir = std::env::var("DATA_DIR").unwrap_or_else(|_| "data".to_owned());
    let mail = backoffice::mail::Mail::from_env(std::path::Path::new(&data_dir))?;
    let fault = backoffice::env::Fault::from_env()?;
    let (jobs, env) = backoffice::open(&url, data_dir.into(), mail, fault)
        .await
        .with_context(|| format!("opening the control plane at {}", redact(&url)))?;
    let shutdown = jobengine::signals::shutdown_on_signals();
    let worker = Worker::new(&jobs, backoffice::registry(), env, config);
    worker.run(shutdown).await.context("running the worker")?;
    Ok(())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
