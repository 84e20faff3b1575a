//! Our engine beside graphile-worker 0.17.3, under one driver, in one run, so the
//! README can show a ratio instead of an absolute figure from another day.
//!
//! # What is compared, and how
//! - **PostgreSQL**: a throw-away cluster started here with the server's default
//!   settings, **fsync on**, on this machine (the driver, the worker process and
//!   PostgreSQL share its cores: the output says how many).
//! - **Workers**: one process each, at the same concurrency (10, and our default
//!   16; graphile-worker's own default is 1). Ours is the `worker` binary of this
//!   build profile; graphile-worker runs its CLI (`tools/peers/graphile-worker`,
//!   installed by `cargo xtask bench`) with its defaults otherwise.
//! - **Jobs**: no-op handlers on both sides (`diag.noop` and `tasks/noop.js`).
//!   Latency uses a ping job on both sides (`diag.ping`, `tasks/ping.js`) whose
//!   first line sends one UDP datagram to the driver.
//! - **Throughput**: the clock starts just before the first enqueue call (N jobs
//!   in batches of 1,000, each side's batch API: `Jobs::enqueue_many`, the
//!   statement of graphile-worker's `addJobs`) with the worker idle and ready,
//!   and stops when the driver sees all N finished (polled every 20 ms).
//! - **Bulk enqueue**: N jobs in batches of 1,000 into an empty queue with no
//!   worker running; the clock brackets the enqueue calls. graphile-worker's
//!   batches are the statement its `addJobs` sends (the specs as JSON, the new
//!   jobs' rows back); a second figure times `add_jobs` called by hand with the
//!   task names and answering only a count, cheaper than its API.
//! - **Enqueue-to-start**: on an idle queue, from just before the enqueue call to
//!   the datagram's arrival, one job at a time, 1,000 samples (at 200 the p99
//!   was the second-worst sample and moved by 2 ms between runs); each round
//!   also prints the span's two parts, the enqueue call (its commit waits for
//!   the flush to disk) and from its return to the datagram; for ours, that
//!   second part split once more at the start of the claim that took the job
//!   (its `attempted_at`, the worker's reading of the same wall clock the driver
//!   reads just before each call). Each system's
//!   samples start on a settled cluster: no autovacuum still cleaning the
//!   earlier parts' databases, and a fresh checkpoint.
//! - **The floor under it**: each round, before the systems' samples, 1,000
//!   one-row `INSERT`s on a connection of the driver's own (no pool, no
//!   liveness ping), each committed with its flush to disk and, interleaved
//!   with them, as many with `synchronous_commit = off` (the round trip and the
//!   insert alone). Every durable enqueue waits for such a flush before any
//!   worker can see its job.
//! - **Rounds**: the systems alternate within each round (which goes first flips
//!   each round); each figure is the median over rounds.
//!
//! Run with `cargo xtask bench` or, with the peer installed,
//! `cargo bench -p worker --bench peers`. Sizes: `BENCH_JOBS` (20000),
//! `BENCH_ROUNDS` (3), `BENCH_CONCURRENCY` (`10,16`), `BENCH_LATENCY_SAMPLES`
//! (1000), `BENCH_PARTS` (`throughput,bulk,latency`); `GRAPHILE_WORKER_DIR`
//! (default `tools/peers/graphile-worker`);
//! `BENCH_WORKER_BIN` (default: this build's `worker`) to run another build of
//! ours, e.g. a copy kept from before a change, for an A/B under one driver.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use database::{Db, query};
use jobengine::builtin::{Noop, Ping};
use jobengine::testing::percentile;
use jobengine::{Clock, Job, Jobs, SystemClock};
use testkit::{PgCluster, Process};

mod common;
use common::{PeakRss, PingSink, env_list, env_num, spawn_worker, stop, wait_registered};

const BATCH: usize = 1000;

/// The job queues under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Ours,
    Graphile,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ours => "ours",
            System::Graphile => "graphile-worker 0.17.3",
        }
    }
}

/// One system's database on the benchmark cluster: its worker, its client.
struct Subject {
    system: System,
    url: String,
    db: Db,
    /// Ours only: the engine's client.
    jobs: Option<Jobs>,
    peer_dir: PathBuf,
}

impl Subject {
    async fn new(system: System, cluster: &PgCluster, peer_dir: &Path, tag: &str) -> Self {
        let (url, db) = create_database(cluster, &format!("bench_{tag}")).await;
        let mut subject = Self { system, url, db, jobs: None, peer_dir: peer_dir.to_owned() };
        match system {
            System::Ours => subject.jobs = Some(Jobs::connect(&subject.url).await.expect("engine")),
            System::Graphile => {
                // The schema, before any worker: as its own CLI installs it.
                let status = subject.graphile_command(&["--schema-only"]).status().expect("run graphile-worker");
                assert!(status.success(), "graphile-worker --schema-only failed");
            }
        }
        subject
    }

    fn graphile_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("node");
        cmd.current_dir(&self.peer_dir)
            .arg("node_modules/graphile-worker/dist/cli.js")
            .args(["--connection", &self.url])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Starts one worker process at `concurrency` and waits until it is ready.
    async fn start_worker(&self, concurrency: usize) -> Process {
        let c = concurrency.to_string();
        match self.system {
            System::Ours => {
                let worker = spawn_worker(&self.url, &[("WORKER_CONCURRENCY", &c)]);
                wait_registered(&self.db, worker.pid()).await;
                worker
            }
            System::Graphile => {
                let mut worker = Process::from_command(self.graphile_command(&["--jobs", &c]))
                    .name("graphile-worker")
                    .spawn()
                    .expect("start graphile-worker");
                worker.wait_for_log_line("looking for jobs", Duration::from_secs(30)).expect("graphile-worker ready");
                worker
            }
        }
    }

    /// Enqueues `n` no-op jobs in batches through each side's batch API.
    async fn enqueue_noops(&self, n: usize) {
        match self.system {
            System::Ours => {
                let jobs = self.jobs.as_ref().expect("engine");
                let proto = jobs.new_job(&Noop {}, None).expect("job");
                for chunk in vec![proto; n].chunks(BATCH) {
                    jobs.enqueue_many(chunk).await.expect("enqueue");
                }
            }
            System::Graphile => {
                // The statement graphile-worker's own `addJobs` sends
                // (`makeAddJobs` in its dist/helpers.js): the specs as one JSON
                // array, every new job's row back.
                let mut left = n;
                while left > 0 {
                    let k = left.min(BATCH);
                    let specs = format!("[{}]", vec![r#"{"identifier":"noop","payload":{}}"#; k].join(","));
                    let pool = self.db.postgres().expect("a PostgreSQL database");
                    let rows = sqlx::query(
                        "SELECT * FROM graphile_worker.add_jobs(
                             ARRAY(SELECT json_populate_recordset(NULL::graphile_worker.job_spec, $1::json)),
                             $2::boolean)",
                    )
                    .bind(specs)
                    .bind(None::<bool>)
                    .fetch_all(pool)
                    .await
                    .expect("add_jobs")
                    .len();
                    assert_eq!(rows, k, "add_jobs returned {rows} jobs for {k}");
                    left -= k;
                }
            }
        }
    }

    /// graphile-worker's `add_jobs` called by hand, answering a count instead of
    /// the jobs (the form this bench used before 2026-11-30): what a caller who
    /// bypasses its `addJobs` pays, printed beside the API's figure.
    async fn enqueue_noops_count_only(&self, n: usize) {
        let mut left = n;
        while left > 0 {
            let k = left.min(BATCH);
            let names = vec!["noop"; k].join(",");
            query(
                "SELECT COUNT(*) FROM graphile_worker.add_jobs(ARRAY(
                    SELECT ROW(t, '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
                    FROM unnest(string_to_array($1, ',')) AS t))",
            )
            .bind(names)
            .scalar::<i64>(self.db.write())
            .await
            .expect("add_jobs");
            left -= k;
        }
    }

    async fn enqueue_ping(&self, port: u16, seq: u64) {
        match self.system {
            System::Ours => {
                self.jobs.as_ref().expect("engine").enqueue(&Ping { port, seq }).await.expect("enqueue");
            }
            System::Graphile => {
                query("SELECT (graphile_worker.add_job('ping', json_build_object('port', $1::int, 'seq', $2::bigint))).id")
                    .bind(i64::from(port))
                    .bind(seq as i64)
                    .scalar::<i64>(self.db.write())
                    .await
                    .expect("add_job");
            }
        }
    }

    /// Jobs not yet finished.
    async fn remaining(&self) -> i64 {
        let sql = match self.system {
            System::Ours => "SELECT COUNT(*) FROM jobs WHERE state IN ('enqueued', 'scheduled', 'processing')",
            // graphile-worker deletes a job when it succeeds.
            System::Graphile => "SELECT COUNT(*) FROM graphile_worker._private_jobs",
        };
        query(sql).scalar::<i64>(self.db.read()).await.expect("count")
    }
}

/// Jobs per second through one worker at `concurrency`, and its peak RSS in KiB.
async fn throughput(s: &Subject, n: usize, concurrency: usize) -> (f64, u64) {
    let child = s.start_worker(concurrency).await;
    let sampler = PeakRss::start(child.pid());
    let t = Instant::now();
    s.enqueue_noops(n).await;
    while s.remaining().await > 0 {
        assert!(t.elapsed() < Duration::from_secs(600), "{} did not finish {n} jobs in 10 minutes", s.system.name());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let peak = sampler.finish();
    stop(child);
    (rate, peak)
}

/// Bulk enqueue into an empty queue, no worker: jobs per second.
async fn bulk_enqueue(s: &Subject, n: usize) -> f64 {
    let t = Instant::now();
    s.enqueue_noops(n).await;
    n as f64 / t.elapsed().as_secs_f64()
}

/// One system's enqueue-to-start samples, in milliseconds, each sorted: the
/// whole span, and its two parts (the enqueue call until it returned, which
/// holds the commit's flush to disk; from that return to the datagram).
struct Latency {
    total: Vec<f64>,
    call: Vec<f64>,
    after: Vec<f64>,
    /// Ours only: from the call's return to the start of the claim that took
    /// the job, and from that start to the datagram.
    claim: Option<(Vec<f64>, Vec<f64>)>,
}

/// A fresh database `name` on the benchmark cluster: its URL and a handle on it.
async fn create_database(cluster: &PgCluster, name: &str) -> (String, Db) {
    let admin = Db::connect(&cluster.url).await.expect("connect to the benchmark cluster");
    query(format!("CREATE DATABASE {name}")).execute(admin.write()).await.expect("create database");
    admin.close().await;
    let base = cluster.url.rsplit_once('/').map_or(cluster.url.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    let db = Db::connect(&url).await.expect("connect");
    (url, db)
}

/// Enqueue-to-start on an idle queue. The cluster is first let settle from the
/// bench's earlier parts (a checkpoint, and no autovacuum left cleaning their
/// databases), so that their after-effects land on neither system's samples.
async fn latency(s: &Subject, samples: usize, concurrency: usize) -> Latency {
    quiesce(&s.db).await;
    let child = s.start_worker(concurrency).await;
    let sink = PingSink::bind();
    let mut l = Latency { total: Vec::new(), call: Vec::new(), after: Vec::new(), claim: None };
    let mut walls = Vec::with_capacity(samples);
    for seq in 0..samples as u64 {
        walls.push(SystemClock.now());
        let t = Instant::now();
        s.enqueue_ping(sink.port(), seq).await;
        let returned = t.elapsed();
        sink.wait(seq);
        let total = t.elapsed();
        l.total.push(total.as_secs_f64() * 1000.0);
        l.call.push(returned.as_secs_f64() * 1000.0);
        l.after.push(total.saturating_sub(returned).as_secs_f64() * 1000.0);
        // Let the job finish: an idle queue for the next sample.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(child);
    if s.system == System::Ours {
        // One job per sample, enqueued in order: ids ascend with the samples.
        let claimed_at: Vec<i64> = query("SELECT attempted_at FROM jobs WHERE kind = $1 ORDER BY id")
            .bind(Ping::KIND)
            .fetch_all::<(i64,)>(s.db.read())
            .await
            .expect("attempted_at")
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(claimed_at.len(), samples, "one job per sample");
        let to_claim: Vec<f64> = claimed_at.iter().zip(&walls).map(|(c, w)| (c - w) as f64 / 1000.0).collect();
        let mut woke: Vec<f64> = to_claim.iter().zip(&l.call).map(|(c, call)| c - call).collect();
        let mut ran: Vec<f64> = l.total.iter().zip(&to_claim).map(|(t, c)| t - c).collect();
        woke.sort_by(|a, b| a.total_cmp(b));
        ran.sort_by(|a, b| a.total_cmp(b));
        l.claim = Some((woke, ran));
    }
    for v in [&mut l.total, &mut l.call, &mut l.after] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    l
}

/// The floor under any durable enqueue: a one-row `INSERT`'s commit on a
/// connection of its own, with its flush to disk and without
/// (`synchronous_commit = off`), interleaved, paced as the latency samples are;
/// milliseconds, each sorted.
async fn commit_floor(db: &Db, url: &str, samples: usize) -> (Vec<f64>, Vec<f64>) {
    use sqlx::Connection;
    quiesce(db).await;
    let mut flushed = sqlx::PgConnection::connect(url).await.expect("connect");
    let mut unflushed = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("SET synchronous_commit = off").execute(&mut unflushed).await.expect("set");
    let (mut with, mut without) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples as i64 {
        for (conn, out) in [(&mut flushed, &mut with), (&mut unflushed, &mut without)] {
            let t = Instant::now();
            sqlx::query("INSERT INTO commit_floor VALUES ($1)").bind(i).execute(&mut *conn).await.expect("insert");
            out.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for v in [&mut with, &mut without] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    (with, without)
}

/// Waits (at most 60 s) until no autovacuum worker runs on the cluster, then
/// checkpoints it.
async fn quiesce(db: &Db) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let busy: i64 = query("SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
            .scalar(db.read())
            .await
            .expect("pg_stat_activity");
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    query("CHECKPOINT").execute(db.write()).await.expect("checkpoint");
}

/// One (system, concurrency): its jobs/s and peak RSS (MiB), one entry per round.
type Runs = ((System, usize), Vec<f64>, Vec<f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 50.0)
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_JOBS", 20_000);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let samples = env_num("BENCH_LATENCY_SAMPLES", 1000);
    let concurrencies: Vec<usize> = env_list("BENCH_CONCURRENCY", "10,16")
        .iter()
        .map(|c| c.parse().expect("BENCH_CONCURRENCY: numbers separated by commas"))
        .collect();
    let peer_dir = std::env::var_os("GRAPHILE_WORKER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/peers/graphile-worker"));
    assert!(
        peer_dir.join("node_modules/graphile-worker").is_dir(),
        "graphile-worker is not installed in {}: run `npm ci` there (`cargo xtask bench` does)",
        peer_dir.display()
    );
    let cluster = PgCluster::start(true).expect("start PostgreSQL");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "peers benchmark: {cores} cores shared by driver, worker and PostgreSQL 15 (default settings, fsync on); \
         {n} no-op jobs per run, {rounds} rounds (medians), batches of {BATCH}; build profile of this bench"
    );
    let systems = [System::Ours, System::Graphile];
    let mut rates: Vec<Runs> = Vec::new();
    let mut bulk: Vec<(System, Vec<f64>)> = systems.iter().map(|&s| (s, Vec::new())).collect();
    let mut lat: Vec<(System, Vec<f64>, Vec<f64>)> = systems.iter().map(|&s| (s, Vec::new(), Vec::new())).collect();
    let mut count_only = Vec::new();
    let mut floor_p99: (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let parts = env_list("BENCH_PARTS", "throughput,bulk,latency");
    let part = |name: &str| parts.iter().any(|p| p == name);
    let mut db_seq = 0;
    let mut floor: Option<(String, Db)> = None;
    for round in 0..rounds {
        let order: Vec<System> =
            if round % 2 == 0 { systems.to_vec() } else { systems.iter().rev().copied().collect() };
        for &c in concurrencies.iter().filter(|_| part("throughput")) {
            for &system in &order {
                db_seq += 1;
                let s = Subject::new(system, &cluster, &peer_dir, &format!("t{db_seq}")).await;
                let (rate, rss) = throughput(&s, n, c).await;
                println!(
                    "  round {round}: {} c={c}: {rate:.0} jobs/s, worker peak RSS {} MiB",
                    system.name(),
                    rss / 1024
                );
                match rates.iter_mut().find(|(k, _, _)| *k == (system, c)) {
                    Some((_, r, m)) => {
                        r.push(rate);
                        m.push(rss as f64 / 1024.0);
                    }
                    None => rates.push(((system, c), vec![rate], vec![rss as f64 / 1024.0])),
                }
            }
        }
        if part("latency") {
            if floor.is_none() {
                let (url, db) = create_database(&cluster, "bench_floor").await;
                query("CREATE TABLE commit_floor (x bigint)").execute(db.write()).await.expect("create table");
                floor = Some((url, db));
            }
            let (url, db) = floor.as_ref().expect("created above");
            let (with, without) = commit_floor(db, url, samples).await;
            println!(
                "  round {round}: a one-row INSERT's commit, connection of its own: p50 {:.2} / p99 {:.2} ms \
                 with its flush to disk, p50 {:.2} / p99 {:.2} ms without (synchronous_commit off)",
                percentile(&with, 50.0),
                percentile(&with, 99.0),
                percentile(&without, 50.0),
                percentile(&without, 99.0),
            );
            floor_p99.0.push(percentile(&with, 99.0));
            floor_p99.1.push(percentile(&without, 99.0));
        }
        for &system in &order {
            if part("bulk") {
                db_seq += 1;
                let s = Subject::new(system, &cluster, &peer_dir, &format!("b{db_seq}")).await;
                let rate = bulk_enqueue(&s, n).await;
                println!("  round {round}: {} bulk enqueue: {rate:.0} jobs/s", system.name());
                if let Some((_, v)) = bulk.iter_mut().find(|(k, _)| *k == system) {
                    v.push(rate);
                }
                if system == System::Graphile {
                    db_seq += 1;
                    let s = Subject::new(system, &cluster, &peer_dir, &format!("b{db_seq}")).await;
                    let t = Instant::now();
                    s.enqueue_noops_count_only(n).await;
                    let rate = n as f64 / t.elapsed().as_secs_f64();
                    println!(
                        "  round {round}: {} bulk enqueue, add_jobs by hand, count only: {rate:.0} jobs/s",
                        system.name()
                    );
                    count_only.push(rate);
                }
            }
            if !part("latency") {
                continue;
            }
            db_seq += 1;
            let s = Subject::new(system, &cluster, &peer_dir, &format!("l{db_seq}")).await;
            let l = latency(&s, samples, concurrencies[0]).await;
            let ms = &l.total;
            println!(
                "  round {round}: {} enqueue-to-start p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
                 the enqueue call alone p50 {:.2} / p99 {:.2} ms, its return to start p50 {:.2} / p99 {:.2} ms",
                system.name(),
                percentile(ms, 50.0),
                percentile(ms, 90.0),
                percentile(ms, 99.0),
                ms.last().copied().unwrap_or(f64::NAN),
                percentile(&l.call, 50.0),
                percentile(&l.call, 99.0),
                percentile(&l.after, 50.0),
                percentile(&l.after, 99.0),
            );
            if let Some((woke, ran)) = &l.claim {
                println!(
                    "  round {round}: {}: from the call's return to its claim's start p50 {:.2} / p99 {:.2} ms, \
                     from the claim's start to the handler's first line p50 {:.2} / p99 {:.2} ms",
                    system.name(),
                    percentile(woke, 50.0),
                    percentile(woke, 99.0),
                    percentile(ran, 50.0),
                    percentile(ran, 99.0),
                );
            }
            if let Some((_, p50, p99)) = lat.iter_mut().find(|(k, _, _)| *k == system) {
                p50.push(percentile(ms, 50.0));
                p99.push(percentile(ms, 99.0));
            }
        }
    }

    println!("\n| | {} | bulk enqueue jobs/s | enqueue→start p50 / p99 | worker peak RSS |", {
        concurrencies.iter().map(|c| format!("jobs/s c={c}")).collect::<Vec<_>>().join(" | ")
    });
    println!("|---|{}---|---|---|", "---|".repeat(concurrencies.len()));
    let figure = |system: System, c: usize| {
        rates.iter().find(|(k, _, _)| *k == (system, c)).map(|(_, r, m)| (median(r.clone()), median(m.clone())))
    };
    for &system in &systems {
        let per_c: Vec<String> =
            concurrencies.iter().map(|&c| format!("{:.0}", figure(system, c).map_or(f64::NAN, |f| f.0))).collect();
        let b = bulk.iter().find(|(k, _)| *k == system).map_or(f64::NAN, |(_, v)| median(v.clone()));
        let (p50, p99) = lat
            .iter()
            .find(|(k, _, _)| *k == system)
            .map_or((f64::NAN, f64::NAN), |(_, a, b)| (median(a.clone()), median(b.clone())));
        let rss = concurrencies.iter().filter_map(|&c| figure(system, c).map(|f| f.1)).fold(0.0, f64::max);
        println!("| {} | {} | {b:.0} | {p50:.2} / {p99:.2} ms | {rss:.0} MiB |", system.name(), per_c.join(" | "));
    }
    let ratio = |c: usize| match (figure(System::Ours, c), figure(System::Graphile, c)) {
        (Some(a), Some(b)) => a.0 / b.0,
        _ => f64::NAN,
    };
    let ratios: Vec<String> = concurrencies.iter().map(|&c| format!("c={c}: {:.2}×", ratio(c))).collect();
    println!("\nthroughput, ours / graphile-worker (same run): {}", ratios.join(", "));
    if !floor_p99.0.is_empty() {
        println!(
            "enqueue-to-start's floor on this cluster and disk, a one-row INSERT's commit: p99 {:.2} ms with its \
             flush to disk, {:.2} ms without (medians over rounds)",
            median(floor_p99.0),
            median(floor_p99.1)
        );
    }
    let ours_bulk = bulk.iter().find(|(k, _)| *k == System::Ours).map_or(f64::NAN, |(_, v)| median(v.clone()));
    let peer_bulk = bulk.iter().find(|(k, _)| *k == System::Graphile).map_or(f64::NAN, |(_, v)| median(v.clone()));
    let hand = median(count_only);
    println!(
        "bulk enqueue, ours / graphile-worker: {:.2}× against its addJobs statement (the jobs back), \
         {:.2}× against add_jobs called by hand answering a count ({hand:.0} jobs/s)",
        ours_bulk / peer_bulk,
        ours_bulk / hand
    );
}
