//! Data safety (issue 11, item 13): a tenant whose database is gone is reported
//! broken and never silently re-created; a control database deleted from under
//! its tenant files stops the start loudly; a PostgreSQL `DATABASE_URL` naming a
//! database that does not exist gets it created at once.

use std::time::Duration;

use clap::Parser;
use jobengine::testing::Which;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use server::config::{Config, Settings};
use tonic::Code;

mod common;
use common::*;

jobengine::on_both!(a_tenant_whose_database_is_gone_is_reported_broken);

/// Creates "Vanishing Co" and waits until it is active; returns (id, database
/// name, a session of its admin).
async fn active_tenant(srv: &TestServer) -> (String, String, String) {
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut tenants = TenantServiceClient::new(ch.clone());
    let created = tenants
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: "Vanishing Co".into(), admin_email: "val@vanishing.test".into() },
            &root,
        ))
        .await
        .expect("create")
        .into_inner()
        .tenant
        .expect("tenant");
    let id = created.id.clone();
    for _ in 0..1500 {
        let t = tenants.get_tenant(bearer(tpb::GetTenantRequest { id: id.clone() }, &root)).await.expect("get");
        if t.into_inner().status == tpb::TenantStatus::Active as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = srv.identity.issue_password_token_for_email("val@vanishing.test").await.expect("token");
    srv.identity.set_password(&token, "a long enough password").await.expect("set password");
    let session = login(&ch, "val@vanishing.test", "a long enough password").await.expect("tenant admin login");
    let db_name = format!("t_{}", id.replace('-', ""));
    (id, db_name, session)
}

/// 13 (a): the tenant's SQLite file is deleted, or its PostgreSQL database
/// dropped. Its admin gets FAILED_PRECONDITION naming the tenant (was INTERNAL
/// "no such table"), and the read leaves no empty file behind (it used to
/// create one).
async fn a_tenant_whose_database_is_gone_is_reported_broken(which: Which) {
    let srv = start(which).await;
    let (id, db_name, session) = active_tenant(&srv).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch);
    let mine = tenants.get_my_tenant(bearer(tpb::GetMyTenantRequest {}, &session)).await.expect("my tenant");
    assert_eq!(mine.into_inner().roles.len(), 3);

    let file = srv.dir.path().join("tenants").join(format!("{db_name}.db"));
    match which {
        Which::Sqlite => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        Which::Postgres => {
            let db = database::Db::connect(&srv.db.url).await.expect("connect");
            database::query(format!("DROP DATABASE \"{db_name}\" WITH (FORCE)"))
                .execute(db.write())
                .await
                .expect("drop the tenant database");
            db.close().await;
        }
    }
    for _ in 0..2 {
        let e = tenants.get_my_tenant(bearer(tpb::GetMyTenantRequest {}, &session)).await.expect_err("broken");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("Vanishing Co") && e.message().contains(&id), "{}", e.message());
        assert!(e.message().contains("broken"), "{}", e.message());
    }
    if which == Which::Sqlite {
        assert!(!file.exists(), "a read must not create {}", file.display());
    }
}

fn config(database_url: &str, data_dir: &std::path::Path) -> Config {
    let settings = Settings::try_parse_from([
        "server",
        "--database-url",
        database_url,
        "--bind-addr",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir.to_string_lossy(),
    ])
    .expect("settings");
    Config::from_settings(&settings).expect("config")
}

/// 13 (b): `app.db` is deleted while tenant files remain. A restart used to
/// make a fresh, empty control plane and orphan every tenant; it now refuses to
/// start and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_control_database_stops_the_start() {
    let srv = start(Which::Sqlite).await;
    let _ = active_tenant(&srv).await;
    let url = srv.db.url.clone();
    let app_db = url.trim_start_matches("sqlite://").to_owned();
    srv.stop.cancel();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{app_db}{suffix}"));
    }
    let refused = server::Backend::open(&config(&url, srv.dir.path())).await.err().expect("refuses to start");
    let msg = format!("{refused:#}");
    assert!(msg.contains(&app_db) && msg.contains("tenant database"), "{msg}");
    assert!(!std::path::Path::new(&app_db).exists(), "no empty control database was made");

    // A data folder without tenant files is a first start: the database is made.
    let fresh = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", fresh.path().join("app.db").display());
    server::Backend::open(&config(&url, fresh.path())).await.expect("a first start");
}

/// 13 (c): `DATABASE_URL` names a PostgreSQL database that does not exist: it is
/// created (as the README says) and the start goes on, at once; it used to wait
/// 30 s and fail with "pool timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_postgres_database_is_created() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let name = format!("missing_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{base}/{name}");
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let opened = tokio::time::timeout(Duration::from_secs(20), server::Backend::open(&config(&url, dir.path())))
        .await
        .expect("no pool timeout")
        .expect("the database is created and migrated");
    assert!(started.elapsed() < Duration::from_secs(20));
    opened.jobs.db().close().await;
    let db = database::Db::connect(&admin).await.expect("connect");
    database::query(format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(db.write()).await.expect("drop");
    db.close().await;
}

/// 13 (b), while running: the real `server` process on SQLite; its `app.db` is
/// deleted. It used to go on serving, writing into the deleted file; it now stops
/// on its own with an error saying what happened and what to do.
#[test]
fn a_control_database_deleted_while_running_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app_db = dir.path().join("app.db");
    let db_url = format!("sqlite://{}", app_db.display());
    let mut server = spawn_binary(
        &server_bin(),
        &db_url,
        dir.path(),
        "server.log",
        &[("SUPERADMIN_PASSWORD", "a long enough password")],
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app_db.display()));
    }
    // Its exit is the event awaited, with a bound: a server that goes on must fail
    // the test (and is killed), not hang it.
    let status = server
        .process
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the server still runs 30 s after its control database was deleted: {e:#}"));
    let err = server.process.log();
    assert!(!status.success(), "stops with a failure status: {status:?}\n{err}");
    assert!(err.contains("app.db was deleted while the server ran"), "{err}");
    assert!(err.contains("restore the file from a backup"), "{err}");
    assert!(!app_db.exists(), "no empty control database was made in its place");
}
