//! The job engine's figures, measured against real `worker` processes:
//! throughput of one worker on no-op jobs, enqueue-to-start latency on an idle
//! queue (timed from the caller's side), and worker RSS idle and under load. On
//! SQLite and on the PostgreSQL server named by `TEST_DATABASE_URL`. (Recovery
//! after `kill -9` is measured by the `scale` bench.)
//!
//! Run with `cargo xtask bench` (starts PostgreSQL), or
//! `TEST_DATABASE_URL=... cargo bench -p worker --bench engine`.
//! Sizes: `BENCH_JOBS` (default 20000), `BENCH_LATENCY_SAMPLES` (300),
//! `BENCH_BACKENDS` (`sqlite,postgres`).

use std::time::{Duration, Instant};

use jobengine::builtin::{Noop, Ping};
use jobengine::testing::{TestDb, Which, percentile};
use jobengine::{JobState, Jobs, ListQuery};

mod common;
use common::{PeakRss, PingSink, env_num, spawn_worker, stop};

async fn wait_succeeded(jobs: &Jobs, n: u64, within: Duration) {
    let start = Instant::now();
    loop {
        let c = jobs.counts().await.expect("counts");
        if c.succeeded >= n {
            return;
        }
        assert!(start.elapsed() < within, "only {} of {n} jobs succeeded in {within:?}: {c:?}", c.succeeded);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finished jobs' (attempted_at, finished_at, created_at), from the dashboard API.
async fn finished(jobs: &Jobs) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = jobs
            .list(&ListQuery { state: JobState::Succeeded, kind: None, before_id: before, limit: 5000, text: None })
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        out.extend(page.iter().map(|j| (j.attempted_at.unwrap_or(0), j.finished_at.unwrap_or(0), j.created_at)));
    }
    out
}

async fn throughput(which: Which, n: usize) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    // Idle RSS first, on an empty queue.
    let idle = spawn_worker(&db.url, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = idle.rss_kib();
    stop(idle);

    let proto = jobs.new_job(&Noop {}, None).expect("job");
    let t = Instant::now();
    for chunk in vec![proto; n].chunks(1000) {
        jobs.enqueue_many(chunk).await.expect("enqueue");
    }
    let enqueue_rate = n as f64 / t.elapsed().as_secs_f64();
    let child = spawn_worker(&db.url, &[("WORKER_CONCURRENCY", "64")]);
    let sampler = PeakRss::start(child.pid());
    wait_succeeded(&jobs, n as u64, Duration::from_secs(600)).await;
    let peak_rss = sampler.finish();
    stop(child);
    let rows = finished(&jobs).await;
    let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let secs = (last - first) as f64 / 1e6;
    println!(
        "{which:?}: throughput {:.0} jobs/s ({n} no-op jobs in {secs:.2} s, one worker, concurrency 64); \
         bulk enqueue {enqueue_rate:.0} jobs/s; worker RSS idle {} MiB, under load peak {} MiB",
        n as f64 / secs,
        idle_rss / 1024,
        peak_rss / 1024
    );
}

/// Enqueue-to-start on an idle queue, the worker in another process, timed
/// from the caller's side: just before the enqueue call to the ping job's
/// first line (a UDP datagram back to the bench).
async fn latency(which: Which, samples: usize) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let child = spawn_worker(&db.url, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sink = PingSink::bind();
    let mut ms = Vec::with_capacity(samples);
    for seq in 0..samples as u64 {
        let t = Instant::now();
        jobs.enqueue(&Ping { port: sink.port(), seq }).await.expect("enqueue");
        sink.wait(seq);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let the job finish: an idle queue for the next sample.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(child);
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{which:?}: enqueue-to-start on an idle queue (worker in another process, clock from just before the \
         enqueue call to the job's first line), {samples} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        percentile(&ms, 100.0)
    );
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_JOBS", 20_000);
    let samples = env_num("BENCH_LATENCY_SAMPLES", 300);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("job engine benchmark: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    for b in backends.split(',') {
        let which = match b.trim() {
            "sqlite" => Which::Sqlite,
            "postgres" => Which::Postgres,
            other => panic!("unknown backend {other:?} in BENCH_BACKENDS"),
        };
        throughput(which, n).await;
        latency(which, samples).await;
    }
}
