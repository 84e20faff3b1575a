//! Shared by the server benchmarks: the real `server` (and `worker`) binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use jobengine::testing::{TestDb, Which, rss_kib};
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

pub const EMAIL: &str = "bench@backoffice.local";
pub const PASSWORD: &str = "benchmark password";

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The server binary, running until dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start(db: &TestDb, worker: &str) -> Self {
        Self::start_with(db, worker, &[])
    }

    /// As [`Server::start`], with extra settings.
    pub fn start_with(db: &TestDb, worker: &str, extra: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
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
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server binary");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let url = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("Back office listening on ").map(str::to_owned))
            .expect("the server printed its address");
        Self { child, url, _data: data }
    }

    pub fn rss_mib(&self) -> f64 {
        rss_kib(self.child.id()) as f64 / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
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
pub struct WorkerProc(pub Child, tempfile::TempDir);

impl WorkerProc {
    pub fn start(db: &TestDb) -> Self {
        static BUILT: std::sync::Once = std::sync::Once::new();
        // cargo builds the server for a server bench, not the worker: build it
        // (once per run; a no-op when fresh) so a stale binary is never measured.
        BUILT.call_once(|| {
            let ok = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "worker"])
                .status()
                .expect("cargo build -p worker");
            assert!(ok.success(), "building the worker failed");
        });
        let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_server")).with_file_name("worker");
        let data = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the worker");
        Self(child, data)
    }

    /// Its `DATA_DIR` (emails go to `mail/` there when no `SMTP_URL` is set).
    pub fn data_dir(&self) -> &Path {
        self.1.path()
    }

    pub fn rss_mib(&self) -> f64 {
        rss_kib(self.0.id()) as f64 / 1024.0
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
