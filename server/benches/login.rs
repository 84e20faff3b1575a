//! Sign-in under a login flood, against the real `server` binary over gRPC:
//! the owner's sign-in latency (p50/p99) alone, then while `BENCH_FLOOD_CLIENTS`
//! (64) closed-loop clients send logins with unknown emails from
//! `BENCH_FLOOD_ADDRS` (1) other loopback addresses (127.0.1.x), for
//! `BENCH_LOGIN_SECS` (10) seconds each. The owner signs in from 127.0.0.2 every
//! 100 ms, on a connection of its own; the clock runs from the call to its
//! answer. The flood's answers are counted too (answered = hashed, refused =
//! throttled before hashing).
//!
//! Then the server's memory (`BENCH_PARTS=memory`; both parts by default): a
//! server as a user starts it (embedded worker on), its RSS once started and
//! settled (idle), then `BENCH_SIGNINS` (50) correct sign-ins at once, each from
//! its own loopback address (127.0.2.x), `BENCH_SIGNIN_ROUNDS` (5) times: their
//! latency (call to answer; p50, p99 and each burst's last answer, which the CPU
//! bounds) and the process's peak RSS, sampled every 5 ms from
//! `/proc`; and the RSS a few seconds after the last round. Last, the floor
//! under that latency: as many verifications at once through the server's own
//! hasher, in this process, with no server, network or database.
//!
//! On SQLite and on the PostgreSQL server named by `TEST_DATABASE_URL`
//! (`BENCH_BACKENDS`). Run with `cargo xtask bench`, or
//! `TEST_DATABASE_URL=... cargo bench -p server --bench login`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which, percentile};
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

mod common;
use common::*;

/// A channel whose connections come from the loopback address `local`.
async fn channel_from(url: &str, local: IpAddr) -> Channel {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("server address");
    Endpoint::from_shared(url.to_owned())
        .expect("uri")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| async move {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(local, 0))?;
            let stream = sock.connect(addr).await?;
            // As tonic's own connector does: without it a request's second
            // write waits for the server's delayed ACK (40 ms on Linux).
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await
        .expect("connect")
}

/// The owner's sign-ins every 100 ms for `secs`: sorted latencies (ms) and failures.
async fn owner_logins(url: &str, secs: u64) -> (Vec<f64>, u64) {
    let ch = channel_from(url, [127, 0, 0, 2].into()).await;
    let mut auth = AuthServiceClient::new(ch);
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut lat, mut failed) = (Vec::new(), 0);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        match auth.login(LoginRequest { email: EMAIL.into(), password: PASSWORD.into() }).await {
            Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(e) => {
                failed += 1;
                eprintln!("owner login failed: {e}");
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, failed)
}

async fn run(which: Which, secs: u64, clients: u64, addrs: u64) {
    let db = TestDb::new(which).await;
    let srv = Server::start_with(&db, "off", &[]);
    let name = format!("{which:?}");
    let (alone, failed_alone) = owner_logins(&srv.url, secs).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (answered, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flood = Vec::new();
    for a in 0..addrs.max(1) {
        let ch = channel_from(&srv.url, [127, 0, 1, (a % 250 + 1) as u8].into()).await;
        for i in (a..clients).step_by(addrs.max(1) as usize) {
            let (ch, stop, answered, refused) = (ch.clone(), stop.clone(), answered.clone(), refused.clone());
            flood.push(tokio::spawn(async move {
                let mut auth = AuthServiceClient::new(ch);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = format!("nobody{i}-{n}@flood.test");
                    match auth.login(LoginRequest { email, password: "guess".into() }).await {
                        Err(e) if e.code() == Code::ResourceExhausted => refused.fetch_add(1, Ordering::Relaxed),
                        _ => answered.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }
    let (during, failed_during) = owner_logins(&srv.url, secs).await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    let row = |label: &str, lat: &[f64], failed: u64| {
        println!(
            "| {name} | {label} | {} | {:.1} | {:.1} | {:.1} | {failed} |",
            lat.len(),
            percentile(lat, 50.0),
            percentile(lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
        );
    };
    row("alone", &alone, failed_alone);
    row(&format!("{clients}-client flood from {addrs} address(es)"), &during, failed_during);
    println!(
        "|   | flood: {} answered (hashed), {} refused (throttled) in {secs} s | | | | | |",
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

/// How long the server is left alone before its idle RSS is read, and after the
/// last burst: long enough for start-up work (migrations, the first worker
/// polls) and for the allocator to hand freed memory back.
const SETTLE: Duration = Duration::from_secs(5);

/// The server's RSS idle, at its peak during bursts of concurrent correct
/// sign-ins, and after them; the sign-ins' latency.
async fn memory(which: Which, signins: u64, rounds: u64) {
    let db = TestDb::new(which).await;
    let srv = Server::start_with(&db, "embedded", &[]);
    tokio::time::sleep(SETTLE).await;
    let idle = srv.rss_mib();
    let mut clients = Vec::new();
    for i in 0..signins {
        let ch = channel_from(&srv.url, [127, 0, 2, (i % 250 + 1) as u8].into()).await;
        clients.push(AuthServiceClient::new(ch));
    }
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), srv.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(testkit::rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut lat = Vec::new();
    let mut last_per_round = Vec::new();
    let mut failed = 0;
    for _ in 0..rounds {
        let calls: Vec<_> = clients
            .iter()
            .map(|c| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = c.login(LoginRequest { email: EMAIL.into(), password: PASSWORD.into() }).await;
                    (t.elapsed().as_secs_f64() * 1000.0, r.is_ok())
                })
            })
            .collect();
        let mut last = 0.0_f64;
        for c in calls {
            let (ms, ok) = c.await.expect("sign-in task");
            last = last.max(ms);
            if ok { lat.push(ms) } else { failed += 1 }
        }
        last_per_round.push(format!("{last:.0}"));
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    tokio::time::sleep(SETTLE).await;
    let after = srv.rss_mib();
    lat.sort_by(f64::total_cmp);
    println!(
        "| {which:?} | {idle:.1} | {:.1} | {after:.1} | {} | {:.1} | {:.1} | {} | {failed} |",
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        last_per_round.join(" / "),
    );
}

#[tokio::main]
async fn main() {
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "flood,memory".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("login benchmark: {cores} cores, {} build", if cfg!(debug_assertions) { "dev" } else { "release" });
    if parts.contains("flood") {
        let secs = env_num("BENCH_LOGIN_SECS", 10);
        let clients = env_num("BENCH_FLOOD_CLIENTS", 64);
        let addrs = env_num("BENCH_FLOOD_ADDRS", 1);
        println!("\n## The owner's sign-in from 127.0.0.2 (ms)\n");
        println!("| backend | while | logins | p50 | p99 | max | failed |");
        println!("|---|---|---|---|---|---|---|");
        for w in backends() {
            run(w, secs, clients, addrs).await;
        }
    }
    if parts.contains("memory") {
        let signins = env_num("BENCH_SIGNINS", 50);
        let rounds = env_num("BENCH_SIGNIN_ROUNDS", 5);
        println!("\n## Server memory: idle, during {rounds} bursts of {signins} concurrent sign-ins, after\n");
        println!(
            "| backend | idle RSS MiB | peak RSS MiB | RSS after MiB | sign-ins | p50 ms | p99 ms | last of each burst ms | failed |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for w in backends() {
            memory(w, signins, rounds).await;
        }
        hash_floor(signins).await;
    }
}

/// The floor under the sign-in latency above: `signins` verifications at once
/// through the server's own hasher (same parameters, same permits), in this
/// process, with no server, network or database; the last one's wait is the
/// least any burst of that many can cost on this machine.
async fn hash_floor(signins: u64) {
    let permits = server::hash_permits();
    let hasher = Arc::new(backoffice::password::Hasher::new(permits).expect("hasher"));
    let phc = hasher.hash(PASSWORD).await.expect("hash");
    let mut last = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let calls: Vec<_> = (0..signins)
            .map(|i| {
                let (hasher, phc) = (hasher.clone(), phc.clone());
                tokio::spawn(async move { hasher.verify_as(&i.to_string(), PASSWORD, Some(&phc)).await })
            })
            .collect();
        for c in calls {
            assert!(c.await.expect("task").expect("verify"), "the password verifies");
        }
        last.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    last.sort_by(f64::total_cmp);
    println!(
        "\nFloor: {signins} verifications at once through the server's hasher ({permits} permits), in this \
         process: the last answers after {:.0} ms (median of 3 bursts; one hash alone takes {:.1} ms).",
        last[1],
        single_hash_ms(&hasher, &phc).await,
    );
}

/// One verification alone, median of 9.
async fn single_hash_ms(hasher: &backoffice::password::Hasher, phc: &str) -> f64 {
    let mut ms = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        hasher.verify(PASSWORD, Some(phc)).await.expect("verify");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms[4]
}
