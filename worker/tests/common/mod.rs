//! Shared by the worker's process tests: a `worker` process with its log in a file.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A `worker` process with its log in a file.
pub struct WorkerProc {
    pub child: Child,
    log: PathBuf,
}

impl WorkerProc {
    pub fn start(url: &str, dir: &Path, name: &str, lease_ms: u64) -> Self {
        Self::start_with(url, dir, name, lease_ms, &[])
    }

    pub fn start_with(url: &str, dir: &Path, name: &str, lease_ms: u64, extra: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_worker"))
            // No retention sweep (a job every minute) in tests that count jobs;
            // `extra` can turn it back on.
            .env("JOB_RETENTION_SECS", "0")
            .env("JOB_DEAD_RETENTION_SECS", "0")
            .envs(extra.iter().copied())
            .env("DATA_DIR", dir)
            .env("DATABASE_URL", url)
            .env("JOB_LEASE_MS", lease_ms.to_string())
            .env("JOB_RESCUE_MS", "200")
            .env("JOB_POLL_MS", "50")
            .env("JOB_GRACE_MS", "500")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start worker binary");
        Self { child, log }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).expect("signal worker");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `worker_id` (host:pid:suffix) belongs to this process.
    pub fn owns(&self, worker_id: Option<&str>) -> bool {
        worker_id.and_then(|w| w.split(':').nth(1)).is_some_and(|p| p == self.child.id().to_string())
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(start.elapsed() < within, "worker did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
