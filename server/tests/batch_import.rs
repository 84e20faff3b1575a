//! Bulk tenant import (`tenants.v1.ImportTenants`) with real processes: a server
//! (`WORKER=off`) and two `worker` processes; one worker is killed (`kill -9`)
//! while the batch runs. Every tenant is provisioned exactly once (one database,
//! one welcome email each), the batch's counts are right, and the importing
//! admin gets exactly one notification for the whole batch, not one per tenant.
//! First, a file with one bad row creates nothing and names that row.

use std::path::Path;
use std::time::{Duration, Instant};

use jobengine::testing::{PgCluster, Which};
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1 as jpb;
use proto::jobs::v1::job_service_client::JobServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;

mod common;
use common::{Binary, bearer, server_bin, spawn_binary, worker_bin};

const EMAIL: &str = "root@import.test";
const PASSWORD: &str = "import test password";
/// Tenants in the import; one of them ("Doomed …") fails for good.
const TENANTS: usize = 200;

/// Starts the server or a worker on `db`, its log in `data/log`.
fn spawn(bin: &Path, db: &str, data: &Path, log: &str) -> Binary {
    spawn_binary(
        bin,
        db,
        data,
        log,
        &[
            ("WORKER", "off"),
            ("SUPERADMIN_EMAIL", EMAIL),
            ("SUPERADMIN_PASSWORD", PASSWORD),
            ("JOB_POLL_MS", "100"),
            // The doomed tenant's ten attempts fail within about a second.
            ("JOB_BACKOFF_BASE_MS", "1"),
            ("PROVISION_FAULT", "fail:Doomed"),
            ("WORKER_CONCURRENCY", "8"),
        ],
    )
}

fn csv() -> String {
    let mut s = String::from("name,admin email\n");
    for i in 0..TENANTS - 1 {
        s.push_str(&format!("\"Import Co {i}, Ltd\",admin{i}@import{i}.test\n"));
    }
    s.push_str("Doomed Co,admin@doomed.test\n");
    s
}

jobengine::on_both!(import_survives_a_killed_worker);

async fn import_survives_a_killed_worker(which: Which) {
    let data = tempfile::tempdir().expect("tempdir");
    // PostgreSQL: a cluster of our own, so the tenants' 200 databases go with it.
    let pg = (which == Which::Postgres).then(|| PgCluster::start(false).expect("a PostgreSQL cluster of our own"));
    let url = match &pg {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}", data.path().join("control.db").display()),
    };
    let srv = spawn(&server_bin(), &url, data.path(), "server.log");
    let ch = Channel::from_shared(srv.url().to_owned()).expect("uri").connect().await.expect("connect");
    let token = AuthServiceClient::new(ch.clone())
        .login(LoginRequest { email: EMAIL.into(), password: PASSWORD.into() })
        .await
        .expect("login")
        .into_inner()
        .token;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let mut jobs = JobServiceClient::new(ch.clone());

    // One bad row: nothing is created, and the row is named.
    let bad = format!("{}Bad Co,not-an-email\n", csv());
    let e = tenants
        .import_tenants(bearer(tpb::ImportTenantsRequest { csv: bad }, &token))
        .await
        .expect_err("a bad row refuses the file");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = server::boundary::field_violations(&e).into_iter().map(|f| f.0).collect();
    assert_eq!(fields, [format!("rows[{}].admin_email", TENANTS + 2)]);
    let listed = tenants
        .list_tenants(bearer(tpb::ListTenantsRequest { status: 0, page_size: 10, page_token: String::new() }, &token))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.tenants.is_empty(), "nothing was created: {:?}", listed.tenants);

    // Only super admins; bad ids are named; unknown batches are not found.
    let e = tenants.import_tenants(tpb::ImportTenantsRequest { csv: csv() }).await.expect_err("signed out");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = jobs.get_batch(bearer(jpb::GetBatchRequest { id: 0 }, &token)).await.expect_err("id 0");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(server::boundary::field_violations(&e)[0].0, "id");
    let e = jobs.get_batch(bearer(jpb::GetBatchRequest { id: 999_999 }, &token)).await.expect_err("no such batch");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = jobs
        .list_batches(bearer(jpb::ListBatchesRequest { page_size: 0, page_token: "x".into() }, &token))
        .await
        .expect_err("bad token");
    assert_eq!(server::boundary::field_violations(&e)[0].0, "page_token");

    // Two workers; the import.
    let bin = worker_bin();
    let mut killed_worker = spawn(&bin, &url, data.path(), "worker-a.log");
    let _worker_b = spawn(&bin, &url, data.path(), "worker-b.log");
    let started = Instant::now();
    let done = tenants
        .import_tenants(bearer(tpb::ImportTenantsRequest { csv: csv() }, &token))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(done.tenants.len(), TENANTS);
    let batch = done.batch_id;
    let get = |jobs: &mut JobServiceClient<Channel>| {
        let mut jobs = jobs.clone();
        let token = token.clone();
        async move { jobs.get_batch(bearer(jpb::GetBatchRequest { id: batch }, &token)).await.expect("batch").into_inner() }
    };

    // kill -9 one worker once provisioning is under way.
    loop {
        let b = get(&mut jobs).await;
        if b.pending < (TENANTS as u64) * 9 / 10 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the batch did not start: {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed_worker.process.kill().expect("kill -9 worker A");
    let killed_at = get(&mut jobs).await;

    let b = loop {
        let b = get(&mut jobs).await;
        if b.finished_at_unix_ms > 0 {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the batch did not finish: {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((b.total, b.succeeded, b.dead, b.deleted, b.pending), (TENANTS as u64, TENANTS as u64 - 1, 1, 0, 0));
    assert!(killed_at.pending > 0, "the worker was killed mid-batch: {killed_at:?}");
    let listed = jobs
        .list_batches(bearer(jpb::ListBatchesRequest { page_size: 10, page_token: String::new() }, &token))
        .await
        .expect("list batches")
        .into_inner();
    assert_eq!(listed.batches.iter().map(|b| b.id).collect::<Vec<_>>(), [batch]);
    let member = jobs
        .get_job(bearer(jpb::GetJobRequest { id: done.tenants[0].job_id }, &token))
        .await
        .expect("a member job")
        .into_inner();
    assert_eq!(member.batch_id, batch);

    // The completion job runs and notifies once.
    let control = database::Db::connect(&url).await.expect("control db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let notes: Vec<(String, String)> = loop {
        let notes: Vec<(String, String)> = database::query("SELECT title, body FROM notifications ORDER BY id")
            .fetch_all(control.read())
            .await
            .expect("notes");
        if !notes.is_empty() || Instant::now() > deadline {
            break notes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let any straggler (a per-tenant toast) land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all: Vec<(String, String)> = database::query("SELECT title, body FROM notifications ORDER BY id")
        .fetch_all(control.read())
        .await
        .expect("notes");
    assert_eq!(notes.len(), 1);
    assert_eq!(
        all,
        [("Tenant import finished".to_owned(), format!("{TENANTS} tenants: {} active, 1 failed", TENANTS - 1))]
    );

    // Each tenant provisioned once: active with one database and one welcome email.
    let rows: Vec<(String, String, String)> =
        database::query("SELECT name, status, db_name FROM tenants WHERE import_batch_id = $1")
            .bind(batch)
            .fetch_all(control.read())
            .await
            .expect("tenants");
    assert_eq!(rows.len(), TENANTS);
    let welcome: Vec<(String, i64)> = database::query(
        "SELECT t.name, COUNT(o.id) FROM tenants t LEFT JOIN outbox o ON o.tenant_id = t.id GROUP BY t.name",
    )
    .fetch_all(control.read())
    .await
    .expect("outbox");
    for (name, status, db_name) in &rows {
        let doomed = name.starts_with("Doomed");
        assert_eq!(status, if doomed { "failed" } else { "active" }, "{name}");
        if doomed {
            continue;
        }
        let emails = welcome.iter().find(|w| &w.0 == name).map_or(0, |w| w.1);
        assert_eq!(emails, 1, "{name}: one welcome email");
        let exists = match &pg {
            Some(_) => {
                database::query("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(db_name.as_str())
                    .scalar::<i64>(control.read())
                    .await
                    .expect("pg_database")
                    == 1
            }
            None => data.path().join("tenants").join(format!("{db_name}.db")).exists(),
        };
        assert!(exists, "{name}: its database {db_name}");
    }
    println!(
        "figure ({which:?}): {TENANTS} tenants imported and provisioned by 2 workers (one killed with {} pending) in {:.1} s",
        killed_at.pending,
        started.elapsed().as_secs_f64()
    );
}
