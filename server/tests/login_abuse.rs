//! Sign-in abuse against the real server over the network, on both backends:
//! a password flood from one address does not lock the owner out from another;
//! hostile failed logins leave storage bounded; strings no email or filter can
//! hold answer INVALID_ARGUMENT naming the field, never INTERNAL.
//!
//! Clients bind their own loopback addresses (Linux routes all of 127.0.0.0/8
//! to `lo`), so the server sees distinct peers exactly as it would distinct
//! machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jobengine::testing::Which;
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

mod common;
use common::*;

jobengine::on_both!(
    the_owner_signs_in_from_elsewhere_during_a_password_flood,
    hostile_failed_logins_leave_storage_bounded,
    strings_sql_cannot_hold_are_refused_by_field,
);

async fn try_login(ch: &Channel, email: &str, password: &str) -> Result<(), tonic::Status> {
    AuthServiceClient::new(ch.clone())
        .login(LoginRequest { email: email.into(), password: password.into() })
        .await
        .map(drop)
}

/// `n` wrong-password logins for `email` from `ch`, `parallel` at a time; the
/// codes answered, counted.
async fn flood(
    ch: &Channel,
    n: usize,
    parallel: usize,
    email: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let email = Arc::new(email);
    let tasks: Vec<_> = (0..parallel)
        .map(|_| {
            let (ch, next, email) = (ch.clone(), next.clone(), email.clone());
            tokio::spawn(async move {
                let (mut unauth, mut limited) = (0, 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return (unauth, limited);
                    }
                    match try_login(&ch, &email(i), "a wrong guess").await.map_err(|s| s.code()) {
                        Err(Code::Unauthenticated) => unauth += 1,
                        Err(Code::ResourceExhausted) => limited += 1,
                        other => panic!("login {i}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut total = (0, 0);
    for t in tasks {
        let (u, l) = t.await.expect("task");
        total = (total.0 + u, total.1 + l);
    }
    total
}

/// The attack that locked the owner out for an hour: 110 wrong passwords for the
/// super admin, 8 in parallel, from 127.0.0.1. The attacking address is
/// throttled; the owner at 127.0.0.2 signs in at once.
async fn the_owner_signs_in_from_elsewhere_during_a_password_flood(which: Which) {
    let srv = start(which).await;
    let attacker = channel_from(srv.addr, [127, 0, 0, 1].into()).await;
    let (unauth, limited) = flood(&attacker, 110, 8, |_| ROOT_EMAIL.to_owned()).await;
    assert!(limited > 90 && unauth < 20, "the attacker is throttled: {unauth} answered, {limited} refused");
    let e = try_login(&attacker, ROOT_EMAIL, ROOT_PASSWORD).await.expect_err("the attacking address waits");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let after = server::boundary::retry_after(&e).expect("a RetryInfo detail");
    assert!(e.message().ends_with(&format!("try again in {} s", after.as_secs())), "{e:?}");
    let owner = channel_from(srv.addr, [127, 0, 0, 2].into()).await;
    let t = Instant::now();
    login(&owner, ROOT_EMAIL, ROOT_PASSWORD).await.expect("the owner, from another address");
    println!("figure: the owner's sign-in from another address after the flood took {:?}", t.elapsed());
}

/// Database size in bytes: the SQLite file and its WAL, or PostgreSQL's database.
async fn storage_bytes(url: &str) -> u64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
        return size(path.to_owned()) + size(format!("{path}-wal"));
    }
    let db = database::Db::connect(url).await.expect("database");
    let n: i64 = database::query("SELECT pg_database_size(current_database())").scalar(db.read()).await.expect("size");
    n as u64
}

async fn count(url: &str, table: &str) -> i64 {
    let db = database::Db::connect(url).await.expect("database");
    database::query(format!("SELECT COUNT(*) FROM {table}")).scalar(db.read()).await.expect("count")
}

/// `LOGIN_FLOOD` (10,000) failed logins with distinct 254-byte emails from one
/// address, 16 at a time, and 100 with 60 KB "emails": the long ones are refused
/// as `email` before anything is written, and the rest leave a bounded number
/// of rows (one per key) instead of one per attempt.
async fn hostile_failed_logins_leave_storage_bounded(which: Which) {
    let n: usize = std::env::var("LOGIN_FLOOD").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let srv = start(which).await;
    let ch = channel_from(srv.addr, [127, 0, 0, 1].into()).await;
    login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("warm up");
    let before = storage_bytes(&srv.db.url).await;
    let huge = "a".repeat(60_000);
    for i in 0..100 {
        let e = try_login(&ch, &format!("{huge}{i}@x.test"), "x").await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        let fields = e.get_details_bad_request().expect("details").field_violations;
        assert_eq!(fields[0].field, "email");
    }
    let t = Instant::now();
    let (unauth, limited) = flood(&ch, n, 16, |i| format!("{i:0>10}{}@x.test", "b".repeat(254 - 17))).await;
    let took = t.elapsed();
    let after = storage_bytes(&srv.db.url).await;
    let rows = count(&srv.db.url, "login_throttle").await;
    println!(
        "figure: {n} hostile failed logins ({unauth} answered, {limited} throttled) in {took:.1?}: storage {} -> {} bytes \
         (+{} KiB), {rows} throttle rows, {} login_failures rows",
        before,
        after,
        after.saturating_sub(before) / 1024,
        count(&srv.db.url, "login_failures").await,
    );
    assert_eq!(count(&srv.db.url, "login_failures").await, 0, "no row per failure");
    // One row per admitted attempt's key: the free ones and one per pause that
    // ended during the run (one per attempt, 10,000, before).
    assert!(rows <= 45, "{rows} rows for one address");
    assert!(after.saturating_sub(before) < 2 * 1024 * 1024, "grew by {} bytes", after - before);
}

/// Strings PostgreSQL cannot store or index (NUL, a 3,000-character email) are
/// refused before SQL on every backend, naming the field: Login's email,
/// ListJobs' kind and text, a diagnostic job's failure message, the JSON
/// facade's sign-up email.
async fn strings_sql_cannot_hold_are_refused_by_field(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let long = format!("{}@x.test", "c".repeat(3000));
    for email in ["root\0@example.com", long.as_str()] {
        let e = try_login(&ch, email, "x").await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert_eq!(e.get_details_bad_request().expect("details").field_violations[0].field, "email");
    }
    let mut jobs = client(srv.addr).await;
    let dead = pb::JobState::Dead as i32;
    for (field, req) in [
        ("kind", pb::ListJobsRequest { state: dead, kind: "diag\0.noop".into(), ..Default::default() }),
        ("text", pb::ListJobsRequest { state: dead, text: "\0".into(), ..Default::default() }),
        ("text", pb::ListJobsRequest { state: dead, text: "é".repeat(150), ..Default::default() }),
    ] {
        let e = jobs.list_jobs(req).await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {}", e.message());
        assert_eq!(e.get_details_bad_request().expect("details").field_violations[0].field, field);
    }
    let e = jobs
        .enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
            kind: "diag.fail".into(),
            fail_message: "boom\0".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(e.get_details_bad_request().expect("details").field_violations[0].field, "fail_message");
    let body = br#"{"company_name": "Nul Corp", "email": "a\u0000b@example.com"}"#;
    let (status, _, body) = http(srv.addr, "POST", "/api/signup", &[JSON], body).await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(json_body(&body)["fields"][0]["field"] == "email", "{body}");
    // The server is still well.
    login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
}
