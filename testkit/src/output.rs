//! A program run to its end with its output captured, as [`Command::output`]
//! does, but bounded in time: the command-line tests run our binaries with
//! `--help` and bad settings, and a binary that starts serving instead of
//! answering must fail the test, not hang the suite.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How often the child's exit is polled for (see `process.rs`).
const POLL: Duration = Duration::from_millis(10);

/// Runs `command` with stdin closed, stdout and stderr captured, and returns them
/// with its exit status. Both pipes are read while it runs, so a child writing
/// more than a pipe holds does not stall.
///
/// # Errors
/// It cannot be started, or still runs after `timeout` (then it is killed and
/// the error quotes what it wrote).
pub fn output_within(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("polling {command:?}"))? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL);
    };
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    match status {
        Some(status) => Ok(Output { status, stdout, stderr }),
        None => bail!(
            "{command:?} still ran after {timeout:?} (killed); the end of its stdout: {}\nof its stderr: {}",
            tail(&stdout),
            tail(&stderr)
        ),
    }
}

/// The last few KiB of an output, for an error message.
fn tail(output: &[u8]) -> String {
    const QUOTED: usize = 4096;
    String::from_utf8_lossy(&output[output.len().saturating_sub(QUOTED)..]).into_owned()
}

/// A thread reading `stream` to its end.
fn read_all(stream: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    stream.map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        })
    })
}

/// What a [`read_all`] thread read.
fn joined(reader: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_both_streams_and_the_status_even_past_a_pipe_s_capacity() {
        // 200 KiB on stdout: more than a pipe holds, so an unread pipe would stall it.
        let out = output_within(
            Command::new("sh").args(["-c", "head -c 204800 /dev/zero | tr '\\0' x; echo err >&2; exit 4"]),
            Duration::from_secs(30),
        )
        .expect("runs");
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout.len(), 204_800);
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_program_that_keeps_running_is_killed_and_reported() {
        let started = Instant::now();
        let err =
            output_within(Command::new("sh").args(["-c", "echo serving; exec sleep 60"]), Duration::from_millis(300))
                .expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(30), "it was killed, not waited for");
        let msg = format!("{err:#}");
        assert!(msg.contains("still ran") && msg.contains("serving"), "{msg}");
    }
}
