//! Shared by the worker's process tests: a `worker` process with its log in a
//! file, a thin layer over [`testkit::Process`] with the settings these tests run
//! workers with (short lease, rescue, poll and grace) and panics instead of errors.
#![allow(dead_code)]

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use testkit::Process;

/// A `worker` process with its log in `<dir>/<name>.log`; killed on drop.
pub struct WorkerProc {
    process: Process,
}

impl WorkerProc {
    pub fn start(url: &str, dir: &Path, name: &str, lease_ms: u64) -> Self {
        Self::start_with(url, dir, name, lease_ms, &[])
    }

    /// As [`WorkerProc::start`] with `extra` settings; the ones set here
    /// (`DATA_DIR`, `JOB_LEASE_MS`, …) win over `extra`, except the poll and the
    /// retention, which `extra` may change.
    pub fn start_with(url: &str, dir: &Path, name: &str, lease_ms: u64, extra: &[(&str, &str)]) -> Self {
        let process = Process::command(env!("CARGO_BIN_EXE_worker"))
            .name(format!("worker {name}"))
            // No retention sweep (a job every minute) in tests that count jobs;
            // `extra` can turn it back on.
            .env("JOB_RETENTION_SECS", "0")
            .env("JOB_DEAD_RETENTION_SECS", "0")
            // A short poll, so tests do not wait on it; `extra` can lengthen it.
            .env("JOB_POLL_MS", "50")
            .envs(extra.iter().copied())
            .env("DATA_DIR", dir)
            .env("DATABASE_URL", url)
            .env("JOB_LEASE_MS", lease_ms.to_string())
            .env("JOB_RESCUE_MS", "200")
            .env("JOB_GRACE_MS", "500")
            .env("RUST_LOG", "info")
            .log_file(dir.join(format!("{name}.log")))
            .spawn()
            .expect("start worker binary");
        Self { process }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.process.pid()).expect("a pid fits i32"))
    }

    pub fn signal(&self, s: Signal) {
        self.process.signal(s).expect("signal worker");
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The process itself, for what this wrapper does not offer.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Whether `worker_id` (host:pid:suffix) belongs to this process.
    pub fn owns(&self, worker_id: Option<&str>) -> bool {
        worker_id.and_then(|w| w.split(':').nth(1)).is_some_and(|p| p == self.process.pid().to_string())
    }

    /// Waits until it logs that it started (its first fetch is under way).
    pub fn wait_started(&mut self) {
        self.process.wait_for_log_line("worker started", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Waits for it to exit; panics with its log when it has not within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.process.wait_exit(within).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Opens the control plane at `url` as a worker process does, in this test's
/// process, with email written as files under `dir/mail`.
pub async fn open_control_plane(url: &str, dir: &Path) -> (jobengine::Jobs, std::sync::Arc<backoffice::env::Env>) {
    let mail = backoffice::mail::Mail {
        letters: backoffice::mail::Letters::new(backoffice::mail::DEFAULT_FROM, backoffice::mail::DEFAULT_PUBLIC_URL)
            .expect("mail settings"),
        transport: backoffice::mail::Transport::Files(dir.join("mail")),
    };
    backoffice::open(url, dir.to_path_buf(), mail, None).await.expect("open control plane")
}
