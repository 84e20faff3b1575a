//! Shared by the server's integration tests: a real server on port 0 (in this
//! process, or the `server` and `worker` binaries as real processes), clients,
//! channels from a chosen loopback address, sign-in, raw HTTP.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use jobengine::testing::{TestDb, Which};
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1::job_service_client::JobServiceClient;
use server::config::{Config, Settings};
use testkit::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub const ROOT_EMAIL: &str = "root@example.com";
pub const ROOT_PASSWORD: &str = "correct horse battery staple";

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub identity: backoffice::identity::Identity,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    /// Aborts a test whose server is still up at [`testkit::TEST_LIMIT`].
    _dog: testkit::Watchdog,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start(which: Which) -> TestServer {
    start_with(which, &[]).await
}

/// Starts a server with extra settings (`name`, `value`).
pub async fn start_with(which: Which, extra: &[(&str, &str)]) -> TestServer {
    let db = TestDb::new(which).await;
    let url = db.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_string_lossy().into_owned();
    let mut args = vec![
        "server".to_owned(),
        "--database-url".to_owned(),
        url,
        "--bind-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data_dir,
    ];
    // No retention sweep (a job every minute) in tests that count jobs, unless
    // `extra` sets retention.
    for name in ["JOB_RETENTION_SECS", "JOB_DEAD_RETENTION_SECS"] {
        if !extra.iter().any(|(n, _)| *n == name) {
            args.push(flag_for(name));
            args.push("0".to_owned());
        }
    }
    for (name, value) in extra {
        args.push(flag_for(name));
        args.push((*value).to_owned());
    }
    // libtest names each test's thread after the test.
    let dog = testkit::Watchdog::new(std::thread::current().name().unwrap_or("a server test"));
    let settings = Settings::try_parse_from(args).expect("settings");
    let config = Config::from_settings(&settings).expect("config");
    let backend = server::Backend::open(&config).await.expect("open");
    backend.identity.seed_super_admin(ROOT_EMAIL, Some(ROOT_PASSWORD)).await.expect("seed super admin");
    let identity = backend.identity.clone();
    let listener = tokio::net::TcpListener::bind(config.bind_addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { server::run(listener, &config, backend, s).await.expect("server runs") });
    TestServer { addr, stop, identity, db, dir, _dog: dog }
}

/// The server's flag for the environment variable `name` (tests name settings by
/// their variables, as operators do).
pub fn flag_for(name: &str) -> String {
    Settings::command()
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == name))
        .and_then(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .unwrap_or_else(|| panic!("no setting reads {name}"))
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = format!("Bearer {}", self.0).parse().map_err(|_| tonic::Status::internal("bad token"))?;
        r.metadata_mut().insert("authorization", v);
        Ok(r)
    }
}

/// The job service as the seeded super admin.
pub type Jobs = JobServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A job-service client signed in as the seeded super admin.
pub async fn client(addr: SocketAddr) -> Jobs {
    let ch = channel(addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("super admin login");
    JobServiceClient::with_interceptor(ch, Bearer(token))
}

pub async fn channel(addr: SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to the server at {addr}");
}

/// A channel whose connections come from `local`, a loopback address: Linux
/// routes all of 127.0.0.0/8 to this host, so a test can play many clients, as
/// the server's per-address limits see them.
pub async fn channel_from(addr: SocketAddr, local: IpAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| async move {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(local, 0))?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(sock.connect(addr).await?))
        }))
        .await
        .expect("connect")
}

/// What the server prints once it listens; its URL follows.
pub const LISTENING: &str = "Back office listening on ";

/// A `server` or `worker` binary running as a real process (killed on drop).
pub struct Binary {
    pub process: Process,
    /// A server's URL, read from the line it prints once it listens.
    pub url: Option<String>,
}

impl Binary {
    /// The server's URL (panics for a worker).
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_else(|| panic!("{} prints no URL", self.process.name()))
    }

    /// The last `n` lines of its log, for a failure message (see
    /// [`testkit::Process::tail`]).
    pub fn log_tail(&self, n: usize) -> String {
        self.process.tail(n)
    }
}

/// The `server` binary cargo built for these tests.
pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_server"))
}

/// The `worker` binary, built beside the server's if this test run lacks it
/// (cargo builds only this package's binaries for its tests).
pub fn worker_bin() -> PathBuf {
    testkit::built_binary(env!("CARGO"), &server_bin(), "worker", !cfg!(debug_assertions))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts `bin` (the server or the worker) on the database `db`, with `data` as
/// its data folder, its log in `data/<log>`, listening on a free port, and the
/// settings in `env` (by variable name, as operators set them). A server is
/// waited for until it listens.
pub fn spawn_binary(bin: &Path, db: &str, data: &Path, log: &str, env: &[(&str, &str)]) -> Binary {
    let mut process = Process::command(bin)
        .env("DATABASE_URL", db)
        .env("DATA_DIR", data)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .log_file(data.join(log))
        .spawn()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = bin
        .ends_with("server")
        .then(|| process.wait_for_value(LISTENING, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e:#}")));
    Binary { process, url }
}

pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    r
}

pub async fn login(ch: &Channel, email: &str, password: &str) -> Result<String, tonic::Status> {
    let mut auth = AuthServiceClient::new(ch.clone());
    let resp = auth.login(proto::auth::v1::LoginRequest { email: email.into(), password: password.into() }).await?;
    let cookie = resp.metadata().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let token = resp.into_inner().token;
    assert!(cookie.starts_with(&format!("session={token};")), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    Ok(token)
}

/// How long [`http`] waits for a whole answer before it fails, showing what
/// came (a page whose stream stalls half-way, say).
pub const HTTP_LIMIT: Duration = Duration::from_secs(60);

/// An HTTP/1.0 exchange: (status, headers lower-cased, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = Vec::new();
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write head");
        s.write_all(body).await.expect("write body");
        s.read_to_end(&mut raw).await.expect("read");
    };
    if tokio::time::timeout(HTTP_LIMIT, exchange).await.is_err() {
        panic!("{method} {path}: no complete answer within {HTTP_LIMIT:?}; so far:\n{}", String::from_utf8_lossy(&raw));
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

pub fn json_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json");
