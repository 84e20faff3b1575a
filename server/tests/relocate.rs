//! `server move-to-postgres`, end to end with the real binary: provision on the
//! embedded SQLite, refuse to move while the server runs, move into an empty
//! PostgreSQL database, then sign in and provision more on PostgreSQL, and refuse
//! a second move into the now non-empty target.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which};
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use testkit::Process;
use tonic::transport::Channel;

mod common;
use common::{bearer, login};

const EMAIL: &str = "root@move.test";
const PASSWORD: &str = "move test password";
/// Where the SQLite job ids jump to before the second tenant.
const FAR_ID: i64 = 24_999_990;

/// A server process on `db` (killed when dropped) and its address.
fn start_server(db: &str, data: &Path, log: &str) -> (Process, String) {
    let mut server = Process::command(env!("CARGO_BIN_EXE_server"))
        .env("DATABASE_URL", db)
        .env("DATA_DIR", data)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SUPERADMIN_EMAIL", EMAIL)
        .env("SUPERADMIN_PASSWORD", PASSWORD)
        .env("JOB_POLL_MS", "50")
        .log_file(data.join(log))
        .spawn()
        .expect("spawn server");
    let url = server.wait_for_value("Back office listening on ", Duration::from_secs(60)).expect("server address");
    (server, url)
}

/// SIGTERM, and a graceful exit (the embedded worker deregisters).
fn stop(mut server: Process) {
    let status = server.terminate(Duration::from_secs(30)).expect("stop the server");
    assert!(status.success(), "the server stopped cleanly: {status}");
}

fn move_to(sqlite: &str, data: &Path, pg: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.env("DATABASE_URL", sqlite).env("DATA_DIR", data).args(["move-to-postgres", "--to", pg]);
    testkit::output_within(&mut cmd, Duration::from_secs(120)).expect("run move-to-postgres")
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
    let (server, url) = start_server(&sqlite, data.path(), "sqlite.log");
    let ch = connect(&url).await;
    let token = login(&ch, EMAIL, PASSWORD).await.expect("sign in on SQLite");
    let acme = provision(&ch, &token, "Acme").await;
    // Later jobs get ids in PostgreSQL's third partition of `jobs` (10,000,000
    // ids each): the move must make partitions beyond the first for them.
    let file = sqlx::sqlite::SqliteConnectOptions::new().filename(data.path().join("app.db"));
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&file).await.expect("open the SQLite file");
    sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = 'jobs'")
        .bind(FAR_ID)
        .execute(&mut conn)
        .await
        .expect("move the job ids on");
    sqlx::Connection::close(conn).await.expect("close the SQLite file");
    provision(&ch, &token, "Globex").await;

    // Refused while the server (and its embedded worker) runs; nothing written.
    let target = TestDb::new(Which::Postgres).await;
    let live = move_to(&sqlite, data.path(), &target.url);
    let err = String::from_utf8_lossy(&live.stderr);
    assert!(!live.status.success() && err.contains("the installation is live"), "{err}");
    stop(server);

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
    let (server, url) = start_server(&target.url, data.path(), "postgres.log");
    let ch = connect(&url).await;
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
    // The moved jobs keep their ids below the new one: the sequences moved on,
    // and the new id found its partition.
    let jobs: std::collections::HashMap<String, i64> = t
        .list_tenants(bearer(tpb::ListTenantsRequest { page_size: 50, ..Default::default() }, &token))
        .await
        .expect("list")
        .into_inner()
        .tenants
        .into_iter()
        .map(|t| (t.name, t.job_id))
        .collect();
    let (a, g, i) = (jobs["Acme"], jobs["Globex"], jobs["Initech"]);
    assert!(a < FAR_ID && FAR_ID < g && g < i, "jobs of Acme, Globex (after the jump), Initech (moved on): {jobs:?}");
    stop(server);

    // A second move into the same database is refused: it holds data now.
    let again = move_to(&sqlite, data.path(), &target.url);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("already holds data"), "{err}");
}

#[tokio::test]
async fn a_source_that_does_not_exist_is_refused_and_not_created() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("typo").join("app.db");
    let target = TestDb::new(Which::Postgres).await;
    let out = move_to(&format!("sqlite://{}", file.display()), data.path(), &target.url);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a move from nothing failed: {err}");
    assert!(err.contains(&format!("the database {} does not exist", file.display())), "{err}");
    assert!(!file.exists() && !file.parent().is_some_and(Path::exists), "nothing created on the source side");
}
