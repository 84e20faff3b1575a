//! The `/hangfire` dashboard at scale, against the real `server` binary over
//! gRPC: `server seed-jobs --count BENCH_DASH_JOBS` (1,000,000) fills the
//! database (988 ‰ succeeded, 10 ‰ dead, 1 ‰ enqueued, 1 ‰ scheduled, over the
//! last day, each with a history row), then a server (`WORKER=off`, so the
//! figures hold still) answers `BENCH_DASH_CALLS` (200) calls of every RPC the
//! dashboard makes, one at a time on one connection, after 5 unmeasured ones.
//! The clock runs from the client's call to its decoded answer.
//!
//! On SQLite and on the PostgreSQL server named by `TEST_DATABASE_URL`
//! (`BENCH_BACKENDS`). Run with
//! `TEST_DATABASE_URL=... cargo bench -p server --bench dashboard`.

use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which, percentile};
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;
use testkit::Process;
use tonic::transport::Channel;

mod common;
use common::*;

/// Seeds `count` jobs through the `seed-jobs` command; its wall time.
fn seed(db: &TestDb, count: u64) -> Duration {
    let data = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut p = Process::command(env!("CARGO_BIN_EXE_server"))
        .arg("seed-jobs")
        .arg("--count")
        .arg(count.to_string())
        .env("DATABASE_URL", &db.url)
        .env("DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .echo("[seed-jobs] ")
        .spawn()
        .expect("start seed-jobs");
    let status = p.wait_exit(Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "seed-jobs failed: {status}");
    started.elapsed()
}

type Call = Box<dyn Fn(JobServiceClient<Channel>, String) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

fn list(state: pb::JobState, text: &'static str) -> Call {
    Box::new(move |mut c, token| {
        Box::pin(async move {
            let req =
                pb::ListJobsRequest { state: state.into(), text: text.into(), page_size: 50, ..Default::default() };
            c.list_jobs(bearer(req, &token)).await.expect("ListJobs");
        })
    })
}

fn throughput(minutes: u32, bucket_seconds: u32) -> Call {
    Box::new(move |mut c, token| {
        Box::pin(async move {
            let req = pb::GetThroughputRequest { minutes, bucket_seconds };
            c.get_throughput(bearer(req, &token)).await.expect("GetThroughput");
        })
    })
}

fn calls(count: u64) -> Vec<(&'static str, Call)> {
    let get_job: Call = Box::new(move |mut c, token| {
        Box::pin(async move {
            // Any seeded job; the ids are 1..=count.
            let id = 1 + (rand_u64() % count) as i64;
            c.get_job(bearer(pb::GetJobRequest { id }, &token)).await.expect("GetJob");
        })
    });
    vec![
        (
            "GetCounts",
            Box::new(|mut c: JobServiceClient<Channel>, token: String| {
                Box::pin(async move {
                    c.get_counts(bearer(pb::GetCountsRequest {}, &token)).await.expect("GetCounts");
                }) as futures::future::BoxFuture<'static, ()>
            }),
        ),
        ("ListJobs succeeded", list(pb::JobState::Succeeded, "")),
        ("ListJobs dead", list(pb::JobState::Dead, "")),
        ("ListJobs enqueued", list(pb::JobState::Enqueued, "")),
        ("ListJobs scheduled", list(pb::JobState::Scheduled, "")),
        ("ListJobs processing (empty)", list(pb::JobState::Processing, "")),
        // One tenant's jobs: 1 in 5,000.
        ("ListJobs succeeded text \"t4242\"", list(pb::JobState::Succeeded, "\"t4242\"")),
        // Common in the state: the page fills at once.
        ("ListJobs succeeded text \"welcome\"", list(pb::JobState::Succeeded, "welcome")),
        ("ListJobs dead text \"refused\"", list(pb::JobState::Dead, "refused")),
        // Common in another state, absent from this one: the worst cases, in
        // the big state and in a small one.
        ("ListJobs succeeded text \"refused\"", list(pb::JobState::Succeeded, "refused")),
        ("ListJobs dead text \"welcome\"", list(pb::JobState::Dead, "welcome")),
        ("GetJob", get_job),
        ("GetThroughput realtime (5 min, 1 s)", throughput(5, 1)),
        ("GetThroughput history (7 days, 1 h)", throughput(7 * 24 * 60, 3600)),
        (
            "ListWorkers",
            Box::new(|mut c: JobServiceClient<Channel>, token: String| {
                Box::pin(async move {
                    c.list_workers(bearer(pb::ListWorkersRequest {}, &token)).await.expect("ListWorkers");
                }) as futures::future::BoxFuture<'static, ()>
            }),
        ),
    ]
}

/// A cheap random number (xorshift on the clock), enough to spread GetJob ids.
fn rand_u64() -> u64 {
    use std::cell::Cell;
    thread_local!(static S: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    ));
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

async fn run(which: Which, count: u64, n: u64) {
    let db = TestDb::new(which).await;
    let took = seed(&db, count);
    println!(
        "\n## {which:?}: {count} jobs seeded in {:.1} s ({:.0} jobs/s, `server seed-jobs`)\n",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    let server = Server::start(&db, "off");
    let (ch, token) = connect(&server.url).await;
    let client = JobServiceClient::new(ch);
    println!("| RPC | calls | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (name, call) in calls(count) {
        for _ in 0..5 {
            call(client.clone(), token.clone()).await;
        }
        let mut lat = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = Instant::now();
            call(client.clone(), token.clone()).await;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "| {name} | {n} | {:.2} | {:.2} | {:.2} |",
            percentile(&lat, 50.0),
            percentile(&lat, 95.0),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
}

#[tokio::main]
async fn main() {
    let count = env_num("BENCH_DASH_JOBS", 1_000_000);
    let n = env_num("BENCH_DASH_CALLS", 200);
    println!(
        "dashboard benchmark: {count} jobs, {n} calls per RPC, one connection, {} cores, profile {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    for which in backends() {
        run(which, count, n).await;
    }
}
