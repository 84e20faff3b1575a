//! The job engine's figures, measured against real `worker` processes:
//! throughput of one worker on no-op jobs, enqueue-to-start latency on an idle
//! queue, time from `kill -9` of a worker holding a job to that job running again
//! (default settings), and worker RSS idle and under load. On SQLite and on the
//! PostgreSQL server named by `TEST_DATABASE_URL`.
//!
//! Run with `cargo xtask bench` (starts PostgreSQL), or
//! `TEST_DATABASE_URL=... cargo bench -p worker --bench engine`.
//! Sizes: `BENCH_JOBS` (default 20000), `BENCH_LATENCY_SAMPLES` (300),
//! `BENCH_KILL_RUNS` (5), `BENCH_BACKENDS` (`sqlite,postgres`).

use std::time::{Duration, Instant};

use jobengine::builtin::{Noop, Sleep};
use jobengine::testing::{TestDb, Which, percentile};
use jobengine::{JobState, Jobs, ListQuery};
use testkit::Signal;

mod common;
use common::{PeakRss, env_num, spawn_worker, stop};

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

async fn latency(which: Which, samples: usize) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let child = spawn_worker(&db.url, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..samples {
        jobs.enqueue(&Noop {}).await.expect("enqueue");
        // Idle queue: let the job finish before the next.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_succeeded(&jobs, samples as u64, Duration::from_secs(60)).await;
    stop(child);
    let mut ms: Vec<f64> = finished(&jobs).await.iter().map(|r| (r.0 - r.2) as f64 / 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{which:?}: enqueue-to-start on an idle queue, {samples} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        percentile(&ms, 100.0)
    );
}

async fn kill_recovery(which: Which, runs: usize) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut secs = Vec::new();
    for run in 0..runs {
        let a = spawn_worker(&db.url, &[]);
        let e = jobs.enqueue(&Sleep { ms: 3000 }).await.expect("enqueue");
        let first = loop {
            let j = jobs.get(e.id).await.expect("get").job;
            if j.state == JobState::Processing {
                break j.worker_id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Kill at a different point of the heartbeat cycle each run.
        tokio::time::sleep(Duration::from_millis((run as u64 * 677) % 3000)).await;
        let mut a = a;
        a.signal(Signal::SIGKILL).expect("kill -9");
        let killed = Instant::now();
        a.wait_exit(Duration::from_secs(10)).expect("the killed worker exits");
        let b = spawn_worker(&db.url, &[]);
        loop {
            // Running again, on the new worker (the interrupted attempt is given
            // back, so the attempt number does not tell).
            let d = jobs.get(e.id).await.expect("get");
            if d.job.state == JobState::Processing && d.job.worker_id != first {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(120), "job never ran again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        secs.push(killed.elapsed().as_secs_f64());
        stop(b);
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{which:?}: kill -9 to running again (default 10 s lease), {runs} runs: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&secs, 50.0),
        percentile(&secs, 99.0),
        percentile(&secs, 100.0)
    );
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_JOBS", 20_000);
    let samples = env_num("BENCH_LATENCY_SAMPLES", 300);
    let runs = env_num("BENCH_KILL_RUNS", 5);
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
        kill_recovery(which, runs).await;
    }
}
