//! The server's settings, from the environment, with defaults that run the whole
//! product on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// The control-plane database when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/app.db";
/// Where the server listens when `BIND_ADDR` is unset.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:3000";

/// Whether this process also runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMode {
    /// Run a worker in-process (the one-command default).
    Embedded,
    /// Serve only; `worker` processes run the jobs.
    Off,
}

/// Everything `main` reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://PATH` (created if missing) or `postgres://...`.
    pub database_url: String,
    /// `BIND_ADDR`, default `127.0.0.1:3000`; port 0 picks a free one.
    pub bind_addr: SocketAddr,
    /// `WORKER=embedded|off`, default `embedded`.
    pub worker: WorkerMode,
    /// `SITE_ROOT`: the built site (`pkg/app.js`, `pkg/app_bg.wasm`, `pkg/app.css`),
    /// default `target/site`; `cargo xtask run` sets it.
    pub site_root: PathBuf,
    /// `DATA_DIR`, default `data`: tenant SQLite files live in `DATA_DIR/tenants`.
    pub data_dir: PathBuf,
    /// `SIGNUP_PER_IP_PER_HOUR`, default 10: sign-ups one client IP may make.
    pub signup_per_ip_per_hour: u32,
    /// `SIGNUP_PER_MINUTE`, default 60: sign-ups the server takes in all.
    pub signup_per_minute: u32,
    /// `SMTP_URL`, `MAIL_FROM`, `PUBLIC_URL`: how email is composed and sent
    /// (`.eml` files under `DATA_DIR/mail` when `SMTP_URL` is unset).
    pub mail: backoffice::mail::Mail,
    /// `PROVISION_FAULT` (tests only): slow or failing provisioning.
    pub provision_fault: Option<backoffice::env::Fault>,
    /// The embedded worker's settings (`WORKER_CONCURRENCY`, `JOB_LEASE_MS`, ...).
    pub worker_config: jobengine::WorkerConfig,
}

impl Config {
    /// Reads the environment.
    ///
    /// # Errors
    /// A variable is set to something unusable; the message names it.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`Config::from_env`], reading through `get`.
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let bind = get("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
        let bind_addr: SocketAddr =
            bind.parse().with_context(|| format!("BIND_ADDR={bind:?} is not an address like 127.0.0.1:3000"))?;
        let worker = match get("WORKER").as_deref() {
            None | Some("embedded") => WorkerMode::Embedded,
            Some("off") => WorkerMode::Off,
            Some(other) => bail!("WORKER={other:?}: expected `embedded` or `off`"),
        };
        let site_root = PathBuf::from(get("SITE_ROOT").unwrap_or_else(|| "target/site".to_owned()));
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "data".to_owned()));
        let positive = |name: &str, default: u32| -> anyhow::Result<u32> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{name}={v:?}: expected a positive whole number")),
            }
        };
        let signup_per_ip_per_hour = positive("SIGNUP_PER_IP_PER_HOUR", 10)?;
        let signup_per_minute = positive("SIGNUP_PER_MINUTE", 60)?;
        let mail = backoffice::mail::Mail::from_lookup(&get, &data_dir)?;
        let provision_fault = get("PROVISION_FAULT")
            .filter(|v| !v.trim().is_empty())
            .map(|v| backoffice::env::Fault::parse(&v))
            .transpose()?;
        let worker_config = jobengine::WorkerConfig::from_lookup(&get).context("reading worker settings")?;
        Ok(Self {
            database_url,
            bind_addr,
            worker,
            site_root,
            data_dir,
            signup_per_ip_per_hour,
            signup_per_minute,
            mail,
            provision_fault,
            worker_config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = Config::from_lookup(|_| None).expect("defaults");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert_eq!(c.worker, WorkerMode::Embedded);
        let e = Config::from_lookup(|k| (k == "WORKER").then(|| "sometimes".into())).expect_err("bad WORKER");
        assert!(e.to_string().contains("WORKER"));
        let e = Config::from_lookup(|k| (k == "BIND_ADDR").then(|| "localhost".into())).expect_err("bad addr");
        assert!(e.to_string().contains("BIND_ADDR"));
    }
}
