//! Tenancy figures, measured against the real `server` binary over gRPC:
//!
//! 1. `CreateTenant` and `SignUp` latency under `BENCH_CALLERS` (`50,10`: each
//!    count in turn) concurrent callers for `BENCH_SECS` (30) seconds each. The
//!    callers are closed-loop (each sends its next call when the last returns),
//!    and they share the machine with the server and the database. The server runs with
//!    `WORKER=off`, so what is timed is the request (validate, write the tenant
//!    and its job in one transaction, answer), not a machine also busy creating
//!    thousands of databases.
//! 2. The same at rising concurrency: 10 callers, then 20, 40, ... for
//!    `BENCH_RAMP_SECS` (8) seconds each, until both calls' p99 pass 500 ms or
//!    the callers pass `BENCH_RAMP_MAX` (2560; 0 skips the ramp); a table and a
//!    chart of p99 by callers.
//! 3. Provisioning time per tenant, from the request's commit (`created_at`) to
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

/// One timed run of `call` at `callers` against a fresh database and server.
struct Measured {
    calls: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: u64,
    rss_mib: f64,
}

async fn measure(which: Which, call: Call, callers: u64, secs: u64) -> Measured {
    let db = TestDb::new(which).await;
    let srv = Server::start(&db, "off");
    let (lat, errors) = hammer(&srv.url, call, callers, secs).await;
    Measured {
        calls: lat.len(),
        rate: lat.len() as f64 / secs as f64,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: lat.last().copied().unwrap_or(f64::NAN),
        errors,
        rss_mib: srv.rss_mib(),
    }
}

fn name(call: Call) -> &'static str {
    if call == Call::Create { "CreateTenant" } else { "SignUp" }
}

async fn request_latency(which: Which, callers: u64, secs: u64) {
    for call in [Call::Create, Call::SignUp] {
        let m = measure(which, call, callers, secs).await;
        println!(
            "| {which:?} | {} | {callers} | {secs} s | {} | {:.0}/s | {:.2} | {:.2} | {:.2} | {} | {:.0} MiB |",
            name(call),
            m.calls,
            m.rate,
            m.p50,
            m.p99,
            m.max,
            m.errors,
            m.rss_mib,
        );
    }
}

/// Doubles the callers (10, 20, 40, ...) until both calls' p99 pass 500 ms (or
/// `max` callers), printing a row per step and a chart of the p99s.
async fn ramp(which: Which, secs: u64, max: u64) {
    let mut steps: Vec<(u64, f64, f64)> = Vec::new();
    let mut callers = 10;
    println!("\n| backend | callers | CreateTenant rate | p50 | p99 | SignUp rate | p50 | p99 | errors | server RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    while callers <= max {
        let create = measure(which, Call::Create, callers, secs).await;
        let signup = measure(which, Call::SignUp, callers, secs).await;
        println!(
            "| {which:?} | {callers} | {:.0}/s | {:.1} | {:.1} | {:.0}/s | {:.1} | {:.1} | {} | {:.0} MiB |",
            create.rate,
            create.p50,
            create.p99,
            signup.rate,
            signup.p50,
            signup.p99,
            create.errors + signup.errors,
            create.rss_mib.max(signup.rss_mib),
        );
        steps.push((callers, create.p99, signup.p99));
        if create.p99 > 500.0 && signup.p99 > 500.0 {
            break;
        }
        callers *= 2;
    }
    let top = steps.iter().map(|s| s.1.max(s.2)).fold(0.0, f64::max);
    let list = |f: &dyn Fn(&(u64, f64, f64)) -> String| steps.iter().map(f).collect::<Vec<_>>().join(", ");
    println!("\n```mermaid");
    println!("xychart-beta");
    println!("    title \"{which:?}, one server: p99 (ms) by concurrent callers; bars CreateTenant, line SignUp\"");
    println!("    x-axis \"callers\" [{}]", list(&|s| s.0.to_string()));
    println!("    y-axis \"p99 (ms)\" 0 --> {:.0}", (top * 1.1).max(550.0));
    println!("    bar [{}]", list(&|s| format!("{:.0}", s.1)));
    println!("    line [{}]", list(&|s| format!("{:.0}", s.2)));
    println!("```\n");
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
    let ramp_max = env_num("BENCH_RAMP_MAX", 2560);
    if ramp_max > 0 {
        let ramp_secs = env_num("BENCH_RAMP_SECS", 8);
        println!("\n## Latency at rising concurrency, until p99 passes 500 ms (one server, WORKER=off; ms)");
        for w in &which {
            ramp(*w, ramp_secs, ramp_max).await;
        }
    }
    println!("\n## Provisioning time, created to active (embedded worker; ms)\n");
    println!("| backend | tenants | p50 | p99 | max | server RSS |");
    println!("|---|---|---|---|---|---|");
    for w in &which {
        provisioning_time(*w, provision).await;
    }
}
