//! Shared by the server's integration tests: a real server on port 0, clients,
//! sign-in, raw HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use jobengine::testing::{TestDb, Which};
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1::job_service_client::JobServiceClient;
use server::config::{Config, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const ROOT_EMAIL: &str = "root@example.com";
pub const ROOT_PASSWORD: &str = "correct horse battery staple";

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub identity: backoffice::identity::Identity,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
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
    TestServer { addr, stop, identity, db, dir }
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
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

pub fn json_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json");
