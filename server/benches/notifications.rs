//! Notification figures, against the real binaries:
//!
//! 1. Toast latency: from the worker marking a tenant active (`activated_at`,
//!    written in the activation transaction) to the toast arriving on a
//!    `Subscribe` stream held open on a `server` process, with the worker
//!    embedded in the server and as a `worker` process beside a server with
//!    `WORKER=off`: `BENCH_TOASTS` (40) tenants, one every 300 ms.
//! 2. Idle streams: `BENCH_STREAMS` (10000) open `Subscribe` streams on one server,
//!    over 100 HTTP/2 connections; the server's RSS before and after, and the
//!    time to open them.
//!
//! On SQLite and on the PostgreSQL server named by `TEST_DATABASE_URL`.
//! Run with `cargo xtask bench`, or `TEST_DATABASE_URL=... cargo bench -p server
//! --bench notifications`; `BENCH_BACKENDS` (`sqlite,postgres`) picks the backends.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobengine::testing::{TestDb, Which, percentile};
use proto::notifications::v1 as npb;
use proto::notifications::v1::notification_service_client::NotificationServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;

mod common;
use common::*;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `embedded`: the server runs the worker itself (the default setup); else a
/// `worker` process does, beside a server with `WORKER=off`.
async fn toast_latency(which: Which, n: u64, embedded: bool) {
    let db = TestDb::new(which).await;
    let srv = Server::start(&db, if embedded { "embedded" } else { "off" });
    let _worker = (!embedded).then(|| WorkerProc::start(&db));
    let (ch, token) = connect(&srv.url).await;
    let mut stream = NotificationServiceClient::new(ch.clone())
        .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
        .await
        .expect("subscribe")
        .into_inner();
    let reader = tokio::spawn(async move {
        let mut arrived: HashMap<String, i64> = HashMap::new();
        while arrived.len() < n as usize {
            let msg = tokio::time::timeout(Duration::from_secs(120), stream.message())
                .await
                .expect("toasts keep coming")
                .expect("stream")
                .expect("open");
            if let Some(npb::subscribe_response::Event::Notification(note)) = msg.event {
                let id = note.link.rsplit('/').next().unwrap_or_default().to_owned();
                arrived.insert(id, now_ms());
            }
        }
        arrived
    });
    let mut tenants = TenantServiceClient::new(ch.clone());
    for i in 0..n {
        tenants
            .create_tenant(bearer(
                tpb::CreateTenantRequest { name: format!("Toast Co {i}"), admin_email: format!("t{i}@toast.test") },
                &token,
            ))
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let arrived = reader.await.expect("reader");
    let mut lat = Vec::new();
    for (id, at) in &arrived {
        let t = tenants.get_tenant(bearer(tpb::GetTenantRequest { id: id.clone() }, &token)).await.expect("get");
        lat.push((at - t.into_inner().activated_at_unix_ms) as f64);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "| {which:?} | {} | {} | {:.0} | {:.0} | {:.0} |",
        if embedded { "worker embedded in the server" } else { "worker and server in separate processes" },
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

async fn idle_streams(which: Which, n: usize) {
    const CONNECTIONS: usize = 100;
    let db = TestDb::new(which).await;
    let srv = Server::start(&db, "off");
    let (_, token) = connect(&srv.url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = srv.rss_mib();
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(Channel::from_shared(srv.url.clone()).expect("uri").connect().await.expect("connect"));
    }
    let per = n.div_ceil(CONNECTIONS);
    let mut opening = Vec::new();
    for ch in channels {
        let token = token.clone();
        opening.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per);
            for _ in 0..per {
                let s = NotificationServiceClient::new(ch.clone())
                    .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
                    .await
                    .expect("subscribe")
                    .into_inner();
                mine.push(s);
            }
            mine
        }));
    }
    for o in opening {
        streams.extend(o.await.expect("opener"));
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = srv.rss_mib();
    println!(
        "| {which:?} | {} | {:.1} s | {before:.0} MiB | {after:.0} MiB | {:.1} KiB |",
        streams.len(),
        opened.as_secs_f64(),
        (after - before) * 1024.0 / streams.len() as f64
    );
}

#[tokio::main]
async fn main() {
    let toasts = env_num("BENCH_TOASTS", 40);
    let streams = env_num("BENCH_STREAMS", 10_000) as usize;
    let which = backends();
    println!("notifications benchmark: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("\n## Toast latency, tenant active to toast on the stream (ms)\n");
    println!("| backend | setup | toasts | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for w in &which {
        toast_latency(*w, toasts, true).await;
        toast_latency(*w, toasts, false).await;
    }
    println!("\n## Idle Subscribe streams on one server\n");
    println!("| backend | streams | time to open | server RSS before | after | per stream |");
    println!("|---|---|---|---|---|---|");
    for w in &which {
        idle_streams(*w, streams).await;
    }
}
