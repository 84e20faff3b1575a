//! Shared by the worker's benchmarks (`engine`, `scale`, `peers`): sizes from
//! the environment, `worker` processes, and peak memory.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use testkit::Process;

/// A number from the environment, or `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A comma-separated list from the environment, or `default`.
pub fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A `worker` (this bench's build, or `BENCH_WORKER_BIN` to compare another
/// build under the same driver) on `url` with `extra` settings; its output goes
/// to a temporary log.
pub fn spawn_worker(url: &str, extra: &[(&str, &str)]) -> Process {
    let bin = std::env::var_os("BENCH_WORKER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_worker").into());
    Process::command(bin)
        .env("DATABASE_URL", url)
        .env("DATA_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .spawn()
        .expect("start worker")
}

/// Waits (at most 30 s) until the worker process `pid` has registered in
/// `job_workers`: it fetches from then on.
pub async fn wait_registered(db: &database::Db, pid: u32) {
    let start = std::time::Instant::now();
    loop {
        let n: i64 = database::query("SELECT COUNT(*) FROM job_workers WHERE pid = $1")
            .bind(i64::from(pid))
            .scalar(db.read())
            .await
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "worker {pid} not registered in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, as an operator stops a worker; killed after 15 s.
pub fn stop(mut worker: Process) {
    if let Err(e) = worker.terminate(Duration::from_secs(15)) {
        eprintln!("{e:#}");
    }
}

/// A process's peak resident memory, sampled every 100 ms on a thread of its own
/// until [`PeakRss::finish`] (or the process ends).
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let (peak, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, d) = (peak.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let r = testkit::rss_kib(pid);
                if r == 0 {
                    return;
                }
                p.fetch_max(r, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { peak, done, thread: Some(thread) }
    }

    /// Stops sampling; the peak in KiB.
    pub fn finish(mut self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Where `diag.ping` jobs report that they started: a UDP socket on 127.0.0.1,
/// so a latency sample is timed from the caller's side (just before the
/// enqueue call to the handler's first line), not from database timestamps.
pub struct PingSink {
    socket: std::net::UdpSocket,
}

impl PingSink {
    pub fn bind() -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Self { socket }
    }

    /// The port a ping job sends to.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    /// Waits (up to 10 s) for ping `seq`, skipping late ones of earlier samples.
    pub fn wait(&self, seq: u64) {
        self.wait_text(&seq.to_string());
    }

    /// Waits (up to 10 s) for a datagram reading `text` (`diag.hold` sends
    /// `start <seq>` and `stop <seq>`), skipping others.
    pub fn wait_text(&self, text: &str) {
        let mut buf = [0u8; 64];
        loop {
            let (len, _) = self.socket.recv_from(&mut buf).unwrap_or_else(|e| panic!("{text:?} within 10 s: {e}"));
            if buf[..len] == *text.as_bytes() {
                return;
            }
        }
    }
}
