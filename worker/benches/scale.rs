//! The engine at scale (issues 12 and 13): what a claim costs with a backlog,
//! bulk enqueue, one worker's throughput at concurrency 10 and 16 (alone, and
//! beside 10,000 scheduled jobs and 1,000 recurring schedules), how soon a
//! killed worker's job runs again elsewhere, how close to its due time a
//! scheduled job starts, and how soon a deleted running job stops. Real `worker` processes (this
//! bench's release build), on SQLite and on PostgreSQL.
//!
//! PostgreSQL is a cluster this bench starts itself with **fsync on** (default
//! settings otherwise, `testkit::PgCluster`), unless `BENCH_PG_URL` names a server;
//! the output says which.
//!
//! Run: `cargo bench -p worker --bench scale` (or `cargo xtask bench`).
//! Sizes: `BENCH_JOBS` (20000, throughput), `BENCH_CLAIM_BACKLOG` (20000; add
//! e.g. `1000000` for a second row), `BENCH_KILLS` (20), `BENCH_BACKENDS`
//! (`sqlite,postgres`), `BENCH_CONCURRENCY` (`10,16`), `BENCH_SAMPLES` (200,
//! scheduling and cancellation), `BENCH_PARTS`
//! (`claim,bulk,throughput,kill,sched,cancel,defs`; add `steady` for the
//! retention run: `BENCH_STEADY_RATE` 1000 jobs/s for `BENCH_STEADY_SECS` 600;
//! add `finished` for throughput beside `BENCH_FINISHED` (10,000,000) finished
//! jobs against an empty table, same run, `BENCH_ROUNDS` (3) rounds alternating
//! the two, medians and ratio; `BENCH_FILL_SLIVERS=1` adds the diagnostic of
//! `fill_slivers` on PostgreSQL, `BENCH_PG_STATS=1` prints per throughput run
//! the statements, tables and WAL of `pg_stat_statements` and the statistics
//! views and what the active backends were doing (sampled every 5 ms; it costs
//! the runs some throughput; needs `pg_stat_statements` loaded, so a
//! `BENCH_PG_URL` server)).
//!
//! Clocks: claim latency is the client's, around one `Store::fetch` of 10 (and,
//! on PostgreSQL, the server's `Execution Time` from `EXPLAIN ANALYZE`); the
//! previous claim statement is timed on the same data for comparison. Bulk
//! enqueue is the client's, around `Jobs::enqueue_many` of 1,000-job batches.
//! Throughput runs from just before the first enqueue call (the worker
//! registered and idle) to the driver seeing the last job succeed (polled every
//! 20 ms); until 2026-11-30 it ran from the first job's `attempted_at` to the
//! last one's `finished_at`, the worker's own timestamps. Kill recovery runs from `kill -9` returning to the job being
//! `processing` on the other worker (default 10 s lease, default 500 ms rescue).
//! Scheduling precision runs from a job's due time (chosen by the bench) to its
//! first line (a UDP datagram back); cancellation from just before the delete
//! call to the handler seeing it (a datagram too). `defs` repeats the throughput
//! run with 10,000 far-future scheduled jobs and 1,000 recurring schedules
//! present: waiting work should cost fetching nothing.

use std::time::{Duration, Instant};

use database::{Db, query};
use jobengine::builtin::{Hold, Noop, Ping, Sleep};
use jobengine::testing::{PgCluster, TestDb, percentile};
use jobengine::{JobState, Jobs, NewJob, Recurring};
use tokio_util::sync::CancellationToken;

mod common;
use common::{PingSink, env_list, env_num, spawn_worker, stop, wait_registered};

/// The claim statement before issue 13 (PostgreSQL), for comparison on the same data.
const OLD_PG_CLAIM: &str = "WITH due AS (
         SELECT id FROM jobs
         WHERE state IN ('enqueued', 'scheduled') AND queue = ANY($1) AND run_at <= $2
         ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
     ), claimed AS (
         UPDATE jobs j SET state = 'processing', attempt = j.attempt + 1, lease_seq = j.lease_seq + 1,
                worker_id = $4, attempted_at = $2, updated_at = $2, lease_expires_at = $5, progress = NULL
         FROM due WHERE j.id = due.id RETURNING j.*
     ), h AS (
         INSERT INTO job_history (job_id, state, at, attempt, worker_id)
         SELECT id, 'processing', $2, attempt, $4 FROM claimed
     )
     SELECT id FROM claimed ORDER BY run_at, id";

/// The claim statement before issue 13 (SQLite), for comparison on the same data.
const OLD_SQLITE_CLAIM: &str = "UPDATE jobs SET state = 'processing', attempt = attempt + 1, lease_seq = lease_seq + 1,
            worker_id = $4, attempted_at = $2, updated_at = $2, lease_expires_at = $5, progress = NULL
     WHERE id IN (SELECT id FROM jobs WHERE state IN ('enqueued', 'scheduled')
                    AND queue IN (SELECT value FROM json_each($1)) AND run_at <= $2
                  ORDER BY run_at, id LIMIT $3)
     RETURNING id";

/// A database for one measurement: a fresh SQLite file, or a fresh database on
/// the PostgreSQL server.
enum Bench {
    Sqlite(TestDb),
    Postgres(String),
}

impl Bench {
    fn url(&self) -> &str {
        match self {
            Bench::Sqlite(db) => &db.url,
            Bench::Postgres(url) => url,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Bench::Sqlite(_) => "SQLite",
            Bench::Postgres(_) => "PostgreSQL",
        }
    }
}

/// The PostgreSQL server: `BENCH_PG_URL`, or a cluster of our own with fsync on.
struct Pg {
    admin: String,
    settings: String,
    _cluster: Option<PgCluster>,
}

impl Pg {
    async fn start() -> Self {
        let (admin, cluster) = match std::env::var("BENCH_PG_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let c = PgCluster::start(true).expect("start a PostgreSQL cluster (fsync on)");
                (c.url.clone(), Some(c))
            }
        };
        let db = Db::connect(&admin).await.expect("connect to PostgreSQL");
        let mut settings = Vec::new();
        for name in ["server_version", "fsync", "synchronous_commit", "shared_buffers"] {
            let v: String = query(format!("SHOW {name}")).scalar(db.read()).await.expect("SHOW");
            settings.push(format!("{name}={v}"));
        }
        let origin = if cluster.is_some() { "own cluster (testkit::PgCluster)" } else { "BENCH_PG_URL" };
        Self { admin, settings: format!("{origin}: {}", settings.join(", ")), _cluster: cluster }
    }

    async fn fresh(&self, n: usize) -> Bench {
        let name = format!("bench_scale_{}_{n}", std::process::id());
        let db = Db::connect(&self.admin).await.expect("connect");
        query(format!("DROP DATABASE IF EXISTS {name}")).execute(db.write()).await.expect("drop");
        query(format!("CREATE DATABASE {name}")).execute(db.write()).await.expect("create");
        let base = self.admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&self.admin);
        Bench::Postgres(format!("{base}/{name}"))
    }
}

async fn enqueue_noops(jobs: &Jobs, n: usize) -> f64 {
    let proto = jobs.new_job(&Noop {}, None).expect("job");
    let batch = vec![proto; 1000.min(n.max(1))];
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch.len());
        jobs.enqueue_many(&batch[..k]).await.expect("enqueue");
        left -= k;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Claim latency with `backlog` queued: 100 claims of 10 with the engine's
/// statement, then 20 with the previous one, on the same data.
async fn claim_latency(b: &Bench, backlog: usize) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    enqueue_noops(&jobs, backlog).await;
    let store = jobs.store();
    let queues = vec!["default".to_owned()];
    if let Some(pg) = jobs.db().postgres() {
        sqlx::query("ANALYZE jobs").execute(pg).await.expect("analyze");
    }
    let mut new = Vec::new();
    for _ in 0..100 {
        let now = jobs.clock().now();
        let t = Instant::now();
        let got = store.fetch("bench", &queues, 10, now, now + 10_000_000).await.expect("claim");
        new.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(got.len(), 10);
    }
    let server = match jobs.db().postgres() {
        Some(_) => {
            let plan = store.explain_claim(&queues, 10, jobs.clock().now()).await.expect("explain");
            let v: serde_json::Value = serde_json::from_str(&plan).expect("plan");
            format!(", server {:.3} ms", v[0]["Execution Time"].as_f64().unwrap_or(f64::NAN))
        }
        None => String::new(),
    };
    let mut old = Vec::new();
    for _ in 0..20 {
        let now = jobs.clock().now();
        let t = Instant::now();
        let n = match (jobs.db().postgres(), jobs.db().sqlite()) {
            (Some(pg), _) => sqlx::query(OLD_PG_CLAIM)
                .bind(&queues)
                .bind(now)
                .bind(10_i64)
                .bind("bench-old")
                .bind(now + 10_000_000)
                .fetch_all(pg)
                .await
                .expect("old claim")
                .len(),
            (None, Some((writer, _))) => {
                let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                let n = sqlx::query(OLD_SQLITE_CLAIM)
                    .bind(r#"["default"]"#)
                    .bind(now)
                    .bind(10_i64)
                    .bind("bench-old")
                    .bind(now + 10_000_000)
                    .fetch_all(&mut *tx)
                    .await
                    .expect("old claim")
                    .len();
                tx.commit().await.expect("commit");
                n
            }
            _ => unreachable!("one backend"),
        };
        old.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, 10);
    }
    new.sort_by(f64::total_cmp);
    old.sort_by(f64::total_cmp);
    println!(
        "| {} | {backlog} queued | claim 10: p50 {:.2} ms, p99 {:.2} ms{server} | previous statement: p50 {:.2} ms, p99 {:.2} ms |",
        b.name(),
        percentile(&new, 50.0),
        percentile(&new, 99.0),
        percentile(&old, 50.0),
        percentile(&old, 99.0),
    );
}

/// Bulk enqueue: 20,000 jobs in batches of 1,000, one statement per batch, and
/// the same as one insert per job (as `enqueue_many` did before) for comparison.
async fn bulk_enqueue(b: &Bench, n: usize) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let rate = enqueue_noops(&jobs, n).await;
    let proto: NewJob = jobs.new_job(&Noop {}, None).expect("job");
    let t = Instant::now();
    for _ in 0..(n / 1000).max(1) {
        let mut tx = jobs.begin().await.expect("begin");
        for _ in 0..1000 {
            jobs.store().enqueue_in(&mut tx, &proto, jobs.clock().now()).await.expect("enqueue");
        }
        tx.commit().await.expect("commit");
    }
    let per_job = (n / 1000).max(1) as f64 * 1000.0 / t.elapsed().as_secs_f64();
    println!(
        "| {} | bulk enqueue of {n} in batches of 1,000 | {rate:.0} jobs/s | one INSERT per job: {per_job:.0} jobs/s |",
        b.name()
    );
}

async fn wait_succeeded(jobs: &Jobs, n: u64, within: Duration) {
    let start = Instant::now();
    loop {
        let c = jobs.counts().await.expect("counts");
        if c.succeeded >= n {
            return;
        }
        assert!(start.elapsed() < within, "only {} of {n} jobs succeeded in {within:?}", c.succeeded);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One worker at `concurrency` on `n` queued no-op jobs.
/// `beside` says what else the database holds (empty: nothing).
async fn throughput(b: &Bench, n: usize, concurrency: usize, beside: &str) -> f64 {
    throughput_with(b, n, concurrency, beside, &[]).await
}

/// [`throughput`] with more settings for the worker. The clock starts just
/// before the first enqueue call, with the worker registered and idle, and stops
/// when the driver sees the last job succeed (the counters, polled every 20 ms).
async fn throughput_with(b: &Bench, n: usize, concurrency: usize, beside: &str, env: &[(&str, &str)]) -> f64 {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    // Jobs already there (other runs', seeded ones) are not this run's.
    let already = jobs.counts().await.expect("counts").succeeded;
    let c = concurrency.to_string();
    let settings: Vec<(&str, &str)> =
        [("WORKER_CONCURRENCY", c.as_str())].into_iter().chain(env.iter().copied()).collect();
    let child = spawn_worker(b.url(), &settings);
    wait_registered(jobs.db(), child.pid()).await;
    // On SQLite the worker has just run the control plane's migrations (this
    // handle ran only the engine's), and a connection opened before that
    // schema change can fail its next insert once with "no such table: jobs"
    // (seen in the `defs` part; the same insert succeeds when retried).
    // Enqueue through a handle opened after it.
    drop(jobs);
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let stats = matches!(b, Bench::Postgres(_)) && std::env::var("BENCH_PG_STATS").is_ok();
    let sampler = if stats {
        reset_pg_stats(&jobs).await;
        Some(sample_pg_activity(b.url()))
    } else {
        None
    };
    let t = Instant::now();
    enqueue_noops(&jobs, n).await;
    wait_succeeded(&jobs, already + n as u64, Duration::from_secs(900)).await;
    let secs = t.elapsed().as_secs_f64();
    stop(child);
    if let Some((stop, task)) = sampler {
        stop.cancel();
        let seen = task.await.expect("sampler");
        let mut seen: Vec<_> = seen.into_iter().collect();
        seen.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        eprintln!("active backends sampled every 5 ms (count | backend type, wait event | statement):");
        for ((what, q), n) in seen.into_iter().take(15) {
            eprintln!("{n} | {what} | {q}");
        }
        print_pg_stats(&jobs).await;
    }
    println!(
        "| {} | throughput, one worker, concurrency {concurrency}{beside} | {:.0} jobs/s | {n} no-op jobs in {secs:.2} s |",
        b.name(),
        n as f64 / secs
    );
    n as f64 / secs
}

/// A diagnostic (`BENCH_PG_STATS`, PostgreSQL with `pg_stat_statements`
/// loaded, so `BENCH_PG_URL`): the statistics zeroed before a throughput run...
async fn reset_pg_stats(jobs: &Jobs) {
    let db = jobs.db();
    query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(db.write()).await.expect("pg_stat_statements");
    for q in ["SELECT pg_stat_statements_reset()", "SELECT pg_stat_reset()", "SELECT pg_stat_reset_shared('wal')"] {
        query(q).execute(db.write()).await.expect("reset");
    }
}

/// (Backend type and wait event, statement) -> times seen.
type ActivitySeen = std::collections::HashMap<(String, String), u64>;

/// What the database's active backends are doing, sampled every 5 ms until
/// stopped.
fn sample_pg_activity(url: &str) -> (CancellationToken, tokio::task::JoinHandle<ActivitySeen>) {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let url = url.to_owned();
    let task = tokio::spawn(async move {
        let db = Db::connect(&url).await.expect("connect");
        let mut seen = std::collections::HashMap::new();
        while !s.is_cancelled() {
            let rows: Vec<(String, String)> = query(
                "SELECT backend_type || ' ' || COALESCE(wait_event_type || ':' || wait_event, 'cpu'),
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 70)
                 FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()
                   OR backend_type NOT IN ('client backend') AND wait_event IS NULL",
            )
            .fetch_all(db.read())
            .await
            .unwrap_or_default();
            for r in rows {
                *seen.entry(r).or_insert(0) += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });
    (stop, task)
}

/// ... and printed after it: the statements that read or dirtied the most
/// pages, the tables whose pages were read from outside shared buffers, and the
/// WAL written (full-page images apart).
async fn print_pg_stats(jobs: &Jobs) {
    let db = jobs.db();
    let top: Vec<(i64, i64, i64, i64, f64, String)> = query(
        "SELECT calls, shared_blks_hit, shared_blks_read, shared_blks_dirtied, total_exec_time + total_plan_time,
                left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
         FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 10",
    )
    .fetch_all(db.read())
    .await
    .expect("statements");
    eprintln!("calls | hit | read | dirtied | ms (planning and execution) | statement");
    for (calls, hit, read, dirtied, ms, q) in top {
        eprintln!("{calls} | {hit} | {read} | {dirtied} | {ms:.0} | {q}");
    }
    let tables: Vec<(String, i64, i64, i64, i64)> = query(
        "SELECT relname::text, COALESCE(heap_blks_read, 0), COALESCE(heap_blks_hit, 0),
                COALESCE(idx_blks_read, 0), COALESCE(idx_blks_hit, 0)
         FROM pg_statio_user_tables ORDER BY COALESCE(heap_blks_read, 0) + COALESCE(idx_blks_read, 0) DESC LIMIT 8",
    )
    .fetch_all(db.read())
    .await
    .expect("tables");
    eprintln!("table | heap read | heap hit | index read | index hit");
    for (t, hr, hh, ir, ih) in tables {
        eprintln!("{t} | {hr} | {hh} | {ir} | {ih}");
    }
    let (fpi, bytes): (i64, i64) =
        query("SELECT wal_fpi, wal_bytes::bigint FROM pg_stat_wal").fetch_one(db.read()).await.expect("wal");
    eprintln!("WAL: {:.1} MB, {fpi} full-page images", bytes as f64 / 1e6);
}

/// `kill -9` of the worker running a job while another worker is idle: time to
/// the job running on the other one, `runs` times.
async fn kill_recovery(b: &Bench, runs: usize) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let mut spare = spawn_worker(b.url(), &[]);
    // Let it migrate the fresh database alone: two processes migrating a fresh
    // SQLite file at once can make one fail (sqlx's SQLite migrator takes no lock).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ms = Vec::new();
    for run in 0..runs {
        let busy = spawn_worker(b.url(), &[]);
        // Let the new worker register and start fetching.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let e = jobs.enqueue(&Sleep { ms: 600_000 }).await.expect("enqueue");
        let owner = loop {
            let j = jobs.get(e.id).await.expect("get").job;
            if j.state == JobState::Processing {
                break j.worker_id.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let owner_pid: u32 = owner.split(':').nth(1).and_then(|p| p.parse().ok()).expect("pid in worker id");
        // Kill at a different point of the rescuer's cycle each run.
        tokio::time::sleep(Duration::from_millis((run as u64 * 137) % 500)).await;
        let (mut victim, other) = if owner_pid == busy.pid() { (busy, spare) } else { (spare, busy) };
        victim.signal(testkit::Signal::SIGKILL).expect("kill -9");
        let killed = Instant::now();
        victim.wait_exit(Duration::from_secs(10)).expect("the killed worker exits");
        loop {
            let d = jobs.get(e.id).await.expect("get");
            if d.job.state == JobState::Processing && d.job.worker_id.as_deref() != Some(owner.as_str()) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(120), "the job never ran again");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ms.push(killed.elapsed().as_secs_f64() * 1000.0);
        jobs.delete(e.id, "bench").await.expect("delete");
        spare = other;
    }
    stop(spare);
    ms.sort_by(f64::total_cmp);
    println!(
        "| {} | kill -9 → running again elsewhere ({runs} kills, 10 s lease) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms | |",
        b.name(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        percentile(&ms, 100.0)
    );
}

/// A fresh handle on `b`, a worker process at default settings given time to
/// start and go idle, and a sink for its jobs' datagrams.
async fn idle_worker(b: &Bench) -> (Jobs, testkit::Process, PingSink) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let child = spawn_worker(b.url(), &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    (jobs, child, PingSink::bind())
}

/// Prints one table row of latencies `ms` (milliseconds): p50, p99, max, min.
fn latency_row(b: &Bench, what: &str, ms: &mut [f64]) {
    ms.sort_by(f64::total_cmp);
    println!(
        "| {} | {what} | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | min {:.1} ms |",
        b.name(),
        percentile(ms, 50.0),
        percentile(ms, 99.0),
        percentile(ms, 100.0),
        ms.first().copied().unwrap_or(f64::NAN)
    );
}

/// Scheduling precision: `samples` ping jobs, each due 200–500 ms after its
/// enqueue on an idle worker (default settings); the clock runs from the due
/// time the bench chose to the job's first line (its UDP datagram arriving).
async fn schedule_precision(b: &Bench, samples: usize) {
    let (jobs, child, sink) = idle_worker(b).await;
    let mut ms = Vec::with_capacity(samples);
    for seq in 0..samples as u64 {
        let due = jobs.clock().now() + 200_000 + (seq as i64 * 37_000) % 300_000;
        jobs.enqueue_at(&Ping { port: sink.port(), seq }, Some(due)).await.expect("enqueue");
        sink.wait(seq);
        ms.push((jobs.clock().now() - due) as f64 / 1000.0);
    }
    stop(child);
    let what = format!("scheduled job: due time → start ({samples} jobs due 200–500 ms ahead, idle worker)");
    latency_row(b, &what, &mut ms);
}

/// Cancellation: a running `diag.hold` job is deleted (`Jobs::delete`, what the
/// dashboard's delete calls); the clock runs from just before the delete call
/// to the handler seeing its cancellation (its `stop` datagram arriving).
async fn cancel_latency(b: &Bench, samples: usize) {
    let (jobs, child, sink) = idle_worker(b).await;
    let mut ms = Vec::with_capacity(samples);
    for seq in 0..samples as u64 {
        let e = jobs.enqueue(&Hold { port: sink.port(), seq, ms: 60_000 }).await.expect("enqueue");
        sink.wait_text(&format!("start {seq}"));
        let t = Instant::now();
        jobs.delete(e.id, "bench").await.expect("delete");
        sink.wait_text(&format!("stop {seq}"));
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop(child);
    let what = format!("delete of a running job → its attempt stops ({samples} samples, worker in another process)");
    latency_row(b, &what, &mut ms);
}

/// The cost of waiting work on fetching: throughput at `concurrency` with
/// 10,000 jobs scheduled a year ahead and 1,000 recurring schedules declared
/// (firing yearly) beside the no-op jobs, to compare with the plain run.
async fn throughput_beside_definitions(b: &Bench, n: usize, concurrency: usize) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let later = jobs.clock().now() + 365 * 86_400 * 1_000_000;
    let far = jobs.new_job(&Noop {}, Some(later)).expect("job");
    for chunk in vec![far; 10_000].chunks(1000) {
        jobs.enqueue_many(chunk).await.expect("enqueue scheduled");
    }
    let defs: Vec<Recurring> = (0..1000)
        .map(|i| Recurring::new(&format!("bench.yearly.{i}"), "0 0 1 1 *", &Noop {}).expect("definition"))
        .collect();
    jobs.declare_recurring(&defs).await.expect("declare");
    drop(jobs);
    throughput(b, n, concurrency, ", beside 10,000 scheduled jobs and 1,000 recurring schedules").await;
}

/// Throughput beside `rows` finished jobs (seeded as `server seed-jobs` seeds:
/// 98.8 % succeeded, 1 % dead, a few enqueued and scheduled, with history and
/// search rows) against an empty table, at each concurrency, `rounds` times
/// with the two alternating (an empty table's run on a fresh database, then
/// one beside the seeded jobs), so that the machine's drift between runs
/// (the empty table's runs alone moved by 10 % from one run to the next) falls
/// on both; then the medians and their ratio. The seeded enqueued jobs move to
/// a queue no worker takes, so the worker runs only the bench's no-op jobs, and
/// a checkpoint follows the seeding.
async fn throughput_beside_finished(
    seeded: &Bench,
    mut fresh: impl AsyncFnMut() -> Bench,
    n: usize,
    concurrency: &[usize],
    rows: u64,
    rounds: usize,
) {
    let jobs = Jobs::connect(seeded.url()).await.expect("open");
    let t = Instant::now();
    jobs.store().seed(rows, jobs.clock().now(), |_| {}).await.expect("seed");
    query("UPDATE jobs SET queue = 'parked' WHERE state = 'enqueued'")
        .execute(jobs.db().write())
        .await
        .expect("park the seeded enqueued jobs");
    if let Bench::Postgres(_) = seeded {
        // Parking left 10,000 dead versions whose `jobs_due` entries every claim
        // would walk past until a vacuum (the bench's doing, not the table's):
        // gone, as `seed-jobs` leaves the table.
        query("VACUUM (ANALYZE) jobs").execute(jobs.db().write()).await.expect("vacuum after parking");
    }
    let fillers = match seeded {
        Bench::Postgres(_) if std::env::var("BENCH_FILL_SLIVERS").is_ok() => fill_slivers(&jobs).await,
        _ => 0,
    };
    let took = t.elapsed().as_secs_f64();
    // The table as it stands, not the gigabytes just written still being
    // flushed: a checkpoint first (PostgreSQL writes out every dirty page;
    // SQLite moves its WAL into the database file).
    let checkpoint = match seeded {
        Bench::Sqlite(_) => "PRAGMA wal_checkpoint(TRUNCATE)",
        Bench::Postgres(_) => "CHECKPOINT",
    };
    query(checkpoint).execute(jobs.db().write()).await.expect("checkpoint");
    drop(jobs);
    let filled =
        if fillers > 0 { format!("; {fillers} filler rows in the pages' free-space slivers") } else { String::new() };
    let mut empty: Vec<Vec<f64>> = vec![Vec::new(); concurrency.len()];
    let mut beside: Vec<Vec<f64>> = vec![Vec::new(); concurrency.len()];
    for round in 1..=rounds {
        for (i, &c) in concurrency.iter().enumerate() {
            empty[i].push(throughput(&fresh().await, n, c, &format!(", empty table (round {round})")).await);
            // The seeded jobs ended over the day before the seeding began: with
            // the default retention (24 h) the oldest expire while the bench
            // runs, and the worker's first sweep would delete tens of thousands
            // of them mid-run.
            let label =
                format!(", beside {rows} finished jobs (round {round}; seeded in {took:.0} s{filled}; retention 48 h)");
            beside[i].push(throughput_with(seeded, n, c, &label, &[("JOB_RETENTION_SECS", "172800")]).await);
        }
    }
    let median = |xs: &[f64]| {
        let mut sorted = xs.to_vec();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 50.0)
    };
    for (i, &c) in concurrency.iter().enumerate() {
        let (e, b) = (median(&empty[i]), median(&beside[i]));
        println!(
            "| {} | throughput, one worker, concurrency {c}: median of {rounds} rounds, beside {rows} finished jobs / empty table | {:.0} / {:.0} jobs/s = {:.2} | per round, in run order: beside {:?}, empty {:?} |",
            seeded.name(),
            b,
            e,
            b / e,
            beside[i].iter().map(|x| x.round()).collect::<Vec<_>>(),
            empty[i].iter().map(|x| x.round()).collect::<Vec<_>>()
        );
    }
}

/// A diagnostic, not a fix (`BENCH_FILL_SLIVERS`, PostgreSQL): fills every page
/// of `jobs` that has room for a small row (128 B to 4,000 B free by the free
/// space map) with permanent filler rows (`deleted` jobs in the queue `parked`,
/// ended now, so retention keeps them), 20,000 a statement with a VACUUM between,
/// until fewer than 500 such pages are left; returns the rows written. Pages of
/// rows packed by a bulk load keep a residual gap, and where it fits a new job's
/// row, the free space map hands that page to each new row and to each new
/// version (a claim, a completion): one cold page per row version. With those
/// gaps filled, the runs at c=10 beside 10,000,000 finished jobs matched the
/// empty table's (README, which also has the c=16 runs, one alike, two not).
async fn fill_slivers(jobs: &Jobs) -> i64 {
    let db = jobs.db();
    query("CREATE EXTENSION IF NOT EXISTS pg_freespacemap").execute(db.write()).await.expect("pg_freespacemap");
    let mut filled = 0i64;
    loop {
        let left: i64 = query(
            "SELECT count(*) FROM pg_partition_tree('jobs') t, pg_freespace(t.relid) f \
             WHERE t.isleaf AND f.avail >= 128 AND f.avail < 4000",
        )
        .scalar(db.read())
        .await
        .expect("free space map");
        eprintln!("pages with room for a small row: {left} (filler rows so far: {filled})");
        if left < 500 || filled >= 1_000_000 {
            return filled;
        }
        query(
            "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at) \
             SELECT 'diag.noop', 'parked', '{}', 'deleted', 1, n, n, n \
             FROM (SELECT (extract(epoch FROM now()) * 1000000)::bigint AS n) t, generate_series(1, 20000)",
        )
        .execute(db.write())
        .await
        .expect("filler rows");
        filled += 20_000;
        query("VACUUM jobs").execute(db.write()).await.expect("vacuum");
    }
}

/// Steady state under retention: a producer enqueues `rate` no-op jobs a second
/// (a batch every 100 ms) for `secs`, one worker at the default concurrency with
/// `JOB_RETENTION_SECS=60` (the sweep runs every minute); every 30 s, the rows in
/// `jobs` and `job_history`, the jobs not yet run, and the space they take
/// (SQLite: the database's pages; PostgreSQL: both relations with indexes and
/// TOAST). Bounded tables level off after two minutes or so.
async fn steady_state(b: &Bench, rate: usize, secs: u64) {
    let jobs = Jobs::connect(b.url()).await.expect("open");
    let child = spawn_worker(b.url(), &[("JOB_RETENTION_SECS", "60")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let proto = jobs.new_job(&Noop {}, None).expect("job");
    let size_sql = match b {
        Bench::Sqlite(_) => "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        // `jobs` is partitioned: its partitions hold the space.
        Bench::Postgres(_) => {
            "SELECT (SELECT SUM(pg_total_relation_size(relid)) FROM pg_partition_tree('jobs'))::bigint
                    + pg_total_relation_size('job_history')"
        }
    };
    let sample = async |at: u64| {
        let db = jobs.db();
        let rows: i64 = query("SELECT COUNT(*) FROM jobs").scalar(db.read()).await.expect("count jobs");
        let history: i64 = query("SELECT COUNT(*) FROM job_history").scalar(db.read()).await.expect("count history");
        let waiting: i64 = query("SELECT COUNT(*) FROM jobs WHERE state IN ('enqueued', 'scheduled')")
            .scalar(db.read())
            .await
            .expect("count waiting");
        let bytes: i64 = query(size_sql).scalar(db.read()).await.expect("size");
        println!(
            "| {} | steady state at {rate} jobs/s, 60 s retention: t = {at} s | {rows} jobs, {history} history rows, {:.1} MiB | {waiting} not yet run |",
            b.name(),
            bytes as f64 / 1_048_576.0
        );
    };
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut sent, mut next_sample) = (0usize, 30u64);
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as usize - sent;
        for chunk in vec![proto.clone(); due].chunks(1000) {
            jobs.enqueue_many(chunk).await.expect("enqueue");
        }
        sent += due;
        if start.elapsed() >= Duration::from_secs(next_sample) {
            sample(next_sample).await;
            next_sample += 30;
        }
    }
    stop(child);
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_JOBS", 20_000);
    let kills = env_num("BENCH_KILLS", 20);
    let backlogs: Vec<usize> = env_list("BENCH_CLAIM_BACKLOG", "20000").iter().filter_map(|s| s.parse().ok()).collect();
    let concurrency: Vec<usize> =
        env_list("BENCH_CONCURRENCY", "10,16").iter().filter_map(|s| s.parse().ok()).collect();
    let backends = env_list("BENCH_BACKENDS", "sqlite,postgres");
    let parts = env_list("BENCH_PARTS", "claim,bulk,throughput,kill,sched,cancel,defs");
    let samples = env_num("BENCH_SAMPLES", 200);
    let steady_secs = env_num("BENCH_STEADY_SECS", 600) as u64;
    let steady_rate = env_num("BENCH_STEADY_RATE", 1000);
    let finished = env_num("BENCH_FINISHED", 10_000_000) as u64;
    let part = |p: &str| parts.iter().any(|x| x == p);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("engine scale benchmark: {cores} cores, release build");
    let pg = if backends.iter().any(|b| b == "postgres") { Some(Pg::start().await) } else { None };
    if let Some(pg) = &pg {
        println!("PostgreSQL: {}", pg.settings);
    }
    println!("\n| backend | what | figure | detail |\n|---|---|---|---|");
    let mut k = 0;
    let mut fresh = async |which: &str| {
        k += 1;
        match (which, &pg) {
            ("postgres", Some(pg)) => pg.fresh(k).await,
            _ => Bench::Sqlite(TestDb::sqlite()),
        }
    };
    for which in &backends {
        for &backlog in backlogs.iter().filter(|_| part("claim")) {
            claim_latency(&fresh(which).await, backlog).await;
        }
        if part("bulk") {
            bulk_enqueue(&fresh(which).await, n).await;
        }
        for &c in concurrency.iter().filter(|_| part("throughput")) {
            throughput(&fresh(which).await, n, c, "").await;
        }
        if part("kill") {
            kill_recovery(&fresh(which).await, kills).await;
        }
        if part("sched") {
            schedule_precision(&fresh(which).await, samples).await;
        }
        if part("cancel") {
            cancel_latency(&fresh(which).await, samples).await;
        }
        for &c in concurrency.iter().filter(|_| part("defs")) {
            throughput_beside_definitions(&fresh(which).await, n, c).await;
        }
        // Minutes per backend (seeding): only when asked for.
        if part("finished") {
            let seeded = fresh(which).await;
            let rounds = env_num("BENCH_ROUNDS", 3);
            throughput_beside_finished(&seeded, async || fresh(which).await, n, &concurrency, finished, rounds).await;
        }
        // Ten minutes per backend: only when asked for.
        if part("steady") {
            steady_state(&fresh(which).await, steady_rate, steady_secs).await;
        }
    }
}
