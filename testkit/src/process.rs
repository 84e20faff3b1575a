//! One of our binaries (or any program) running as a real child process of a test,
//! a benchmark or the xtask: its output in a log file, readiness read from that log,
//! signals, a bounded wait for its exit, its memory, and killed on drop.
//!
//! Written here rather than taken from a crate: the crates for child processes
//! either run a command to its end (`assert_cmd`, `duct`) or manage process groups
//! (`process-wrap`); none waits for a line in the output of a process that keeps
//! running, which is how every harness here learns a process is ready (the server
//! prints `Back office listening on http://ADDR`, the SMTP sink `SMTP listening on
//! ADDR`).
//!
//! Both output streams are piped through one thread each into the log file, a
//! whole line at a time, so the log holds both in arrival order, lines are never
//! torn, and a line can also be echoed to our stderr with a prefix
//! ([`ProcessBuilder::echo`]), which the benchmarks and the xtask use to keep a
//! process's warnings in sight.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How often exits and log lines are polled for. The log is a file the child's
/// output is copied into, and a child's exit has no event a test thread can
/// await without reaping it from another thread; 10 ms keeps waits short without
/// busy-looping.
const POLL: Duration = Duration::from_millis(10);
/// How long, after the child exited, its output may take to reach the log (the
/// copying threads end when the pipes close; a grandchild that kept them open
/// would hold them forever, so this is bounded).
const DRAIN: Duration = Duration::from_secs(2);
/// How many of the log's last lines an error quotes.
const TAIL_LINES: usize = 60;

/// How a [`Process`] is started: the program, its arguments, environment and
/// folder, and where its output goes. Made by [`Process::command`].
pub struct ProcessBuilder {
    command: Command,
    name: String,
    log: Option<PathBuf>,
    echo: Option<String>,
}

impl ProcessBuilder {
    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable (the rest are inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets environment variables; a later setting of the same name wins.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    /// The folder it runs in.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// The file its stdout and stderr go to, kept after the process is dropped.
    /// Without one, a file in the temporary folder is used and removed on drop.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Also copies every output line to our stderr behind `prefix` (such as
    /// `"[server] "`).
    pub fn echo(mut self, prefix: impl Into<String>) -> Self {
        self.echo = Some(prefix.into());
        self
    }

    /// What errors call it (by default the program's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts it, with stdin closed and its output going to the log.
    ///
    /// # Errors
    /// The log file cannot be created, or the program cannot be started.
    pub fn spawn(self) -> anyhow::Result<Process> {
        let Self { mut command, name, log, echo } = self;
        let (log, remove_log) = match log {
            Some(path) => (path, false),
            None => (temp_log(&name), true),
        };
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = match command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
            Ok(child) => child,
            Err(e) => {
                if remove_log {
                    let _ = std::fs::remove_file(&log);
                }
                return Err(e).with_context(|| format!("starting {name} ({:?})", command.get_program()));
            }
        };
        let mut process =
            Process { child, name, log, remove_log, open_streams: Arc::new(AtomicUsize::new(0)), status: None };
        // From here on, drop kills the child whatever fails.
        let sink = Arc::new(Mutex::new(file));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            process.child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            process.child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let (sink, echo, open) = (sink.clone(), echo.clone(), process.open_streams.clone());
            open.fetch_add(1, Ordering::SeqCst);
            std::thread::Builder::new()
                .name(format!("{} output", process.name))
                .spawn(move || copy_lines(stream, &sink, echo.as_deref(), &open))
                .with_context(|| format!("starting the thread that logs {}", process.name))?;
        }
        Ok(process)
    }
}

/// Copies `stream` into `sink` line by line (echoing each behind `echo`) until it
/// closes; then counts itself out of `open`.
fn copy_lines(stream: Box<dyn Read + Send>, sink: &Mutex<File>, echo: Option<&str>, open: &AtomicUsize) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        // A log that cannot be written is not worth killing the process over; the
        // readiness wait then times out and says so.
        let _ = sink.lock().unwrap_or_else(PoisonError::into_inner).write_all(&line);
        if let Some(prefix) = echo {
            eprint!("{prefix}{}", String::from_utf8_lossy(&line));
        }
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// A fresh log path in the temporary folder.
fn temp_log(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    std::env::temp_dir().join(format!("testkit-{name}-{}-{n}.log", std::process::id()))
}

/// A running child process; killed (SIGKILL) and reaped on drop unless it has
/// already exited.
pub struct Process {
    child: Child,
    name: String,
    log: PathBuf,
    remove_log: bool,
    /// Output streams still being copied into the log.
    open_streams: Arc<AtomicUsize>,
    /// Set once the child has been reaped: its pid may then belong to another
    /// process, so it is never signalled again.
    status: Option<ExitStatus>,
}

impl Process {
    /// Begins describing a process running `program`.
    pub fn command(program: impl AsRef<OsStr>) -> ProcessBuilder {
        let program = program.as_ref();
        let name = Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned();
        ProcessBuilder { command: Command::new(program), name, log: None, echo: None }
    }

    /// Begins describing a process from a prepared `command` (its program,
    /// arguments, environment and folder; its stdio is replaced by the log), so
    /// one helper can prepare a binary both for [`crate::output_within`] and for
    /// a process that keeps running.
    pub fn from_command(command: Command) -> ProcessBuilder {
        let program = command.get_program();
        let name = Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned();
        ProcessBuilder { command, name, log: None, echo: None }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What errors call it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM, SIGKILL, …).
    ///
    /// Safe while the child is not reaped: until then its pid stays its own (an
    /// exited child is a zombie the signal does nothing to), and only the
    /// waiting methods here reap it.
    ///
    /// # Errors
    /// It has already been reaped (its pid may be another process's by now), or
    /// the kernel refused.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if let Some(status) = self.status {
            bail!("{} already exited ({status}); not sending {signal}", self.name);
        }
        let pid = i32::try_from(self.pid()).context("a pid beyond i32")?;
        nix::sys::signal::kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {} (pid {pid})", self.name))
    }

    /// Its exit status if it has exited (reaping it, and letting its last output
    /// reach the log), `None` while it runs.
    ///
    /// # Errors
    /// Waiting on the child failed.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none()
            && let Some(status) = self.child.try_wait().with_context(|| format!("polling {}", self.name))?
        {
            self.status = Some(status);
            self.drain();
        }
        Ok(self.status)
    }

    /// Waits until it exits, at most `timeout`.
    ///
    /// # Errors
    /// It still runs after `timeout` (the error quotes its log; it is left
    /// running, and killed on drop).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}; {}", self.name, self.log_tail());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills it (SIGKILL) and reaps it; its status if it had already exited.
    ///
    /// # Errors
    /// Killing or waiting failed.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child.kill().with_context(|| format!("killing {}", self.name))?;
        let status = self.child.wait().with_context(|| format!("waiting for {}", self.name))?;
        self.status = Some(status);
        self.drain();
        Ok(status)
    }

    /// Asks it to stop (SIGTERM) and waits `grace` for it to exit; kills it
    /// after that. Its exit status, whatever it is: the caller decides whether
    /// a non-zero one is a failure.
    ///
    /// # Errors
    /// It did not stop within `grace` (it has been killed), or signalling failed.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM)?;
        match self.wait_exit(grace) {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill()?;
                Err(e.context(format!("{} ignored SIGTERM for {grace:?}; killed it", self.name)))
            }
        }
    }

    /// Everything it has written so far (stdout and stderr, in arrival order).
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Where its log is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until a line of its log contains `pattern`, and returns that line
    /// (without its line break). This is how readiness is learnt: the server
    /// prints `Back office listening on http://ADDR` once it accepts connections.
    ///
    /// # Errors
    /// It exited first, or no such line came within `timeout`; the error quotes
    /// the log.
    pub fn wait_for_log_line(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Exit first: once it is seen, the whole output is in the log.
            let exited = self.try_wait()?;
            if let Some(line) = self.log().lines().find(|l| l.contains(pattern)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = exited {
                bail!("{} exited ({status}) before printing {pattern:?}; {}", self.name, self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!("{} did not print {pattern:?} within {timeout:?}; {}", self.name, self.log_tail());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for a line containing `pattern` (as [`Process::wait_for_log_line`])
    /// and returns what follows `pattern` on it, trimmed: the URL after `Back
    /// office listening on `, the address after `SMTP listening on `.
    ///
    /// # Errors
    /// As [`Process::wait_for_log_line`].
    pub fn wait_for_value(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let line = self.wait_for_log_line(pattern, timeout)?;
        Ok(line.split_once(pattern).map(|(_, rest)| rest.trim().to_owned()).unwrap_or_default())
    }

    /// Its resident memory in KiB, 0 once it has exited (see [`crate::rss_kib`]).
    pub fn rss_kib(&self) -> u64 {
        if self.status.is_some() { 0 } else { crate::rss_kib(self.pid()) }
    }

    /// The last `n` lines of its log, for a failure message, without the
    /// frames of a backtrace (with `RUST_BACKTRACE` set, an error's frames would
    /// push the error itself out of the tail).
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines = without_backtrace_frames(&log);
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        format!("the end of its log ({}):\n{}", self.log.display(), self.tail(TAIL_LINES))
    }

    /// Waits (bounded) for the copying threads to reach the end of the output.
    fn drain(&self) {
        let deadline = Instant::now() + DRAIN;
        while self.open_streams.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `log`'s lines less the frames after each `stack backtrace:` header (`  12:
/// symbol` and `at file:line`); the header stays, to say a trace was there.
fn without_backtrace_frames(log: &str) -> Vec<&str> {
    let mut in_trace = false;
    log.lines()
        .filter(|l| {
            let t = l.trim_start();
            let header = t.eq_ignore_ascii_case("stack backtrace:");
            let frame = t.starts_with("at ") || t.split_once(": ").is_some_and(|(i, _)| i.parse::<u32>().is_ok());
            in_trace = header || (in_trace && frame);
            header || !in_trace
        })
        .collect()
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.remove_log {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that prints `ready`, then becomes `sleep` (exec, so the pid we
    /// hold is the one sleeping and no grandchild outlives it).
    fn sleeper() -> ProcessBuilder {
        Process::command("sh").args(["-c", "echo ready; echo oops >&2; exec sleep 60"])
    }

    /// Whether any process has `pid` (signal 0 only checks).
    fn alive(pid: u32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(i32::try_from(pid).expect("pid")), None).is_ok()
    }

    #[test]
    fn a_backtrace_leaves_the_tail_and_the_error_and_its_causes_stay() {
        let log = "Error: running the worker\n\nCaused by:\n    0: database error\n    1: connection reset\n\n\
                   Stack backtrace:\n   0: anyhow::error::construct\n             at /src/error.rs:1:1\n\
                   \x20 31: _start\nnext line";
        assert_eq!(
            without_backtrace_frames(log),
            [
                "Error: running the worker",
                "",
                "Caused by:",
                "    0: database error",
                "    1: connection reset",
                "",
                "Stack backtrace:",
                "next line"
            ]
        );
    }

    #[test]
    fn readiness_is_a_line_of_the_log_and_both_streams_are_logged() {
        let mut p = sleeper().spawn().expect("spawn");
        assert_eq!(p.wait_for_log_line("read", Duration::from_secs(10)).expect("ready"), "ready");
        assert_eq!(p.wait_for_value("rea", Duration::from_secs(10)).expect("ready"), "dy");
        // stderr reaches the same log.
        let start = Instant::now();
        while !p.log().contains("oops") {
            assert!(start.elapsed() < Duration::from_secs(10), "stderr never reached the log: {:?}", p.log());
            std::thread::sleep(POLL);
        }
        assert!(p.rss_kib() > 0, "a running process has resident memory");
        assert!(p.try_wait().expect("poll").is_none());
    }

    #[test]
    fn a_process_that_exits_before_its_line_fails_the_wait_with_its_log() {
        let mut p =
            Process::command("sh").args(["-c", "echo starting; echo no database >&2; exit 3"]).spawn().expect("spawn");
        let err = p.wait_for_log_line("listening", Duration::from_secs(10)).expect_err("never ready");
        let msg = format!("{err:#}");
        assert!(msg.contains("exited") && msg.contains("no database"), "{msg}");
        assert_eq!(p.wait_exit(Duration::from_secs(1)).expect("exited").code(), Some(3));
    }

    #[test]
    fn the_readiness_wait_is_bounded() {
        let mut p = sleeper().spawn().expect("spawn");
        let err = p.wait_for_log_line("never printed", Duration::from_millis(200)).expect_err("times out");
        assert!(format!("{err:#}").contains("within"), "{err:#}");
    }

    #[test]
    fn signals_reach_it_and_its_exit_status_is_reported() {
        let mut p = sleeper().spawn().expect("spawn");
        p.wait_for_log_line("ready", Duration::from_secs(10)).expect("ready");
        assert!(p.wait_exit(Duration::from_millis(100)).is_err(), "sleep 60 does not exit by itself");
        p.signal(Signal::SIGTERM).expect("signal");
        let status = p.wait_exit(Duration::from_secs(10)).expect("exits on SIGTERM");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
        // Reaped: its pid is never signalled again.
        assert!(p.signal(Signal::SIGKILL).is_err());
    }

    #[test]
    fn terminate_returns_the_exit_code_of_a_graceful_stop() {
        let mut p = Process::command("sh")
            .args(["-c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done"])
            .spawn()
            .expect("spawn");
        p.wait_for_log_line("ready", Duration::from_secs(10)).expect("ready");
        let status = p.terminate(Duration::from_secs(10)).expect("stops");
        assert!(status.success(), "{status}");
        assert!(p.log().contains("bye"), "its last words reach the log: {:?}", p.log());
    }

    #[test]
    fn kill_on_drop_leaves_no_process_and_removes_a_temporary_log() {
        let p = sleeper().spawn().expect("spawn");
        let (pid, log) = (p.pid(), p.log_path().to_path_buf());
        assert!(alive(pid) && log.exists());
        drop(p);
        assert!(!alive(pid), "pid {pid} still exists after drop");
        assert!(!log.exists(), "the temporary log was removed");
    }

    #[test]
    fn a_named_log_file_holds_the_output_and_stays() {
        let dir = std::env::temp_dir().join(format!("testkit-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("p.log");
        let mut p = Process::command("sh")
            .args(["-c", "echo \"$GREETING from $PWD\""])
            .env("GREETING", "hello")
            .current_dir(&dir)
            .log_file(&path)
            .spawn()
            .expect("spawn");
        assert!(p.wait_exit(Duration::from_secs(10)).expect("exits").success());
        drop(p);
        let logged = std::fs::read_to_string(&path).expect("log kept");
        assert!(logged.contains("hello from") && logged.contains("testkit-log-test"), "{logged}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = Process::command("/nonexistent/program").spawn().err().expect("cannot start");
        assert!(format!("{err:#}").contains("/nonexistent/program"), "{err:#}");
    }
}
