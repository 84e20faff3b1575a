//! Shared by the server benchmarks: the real `server` (and `worker`) binaries, as
//! [`testkit::Process`]es with the settings the benchmarks run them with.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use jobengine::testing::{TestDb, Which};
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use testkit::Process;
use tonic::transport::Channel;

pub const EMAIL: &str = "bench@backoffice.local";
pub const PASSWORD: &str = "benchmark password";

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How long the server may take to print its address.
const STARTUP: Duration = Duration::from_secs(60);
/// What the server prints once it listens; its URL follows.
const LISTENING: &str = "Back office listening on ";

/// The server binary, running until dropped (then stopped with SIGTERM).
pub struct Server {
    process: Process,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start(db: &TestDb, worker: &str) -> Self {
        Self::start_with(db, worker, &[])
    }

    /// As [`Server::start`], with extra settings (they win over the ones here).
    pub fn start_with(db: &TestDb, worker: &str, extra: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut process = Process::command(env!("CARGO_BIN_EXE_server"))
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", data.path())
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("WORKER", worker)
            .env("SUPERADMIN_EMAIL", EMAIL)
            .env("SUPERADMIN_PASSWORD", PASSWORD)
            .env("SIGNUP_PER_IP_PER_HOUR", u32::MAX.to_string())
            .env("SIGNUP_PER_MINUTE", u32::MAX.to_string())
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
            // Warnings stay in sight, as when its stderr was ours.
            .echo("[server] ")
            .spawn()
            .expect("start the server binary");
        let url = process.wait_for_value(LISTENING, STARTUP).unwrap_or_else(|e| panic!("{e:#}"));
        Self { process, url, _data: data }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn rss_mib(&self) -> f64 {
        self.process.rss_kib() as f64 / 1024.0
    }
}

impl Drop for Server {
    /// A graceful stop, as in production; killed if it takes over 15 s.
    fn drop(&mut self) {
        if let Err(e) = self.process.terminate(Duration::from_secs(15)) {
            eprintln!("{e:#}");
        }
    }
}

pub async fn connect(url: &str) -> (Channel, String) {
    connect_as(url, EMAIL).await
}

/// A channel to `url` and a session token for the super admin `email` (seeded
/// with [`PASSWORD`]).
pub async fn connect_as(url: &str, email: &str) -> (Channel, String) {
    let ch = Channel::from_shared(url.to_owned()).expect("uri").connect().await.expect("connect");
    let token = AuthServiceClient::new(ch.clone())
        .login(LoginRequest { email: email.into(), password: PASSWORD.into() })
        .await
        .expect("login")
        .into_inner()
        .token;
    (ch, token)
}

pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    r
}

/// A `worker` process on `db` (release build beside the server's); killed on
/// drop.
pub struct WorkerProc {
    process: Process,
    data: tempfile::TempDir,
}

impl WorkerProc {
    pub fn start(db: &TestDb) -> Self {
        let bin = testkit::built_binary(env!("CARGO"), Path::new(env!("CARGO_BIN_EXE_server")), "worker", true)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let data = tempfile::tempdir().expect("tempdir");
        let process = Process::command(bin)
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .echo("[worker] ")
            .spawn()
            .expect("start the worker");
        Self { process, data }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its `DATA_DIR` (emails go to `mail/` there when no `SMTP_URL` is set).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn rss_mib(&self) -> f64 {
        self.process.rss_kib() as f64 / 1024.0
    }
}

/// The backends `BENCH_BACKENDS` names (`sqlite,postgres` by default).
pub fn backends() -> Vec<Which> {
    std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .filter_map(|b| match b.trim() {
            "sqlite" => Some(Which::Sqlite),
            "postgres" => Some(Which::Postgres),
            _ => None,
        })
        .collect()
}
