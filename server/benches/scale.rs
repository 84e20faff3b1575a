//! Scale-out on one PostgreSQL: servers and workers as separate processes, as
//! production runs them; first 1 server + 1 worker, then 2 servers + 2 workers.
//!
//! Each server has its own super admin. `BENCH_SCALE_CALLERS` (20) callers,
//! spread over the servers, create `BENCH_SCALE_TENANTS` (300) tenants as fast
//! as the servers answer; the workers provision them (a PostgreSQL database
//! each, migrations, seed, welcome email) and each activation notifies the super
//! admin who asked. Every super admin holds a `Subscribe` stream on **every**
//! server, so a notification written by a worker must cross processes to reach
//! the streams.
//!
//! Figures per topology: create latency (p50/p99), provisioning throughput
//! (tenants per second from the first request's commit to the last activation),
//! notifications expected and received per stream with the missing, duplicated
//! and foreign (another admin's) ones counted, welcome emails written, and the
//! peak RSS of each process (sampled every 250 ms).
//!
//! Needs `TEST_DATABASE_URL`. Run with `cargo xtask bench` (starts PostgreSQL), or
//! `TEST_DATABASE_URL=... cargo bench -p server --bench scale`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which, percentile};
use proto::notifications::v1 as npb;
use proto::notifications::v1::notification_service_client::NotificationServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tokio_util::sync::CancellationToken;

mod common;
use common::*;

fn admin(i: usize) -> String {
    format!("admin{i}@scale.test")
}

/// Tenant ids as they arrive on one stream, in order (so duplicates show).
type Arrivals = Arc<Mutex<Vec<String>>>;

/// Holds a `Subscribe` stream until `stop`, recording each notification's tenant.
async fn listen(url: String, email: String, stop: CancellationToken) -> Arrivals {
    let (ch, token) = connect_as(&url, &email).await;
    let mut stream = NotificationServiceClient::new(ch)
        .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
        .await
        .expect("subscribe")
        .into_inner();
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                msg = stream.message() => match msg {
                    Ok(Some(m)) => {
                        if let Some(npb::subscribe_response::Event::Notification(n)) = m.event {
                            let id = n.link.rsplit('/').next().unwrap_or_default().to_owned();
                            seen.lock().expect("arrivals").push(id);
                        }
                    }
                    other => panic!("the stream on {url} for {email} ended: {other:?}"),
                },
            }
        }
    });
    arrivals
}

/// Samples each process's RSS until `stop`; the peaks (MiB) by name.
fn sample_rss(pids: Vec<(String, u32)>, stop: CancellationToken) -> tokio::task::JoinHandle<Vec<(String, f64)>> {
    tokio::spawn(async move {
        let mut peak = vec![0.0_f64; pids.len()];
        while !stop.is_cancelled() {
            for (i, (_, pid)) in pids.iter().enumerate() {
                peak[i] = peak[i].max(jobengine::testing::rss_kib(*pid) as f64 / 1024.0);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        pids.into_iter().map(|(n, _)| n).zip(peak).collect()
    })
}

async fn topology(n: usize, tenants: u64, callers: u64) {
    let db = TestDb::new(Which::Postgres).await;
    let servers: Vec<Server> = (0..n)
        .map(|i| Server::start_with(&db, "off", &[("SUPERADMIN_EMAIL", &admin(i)), ("SUPERADMIN_PASSWORD", PASSWORD)]))
        .collect();
    let workers: Vec<WorkerProc> = (0..n).map(|_| WorkerProc::start(&db)).collect();
    let mut pids: Vec<(String, u32)> =
        servers.iter().enumerate().map(|(i, s)| (format!("server {}", i + 1), s.pid())).collect();
    pids.extend(workers.iter().enumerate().map(|(i, w)| (format!("worker {}", i + 1), w.pid())));
    let stop = CancellationToken::new();
    let rss = sample_rss(pids, stop.clone());

    // Every admin listens on every server.
    let mut streams = Vec::new();
    for a in 0..n {
        for (s, srv) in servers.iter().enumerate() {
            streams.push((a, s, listen(srv.url.clone(), admin(a), stop.clone()).await));
        }
    }

    // Create as fast as the servers answer; caller k uses server k mod n as that server's admin.
    let seq = Arc::new(AtomicU64::new(0));
    let created: Arc<Mutex<Vec<HashSet<String>>>> = Arc::new(Mutex::new(vec![HashSet::new(); n]));
    let mut tasks = Vec::new();
    for k in 0..callers as usize {
        let s = k % n;
        let (ch, token) = connect_as(&servers[s].url, &admin(s)).await;
        let (seq, created) = (seq.clone(), created.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TenantServiceClient::new(ch);
            let mut lat = Vec::new();
            loop {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                if i >= tenants {
                    break lat;
                }
                let t0 = Instant::now();
                let t = c
                    .create_tenant(bearer(
                        tpb::CreateTenantRequest {
                            name: format!("Scale Co {i}"),
                            admin_email: format!("o{i}@scale.test"),
                        },
                        &token,
                    ))
                    .await
                    .expect("create")
                    .into_inner();
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                created.lock().expect("created")[s].insert(t.tenant.expect("tenant").id);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("caller"));
    }
    lat.sort_by(f64::total_cmp);

    // Until every tenant is active and every welcome email written.
    let control = database::Db::connect(&db.url).await.expect("database");
    let Some(pg) = control.postgres().cloned() else { unreachable!("PostgreSQL only") };
    let deadline = Instant::now() + Duration::from_secs(600);
    let emails = || -> usize {
        workers.iter().map(|w| std::fs::read_dir(w.data_dir().join("mail")).map(|d| d.count()).unwrap_or(0)).sum()
    };
    loop {
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE status = 'active'")
            .fetch_one(&pg)
            .await
            .expect("count");
        if active as u64 == tenants && emails() >= tenants as usize {
            break;
        }
        assert!(Instant::now() < deadline, "{active} of {tenants} tenants active after 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (first, last): (i64, i64) =
        sqlx::query_as("SELECT MIN(created_at), MAX(activated_at) FROM tenants").fetch_one(&pg).await.expect("times");
    let secs = (last - first) as f64 / 1e6;
    // Late or duplicate notifications would still be on their way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let peaks = rss.await.expect("sampler");

    let created = created.lock().expect("created").clone();
    let (mut expected, mut received, mut missing, mut duplicated, mut foreign) = (0, 0, 0, 0, 0);
    for (a, _, arrivals) in &streams {
        let got = arrivals.lock().expect("arrivals").clone();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for id in &got {
            *count.entry(id.as_str()).or_default() += 1;
        }
        expected += created[*a].len();
        received += got.len();
        missing += created[*a].iter().filter(|id| !count.contains_key(id.as_str())).count();
        duplicated += count.values().map(|c| c - 1).sum::<usize>();
        foreign += count.keys().filter(|id| !created[*a].contains(**id)).count();
    }
    let mails = emails();
    println!(
        "| {n} + {n} | {tenants} | {:.1} | {:.1} | {secs:.1} s | {:.1}/s | {} streams: {expected} expected, {received} received, \
         {missing} missing, {duplicated} duplicated, {foreign} foreign | {mails} | {} |",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        tenants as f64 / secs,
        streams.len(),
        peaks.iter().map(|(p, m)| format!("{p} {m:.0} MiB")).collect::<Vec<_>>().join(", "),
    );
    assert_eq!((missing, duplicated, foreign), (0, 0, 0), "every notification once, to its own admin");
    assert_eq!(mails, tenants as usize, "one welcome email per tenant");
}

#[tokio::main]
async fn main() {
    let tenants = env_num("BENCH_SCALE_TENANTS", 300);
    let callers = env_num("BENCH_SCALE_CALLERS", 20);
    println!("scale benchmark: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("\n## Servers and workers on one PostgreSQL ({callers} callers; create latency in ms)\n");
    println!(
        "| servers + workers | tenants | create p50 | p99 | first request to last active | provisioning rate | notifications | welcome emails | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in [1, 2] {
        topology(n, tenants, callers).await;
    }
}
