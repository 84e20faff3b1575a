//! A limit on how long one test may run, enforced from a plain thread.
//!
//! libtest has no per-test timeout: a test that hangs holds `cargo test`, and CI,
//! until CI's own limit kills everything with no word on where it stood (seen
//! once: a server test sat for the rest of a 90-minute CI run). A [`Watchdog`]
//! lives as long as its test; if the test is still running at the limit it
//! prints the test's name and every thread's stack (through `gdb`, when the
//! machine has it) and aborts the test binary, so the run fails within minutes
//! and says which test and where. Its own thread, not a tokio timer: a runtime
//! whose worker threads are all blocked (a lock taken twice) fires no timers.

use std::io::Write;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// How long one test may take. The slowest tests take about 2.5 minutes,
/// counting a build of the worker binary some of them make on a cold machine.
pub const TEST_LIMIT: Duration = Duration::from_secs(600);

/// Aborts the process if not dropped within its limit (module docs).
pub struct Watchdog {
    /// Dropping it wakes the thread, which then ends quietly.
    _done: mpsc::Sender<()>,
}

impl Watchdog {
    /// Watches the test `name` for [`TEST_LIMIT`].
    pub fn new(name: &str) -> Self {
        Self::with_limit(name, TEST_LIMIT)
    }

    /// Watches the test `name` for `limit`.
    pub fn with_limit(name: &str, limit: Duration) -> Self {
        let (done, wait) = mpsc::channel::<()>();
        let name = name.to_owned();
        let spawned = std::thread::Builder::new().name(format!("watchdog {name}")).spawn({
            let name = name.clone();
            move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                    // Straight to stderr: libtest's capture (which this thread
                    // inherits) would be lost with the abort.
                    let said =
                        format!("\n{name} is still running after {limit:?}: it hangs; its threads:\n{}\n", stacks());
                    let _ = std::io::stderr().write_all(said.as_bytes());
                    std::process::abort();
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("no watchdog for {name}: {e}");
        }
        Self { _done: done }
    }
}

/// Every thread's stack of this process as `gdb` prints it, or why not.
fn stacks() -> String {
    let pid = std::process::id().to_string();
    match Command::new("gdb").args(["-p", &pid, "-batch", "-nx", "-ex", "thread apply all bt"]).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        Err(e) => format!("(no stacks: running gdb failed: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_test_that_ends_in_time_is_left_alone() {
        let dog = Watchdog::with_limit("quick", Duration::from_millis(200));
        drop(dog);
        // An abort here would end this test binary, failing the run.
        std::thread::sleep(Duration::from_millis(400));
    }

    /// The child of the test below, which runs it with `--ignored`.
    #[test]
    #[ignore = "the child of a_hanging_test_is_aborted_with_its_name_and_stacks"]
    fn hangs_when_asked() {
        if std::env::var_os("WATCHDOG_TEST_CHILD").is_some() {
            let _dog = Watchdog::with_limit("the hanging child", Duration::from_millis(300));
            std::thread::sleep(Duration::from_secs(120));
        }
    }

    #[test]
    fn a_hanging_test_is_aborted_with_its_name_and_stacks() {
        let exe = std::env::current_exe().expect("this test binary");
        let out = Command::new(exe)
            .args(["--exact", "watchdog::tests::hangs_when_asked", "--ignored", "--test-threads", "1"])
            .env("WATCHDOG_TEST_CHILD", "1")
            .output()
            .expect("run the child");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(6), "aborted (SIGABRT): {:?}\n{err}", out.status);
        assert!(err.contains("the hanging child is still running after 300ms: it hangs; its threads:"), "{err}");
    }
}
