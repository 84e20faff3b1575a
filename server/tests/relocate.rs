//! `server move-to-postgres`, end to end with the real binary: provision on the
//! embedded SQLite, refuse to move while the server runs, move into an empty
//! PostgreSQL database, then sign in and provision more on PostgreSQL, and refuse
//! a second move into the now non-empty target.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which};
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;

mod common;
use common::{bearer, login};

const EMAIL: &str = "root@move.test";
const PASSWORD: &str = "move test password";

/// A server process on `db`; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(db: &str, data: &Path) -> Self {
        let log = std::fs::File::create(data.join(format!("server-{}.log", db.len()))).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env("DATABASE_URL", db)
            .env("DATA_DIR", data)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SUPERADMIN_EMAIL", EMAIL)
            .env("SUPERADMIN_PASSWORD", PASSWORD)
            .env("JOB_POLL_MS", "50")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn server");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let url = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("Back office listening on ").map(str::to_owned))
            .expect("the server printed its address");
        Self { child, url }
    }

    /// SIGTERM, and wait for a graceful exit (the worker deregisters).
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the server stopped cleanly: {status}");
    }
}

fn move_to(sqlite: &str, data: &Path, pg: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .env("DATABASE_URL", sqlite)
        .env("DATA_DIR", data)
        .args(["move-to-postgres", "--to", pg])
        .output()
        .expect("run move-to-postgres")
}

/// Creates a tenant as the super admin and waits until it is active.
async fn provision(ch: &Channel, token: &str, name: &str) -> String {
    let mut t = TenantServiceClient::new(ch.clone());
    let id = t
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: name.into(), admin_email: format!("{}@move.test", name.to_lowercase()) },
            token,
        ))
        .await
        .expect("create tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id;
    let start = Instant::now();
    loop {
        let got =
            t.get_tenant(bearer(tpb::GetTenantRequest { id: id.clone() }, token)).await.expect("get").into_inner();
        if got.status == tpb::TenantStatus::Active as i32 {
            return id;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{name} not active in 60 s: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("uri").connect().await.expect("connect")
}

#[tokio::test]
async fn an_sqlite_installation_moves_to_postgres_and_keeps_working() {
    let data = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite://{}", data.path().join("app.db").display());

    // On SQLite: two tenants provisioned (databases, seeds, jobs, history, email).
    let server = Server::start(&sqlite, data.path());
    let ch = connect(&server.url).await;
    let token = login(&ch, EMAIL, PASSWORD).await.expect("sign in on SQLite");
    let acme = provision(&ch, &token, "Acme").await;
    provision(&ch, &token, "Globex").await;

    // Refused while the server (and its embedded worker) runs; nothing written.
    let target = TestDb::new(Which::Postgres).await;
    let live = move_to(&sqlite, data.path(), &target.url);
    let err = String::from_utf8_lossy(&live.stderr);
    assert!(!live.status.success() && err.contains("the installation is live"), "{err}");
    server.stop();

    let moved = move_to(&sqlite, data.path(), &target.url);
    let out = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success(), "move failed: {out}\n{}", String::from_utf8_lossy(&moved.stderr));
    assert!(out.contains("every count and checksum matches"), "{out}");
    for table in ["tenants", "users", "sessions", "jobs", "job_history", "outbox", "notifications"] {
        assert!(out.lines().any(|l| l.starts_with("control") && l.contains(table)), "{table} not reported: {out}");
    }
    // Both tenant databases moved, with their seeded rows.
    let seeded = out.lines().filter(|l| l.starts_with("t_") && l.split_whitespace().nth(2) != Some("0")).count();
    assert!(seeded >= 2, "tenant databases with rows moved: {out}");

    // On PostgreSQL: the same password, the moved tenants, and new provisioning.
    let server = Server::start(&target.url, data.path());
    let ch = connect(&server.url).await;
    let token = login(&ch, EMAIL, PASSWORD).await.expect("sign in on PostgreSQL with the moved password");
    let mut t = TenantServiceClient::new(ch.clone());
    let got =
        t.get_tenant(bearer(tpb::GetTenantRequest { id: acme }, &token)).await.expect("moved tenant").into_inner();
    assert_eq!(got.status, tpb::TenantStatus::Active as i32, "{got:?}");
    let listed = t
        .list_tenants(bearer(tpb::ListTenantsRequest { page_size: 50, ..Default::default() }, &token))
        .await
        .expect("list")
        .into_inner()
        .tenants;
    assert_eq!(listed.len(), 2, "{listed:?}");
    provision(&ch, &token, "Initech").await;
    // The moved jobs keep their ids below the new ones: the sequences moved on.
    let job_ids: Vec<i64> = t
        .list_tenants(bearer(tpb::ListTenantsRequest { page_size: 50, ..Default::default() }, &token))
        .await
        .expect("list")
        .into_inner()
        .tenants
        .iter()
        .map(|t| t.job_id)
        .collect();
    let mut unique = job_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 3, "three tenants, three distinct jobs: {job_ids:?}");
    server.stop();

    // A second move into the same database is refused: it holds data now.
    let again = move_to(&sqlite, data.path(), &target.url);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("already holds data"), "{err}");
}
