//! Test support that starts and measures processes, with no database code, so
//! the build tool (`xtask`) can start PostgreSQL and the server without compiling
//! sqlx. Every test, benchmark and xtask step that runs one of our binaries as a
//! real process starts it through [`Process`], so spawning, logs, readiness,
//! signals and kill-on-drop are written once.
//!
//! # Layout
//! - [`Process`] (`process.rs`): a child process with its output in a log file,
//!   readiness as a line of that log, signals, bounded waits, memory, killed on
//!   drop; used by `worker/tests/common` (crash, chaos), `server/benches/common`,
//!   `server/tests/cluster.rs`, the `cli` tests of both binaries,
//!   `worker/benches/engine.rs`, `backoffice::testing::SmtpSink` and `xtask`'s
//!   end-to-end run (the server and the SMTP sink);
//! - [`output_within`] (`output.rs`): a program run to its end with its output
//!   captured, killed after a timeout (the command-line tests);
//! - [`built_binary`] (`built.rs`): another package's binary (the `worker` for
//!   the server's tests), built before it is run;
//! - [`PgCluster`] (`pg_cluster.rs`): a throw-away PostgreSQL cluster (`initdb`,
//!   a free port, stopped and deleted on drop);
//! - [`Watchdog`] (`watchdog.rs`): a limit on one test's time, enforced from a
//!   thread, that names a hung test and prints its stacks before aborting;
//! - [`percentile`], [`rss_kib`]: for the benchmarks.

mod built;
mod output;
mod pg_cluster;
mod process;
mod watchdog;

pub use built::built_binary;
pub use output::output_within;
pub use pg_cluster::PgCluster;
pub use process::{Process, ProcessBuilder, Signal};
pub use watchdog::{TEST_LIMIT, Watchdog};

/// The `p`th percentile (0-100) of sorted samples, nearest rank; NaN when empty.
/// For the benchmarks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A process's resident memory in KiB (Linux `/proc`), 0 when unknown. For the
/// benchmarks.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
