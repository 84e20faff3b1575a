//! The `worker` binary's command line and its `/metrics` endpoint, run as a
//! subprocess: `--help` and `--version` touch nothing, every setting is a flag and
//! a variable with the same meaning, and `METRICS_ADDR` serves the server's
//! rendering of the metrics.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use jobengine::builtin::Noop;
use jobengine::testing::{TestDb, Which};
use testkit::Process;

/// Every setting with a value that is not its default, by variable and flag.
const SETTINGS: [(&str, &str, &str); 24] = [
    ("METRICS_ADDR", "--metrics-addr", "127.0.0.1:9109"),
    ("DATABASE_URL", "--database-url", "postgres://bo:dbsecret@db.test/app"),
    ("DATA_DIR", "--data-dir", "/srv/data"),
    ("SMTP_URL", "--smtp-url", "smtps://mailer:smtpsecret@mail.test:465"),
    ("MAIL_FROM", "--mail-from", "Ops <ops@cli.test>"),
    ("PUBLIC_URL", "--public-url", "https://bo.cli.test"),
    ("MAIL_PER_RECIPIENT_PER_HOUR", "--mail-per-recipient-per-hour", "9"),
    ("WELCOME_REMINDER_AFTER_SECS", "--welcome-reminder-after-secs", "120"),
    ("WORKER_CONCURRENCY", "--worker-concurrency", "3"),
    ("WORKER_PREFETCH", "--worker-prefetch", "5"),
    ("WORKER_QUEUES", "--worker-queues", "mail,default"),
    ("WORKER_QUEUE_LIMITS", "--worker-queue-limits", "mail=2"),
    ("JOB_LEASE_MS", "--job-lease-ms", "3000"),
    ("JOB_HEARTBEAT_MS", "--job-heartbeat-ms", "700"),
    ("JOB_RESCUE_MS", "--job-rescue-ms", "300"),
    ("JOB_POLL_MS", "--job-poll-ms", "60"),
    ("JOB_GRACE_MS", "--job-grace-ms", "900"),
    ("JOB_MAX_INTERRUPTIONS", "--job-max-interruptions", "4"),
    ("JOB_BACKOFF_BASE_MS", "--job-backoff-base-ms", "5"),
    ("JOB_RETENTION_SECS", "--job-retention-secs", "60"),
    ("JOB_DEAD_RETENTION_SECS", "--job-dead-retention-secs", "0"),
    ("JOB_SCHEDULE_MS", "--job-schedule-ms", "250"),
    ("DIAG_RECURRING_CRON", "--diag-recurring-cron", "*/5 * * * * *"),
    ("PROVISION_FAULT", "--provision-fault", "fail:Doomed"),
];

/// How long one run may take (the old binary took `--help` for "run jobs").
const TIMEOUT: Duration = Duration::from_secs(60);

/// The built `worker` in `cwd`, with none of our settings inherited.
fn worker(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.current_dir(cwd);
    for (name, _, _) in SETTINGS {
        cmd.env_remove(name);
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` to its end, killing it after [`TIMEOUT`].
fn run(cmd: &mut Command) -> Output {
    testkit::output_within(cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect()
}

#[test]
fn help_and_version_list_every_setting_and_touch_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(worker(dir.path()).arg("--help"));
    assert!(out.status.success(), "{out:?}");
    let help = stdout(&out);
    for (name, flag, _) in SETTINGS {
        assert!(help.contains(&format!("[env: {name}]")), "{name} is not in --help:\n{help}");
        assert!(help.contains(&format!("{flag} <")), "{flag} is not in --help:\n{help}");
    }
    assert!(help.contains("config"), "{help}");
    let out = run(worker(dir.path()).arg("--version"));
    assert!(out.status.success() && stdout(&out).starts_with("worker "), "{out:?}");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "--help or --version created files");
}

#[test]
fn a_flag_and_its_variable_mean_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let defaults = run(worker(dir.path()).arg("config"));
    assert!(defaults.status.success(), "{defaults:?}");
    let defaults = stdout(&defaults);
    assert_eq!(defaults.lines().count(), SETTINGS.len(), "a setting is missing from this test:\n{defaults}");
    for (name, flag, value) in SETTINGS {
        assert!(defaults.contains(&format!("{name}=")), "{defaults}");
        let by_flag = run(worker(dir.path()).args([flag, value, "config"]));
        let by_env = run(worker(dir.path()).env(name, value).arg("config"));
        assert!(by_flag.status.success() && by_env.status.success(), "{name}: {by_flag:?} {by_env:?}");
        assert_eq!(stdout(&by_flag), stdout(&by_env), "{flag} and {name} differ");
        assert_ne!(stdout(&by_flag), defaults, "{name}={value} changed nothing");
    }
    let all = run(worker(dir.path()).envs(SETTINGS.iter().map(|(n, _, v)| (n, v))).arg("config"));
    for secret in ["dbsecret", "smtpsecret"] {
        assert!(!stdout(&all).contains(secret), "{secret} shown:\n{}", stdout(&all));
    }
    let bad = run(worker(dir.path()).env("JOB_LEASE_MS", "soon").arg("config"));
    assert!(!bad.status.success(), "a bad JOB_LEASE_MS was accepted");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("JOB_LEASE_MS"), "{bad:?}");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "config created files");
}

jobengine::on_both!(metrics_endpoint_on_metrics_addr);

/// `GET /metrics` on a `worker` started with `METRICS_ADDR=127.0.0.1:0`: the
/// address is printed, the text is the server's (same names), and this worker's
/// own counters move.
async fn metrics_endpoint_on_metrics_addr(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let mut worker = Process::from_command(worker(dir.path()))
        .env("DATABASE_URL", &db.url)
        .env("DATA_DIR", dir.path())
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("JOB_POLL_MS", "50")
        .spawn()
        .expect("start worker");
    let url = worker.wait_for_value("Metrics on http://", TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    let addr = url.trim_end_matches("/metrics").to_owned();

    for _ in 0..3 {
        jobs.enqueue(&Noop {}).await.expect("enqueue");
    }
    let deadline = Instant::now() + TIMEOUT;
    let body = loop {
        let body = get(&addr, "/metrics");
        // The counter moves when a job ends, the state gauge (read from the
        // store) once the completer has committed the batch: wait for both.
        if body.contains("jobs_processed_total{outcome=\"succeeded\"} 3")
            && body.contains("jobs{state=\"succeeded\"} 3")
            && body.contains("jobs_workers_live 1")
        {
            break body;
        }
        assert!(Instant::now() < deadline, "the worker's metrics never showed its 3 jobs:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    for needle in [
        "jobs{state=\"succeeded\"} 3",
        "jobs_run_duration_seconds_count 3",
        "jobs_enqueue_to_start_seconds_count 3",
        "jobs_failed_total 0",
    ] {
        assert!(body.contains(needle), "/metrics lacks {needle:?}:\n{body}");
    }
    let status = worker.terminate(TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "the worker exited with {status} after SIGTERM; log:\n{}", worker.log());
}

/// A plain HTTP/1.0 GET, whole response.
fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body
}
