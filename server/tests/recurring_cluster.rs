//! Recurring jobs with no leader, as real processes: two `server` processes (each
//! with its embedded worker) and three `worker` processes share one database and a
//! schedule firing every second (`DIAG_RECURRING_CRON`), and one worker is killed
//! with SIGKILL a third of the way in. Every fire time yields exactly one job, and
//! none is missed. On both backends (SQLite: five processes on one file).

use std::path::Path;
use std::time::{Duration, Instant};

use jobengine::testing::{TestDb, Which};

mod common;
use common::{Binary, server_bin, spawn_binary, worker_bin};

jobengine::on_both!(five_processes_one_job_per_fire_time);

/// Fire times the test waits for.
const FIRES: usize = 100;
const NAME: &str = "diag.recurring";

/// Starts `bin` on the database with a schedule firing every second.
fn spawn(bin: &Path, url: &str, data: &Path, name: &str) -> Binary {
    spawn_binary(
        bin,
        url,
        data,
        &format!("{name}.log"),
        &[
            ("SUPERADMIN_PASSWORD", "recurring cluster password"),
            ("DIAG_RECURRING_CRON", "* * * * * *"),
            ("JOB_SCHEDULE_MS", "300"),
            ("JOB_LEASE_MS", "2000"),
            ("JOB_POLL_MS", "100"),
            ("JOB_RETENTION_SECS", "0"),
            ("JOB_DEAD_RETENTION_SECS", "0"),
        ],
    )
}

/// Jobs per fire time of the schedule, by fire time.
async fn fires(db: &database::Db) -> Vec<(i64, i64)> {
    let rows: Vec<(String, i64)> = database::query(format!(
        "SELECT unique_key, COUNT(*) FROM jobs WHERE unique_key LIKE 'recurring:{NAME}:%' GROUP BY unique_key"
    ))
    .fetch_all(db.read())
    .await
    .expect("count fires");
    let mut out: Vec<(i64, i64)> = rows
        .into_iter()
        .map(|(k, n)| (k.rsplit(':').next().and_then(|t| t.parse().ok()).expect("fire time in the key"), n))
        .collect();
    out.sort_unstable();
    out
}

async fn five_processes_one_job_per_fire_time(which: Which) {
    let test_db = TestDb::new(which).await;
    let data = tempfile::tempdir().expect("tempdir");
    let server = &server_bin();
    // The engine's tables first, so the test can read them from the start.
    let jobs = test_db.jobs().await;
    let db = jobs.db().clone();
    let first = spawn(server, &test_db.url, data.path(), "server-a");
    let started = Instant::now();
    while fires(&db).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no fire; log:\n{}", first.process.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut procs = vec![first, spawn(server, &test_db.url, data.path(), "server-b")];
    let worker = worker_bin();
    for i in 0..3 {
        procs.push(spawn(&worker, &test_db.url, data.path(), &format!("worker-{i}")));
    }
    // Counted from here, when all five run (building the worker may take a while).
    let base = fires(&db).await.len();
    let all_started = Instant::now();
    let mut killed = false;
    loop {
        let seen = fires(&db).await.len() - base;
        if !killed && seen >= FIRES / 3 {
            // SIGKILL (kill -9): whatever the worker was
            // doing (a scheduler pass, a job) is cut short.
            procs[2].process.kill().expect("kill -9 a worker");
            killed = true;
        }
        if seen > FIRES {
            break;
        }
        assert!(all_started.elapsed() < Duration::from_secs(FIRES as u64 * 3), "too slow: {seen} fires");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, p) in procs.iter().enumerate() {
        if i != 2 {
            let log = p.process.log();
            assert!(!log.contains("panicked"), "{log}");
        }
    }
    drop(procs);
    let seen = fires(&db).await;
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| *n != 1).collect();
    assert!(doubled.is_empty(), "fire times with more than one job: {doubled:?}");
    let (first, last) = (seen[0].0, seen[seen.len() - 1].0);
    let expected: Vec<i64> = (0..=(last - first) / 1_000_000).map(|i| first + i * 1_000_000).collect();
    let got: Vec<i64> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(got, expected, "every second between the first and the last fire time has its job");
    assert!(got.len() > FIRES + base);
    // Scheduling precision, for the record (not asserted): fire time to the
    // attempt's start, with the schedulers' 300 ms tick.
    let waits: Vec<(i64, i64)> = database::query(format!(
        "SELECT run_at, attempted_at FROM jobs WHERE unique_key LIKE 'recurring:{NAME}:%' AND attempted_at IS NOT NULL"
    ))
    .fetch_all(db.read())
    .await
    .expect("waits");
    let mut ms: Vec<f64> = waits.iter().map(|(due, at)| (at - due) as f64 / 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "{which:?}: {} fires, fire time -> start p50 {:.1} ms, p99 {:.1} ms",
        ms.len(),
        jobengine::testing::percentile(&ms, 50.0),
        jobengine::testing::percentile(&ms, 99.0)
    );
}
