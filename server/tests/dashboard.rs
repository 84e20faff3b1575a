//! The dashboard's live counts: however many `WatchCounts` streams are open, the
//! server reads the counts once per tick (counted by `/metrics`'
//! `jobs_counts_queries_total`), and every stream still sees each change.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jobengine::testing::Which;
use proto::jobs::v1 as pb;
use server::grpc::counts_feed::TICK;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

jobengine::on_both!(watch_counts_streams_share_one_query_per_tick);

/// `jobs_counts_queries_total` from `/metrics` (the scrape's own read included).
async fn counts_queries(addr: SocketAddr) -> u64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    body.lines()
        .find_map(|l| l.strip_prefix("jobs_counts_queries_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no jobs_counts_queries_total:\n{body}"))
}

/// Reads `stream` until a message shows `succeeded` jobs.
async fn until_succeeded(stream: &mut tonic::Streaming<pb::JobCounts>, succeeded: u64) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let m = stream.message().await.expect("stream").expect("a message");
            if m.succeeded == succeeded {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no stream message showed {succeeded} succeeded jobs"));
}

async fn watch_counts_streams_share_one_query_per_tick(which: Which) {
    const STREAMS: usize = 8;
    let srv = start(which).await;
    let c = client(srv.addr).await;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut s =
            c.clone().watch_counts(pb::WatchCountsRequest { interval_ms: 200 }).await.expect("watch").into_inner();
        s.message().await.expect("stream").expect("the first message");
        streams.push(s);
    }
    let before = counts_queries(srv.addr).await;
    let started = Instant::now();
    for round in 1..=3 {
        c.clone()
            .enqueue_diagnostic(pb::EnqueueDiagnosticRequest { kind: "diag.noop".into(), ..Default::default() })
            .await
            .expect("enqueue");
        for s in &mut streams {
            until_succeeded(s, round).await;
        }
    }
    let elapsed = started.elapsed();
    // Less the second scrape's own read.
    let queries = counts_queries(srv.addr).await - before - 1;
    let ticks = elapsed.as_secs_f64() / TICK.as_secs_f64();
    assert!(
        queries as f64 <= ticks + 2.0,
        "{STREAMS} streams over {elapsed:?} made {queries} counts queries; one per tick would be about {ticks:.1}"
    );

    // Every stream gone, the shared reader stops; a new stream starts another.
    drop(streams);
    let mut again =
        c.clone().watch_counts(pb::WatchCountsRequest { interval_ms: 200 }).await.expect("watch").into_inner();
    let m = again.message().await.expect("stream").expect("a message");
    assert_eq!(m.succeeded, 3);
}
