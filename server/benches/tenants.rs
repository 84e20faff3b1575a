//! Tenancy figures, measured against the real `server` binary over gRPC:
//!
//! 1. `CreateTenant` and `SignUp` latency under `BENCH_CALLERS` (`50,10`: each
//!    count in turn) concurrent callers for `BENCH_SECS` (30) seconds each. The
//!    callers are closed-loop (each sends its next call when the last returns),
//!    and they share the machine with the server and the database. The server runs with
//!    `WORKER=off`, so what is timed is the request (validate, write the tenant
//!    and its job in one transaction, answer), not a machine also busy creating
//!    thousands of databases.
//! 2. Provisioning time per tenant, from the request's commit (`created_at`) to
//!    `active` (`activated_at`): `BENCH_PROVISION` (40) tenants created one every
//!    250 ms against a server with its embedded worker, database creation,
//!    migrations and seeding included.
//!
//! On SQLite and on the PostgreSQL server named by `TEST_DATABASE_URL`.
//! Run with `cargo xtask bench` (starts PostgreSQL), or
//! `TEST_DATABASE_URL=... cargo bench -p server --bench tenants`.
//! `BENCH_BACKENDS` (`sqlite,postgres`) picks the backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which, percentile};
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;

mod common;
use common::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Create,
    SignUp,
}

/// `callers` tasks calling back to back for `secs`; returns sorted latencies (ms).
async fn hammer(url: &str, call: Call, callers: u64, secs: u64) -> (Vec<f64>, u64) {
    let (ch, token) = connect(url).await;
    let seq = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let mut ch = ch;
    for i in 0..callers {
        // A connection per ten callers, as many clients would open.
        if i > 0 && i.is_multiple_of(10) {
            ch = Channel::from_shared(url.to_owned()).expect("uri").connect().await.expect("connect");
        }
        let ch = ch.clone();
        let (token, seq, errors) = (token.clone(), seq.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TenantServiceClient::new(ch);
            let mut lat = Vec::new();
            while Instant::now() < end {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let r = match call {
                    Call::Create => c
                        .create_tenant(bearer(
                            tpb::CreateTenantRequest {
                                name: format!("Bench Co {n}"),
                                admin_email: format!("owner{n}@bench.test"),
                            },
                            &token,
                        ))
                        .await
                        .map(|_| ()),
                    Call::SignUp => c
                        .sign_up(tpb::SignUpRequest {
                            company_name: format!("Signup Co {n}"),
                            email: format!("founder{n}@bench.test"),
                        })
                        .await
                        .map(|_| ()),
                };
                match r {
                    Ok(()) => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("call failed: {e}");
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    all.sort_by(f64::total_cmp);
    (all, errors.load(Ordering::Relaxed))
}

async fn request_latency(which: Which, callers: u64, secs: u64) {
    for call in [Call::Create, Call::SignUp] {
        let db = TestDb::new(which).await;
        let srv = Server::start(&db, "off");
        let (lat, errors) = hammer(&srv.url, call, callers, secs).await;
        let name = if call == Call::Create { "CreateTenant" } else { "SignUp" };
        println!(
            "| {which:?} | {name} | {callers} | {secs} s | {} | {:.0}/s | {:.2} | {:.2} | {:.2} | {errors} | {:.0} MiB |",
            lat.len(),
            lat.len() as f64 / secs as f64,
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
            srv.rss_mib(),
        );
    }
}

async fn provisioning_time(which: Which, n: u64) {
    let db = TestDb::new(which).await;
    let srv = Server::start(&db, "embedded");
    let (ch, token) = connect(&srv.url).await;
    let mut c = TenantServiceClient::new(ch);
    let mut ids = Vec::new();
    for i in 0..n {
        let created = c
            .create_tenant(bearer(
                tpb::CreateTenantRequest { name: format!("Timed Co {i}"), admin_email: format!("t{i}@bench.test") },
                &token,
            ))
            .await
            .expect("create")
            .into_inner();
        ids.push(created.tenant.expect("tenant").id);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start = Instant::now();
    let mut times = Vec::new();
    for id in &ids {
        loop {
            let t =
                c.get_tenant(bearer(tpb::GetTenantRequest { id: id.clone() }, &token)).await.expect("get").into_inner();
            if t.status == tpb::TenantStatus::Active as i32 {
                times.push((t.activated_at_unix_ms - t.created_at_unix_ms) as f64);
                break;
            }
            assert_ne!(t.status, tpb::TenantStatus::Failed as i32, "provisioning failed: {}", t.last_error);
            assert!(start.elapsed() < Duration::from_secs(300), "tenant {id} never became active");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "| {which:?} | {n} | {:.0} | {:.0} | {:.0} | {:.0} MiB |",
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times.last().copied().unwrap_or(f64::NAN),
        srv.rss_mib(),
    );
}

#[tokio::main]
async fn main() {
    let callers: Vec<u64> = std::env::var("BENCH_CALLERS")
        .unwrap_or_else(|_| "50,10".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let secs = env_num("BENCH_SECS", 30);
    let provision = env_num("BENCH_PROVISION", 40);
    let which = backends();
    println!("tenancy benchmark: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("\n## Request latency (server WORKER=off; ms)\n");
    println!("| backend | call | callers | for | calls | rate | p50 | p99 | max | errors | server RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &which {
        for c in &callers {
            request_latency(*w, *c, secs).await;
        }
    }
    println!("\n## Provisioning time, created to active (embedded worker; ms)\n");
    println!("| backend | tenants | p50 | p99 | max | server RSS |");
    println!("|---|---|---|---|---|---|");
    for w in &which {
        provisioning_time(*w, provision).await;
    }
}
