//! Test support (feature `testing`): a real SMTP server.
//!
//! [`SmtpSink`] runs `tools/smtp_sink.py` (aiosmtpd, from PyPI; `cargo xtask test`
//! installs it) on a free port. It stores each accepted message as a file, and its
//! mood can be switched while it runs (accept, answer 4xx, answer 5xx, die after
//! accepting), so the
//! suites exercise the real SMTP client against a real server. Missing Python or
//! aiosmtpd fails the test loudly: it is never skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::Process;

/// What the sink prints once it listens; `HOST:PORT` follows.
const LISTENING: &str = "SMTP listening on ";
/// How long the sink may take to print it.
const STARTUP: Duration = Duration::from_secs(30);

/// How the sink answers the next messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    /// `250`: accepted and stored.
    Accept,
    /// `451`: a transient failure.
    TempFail,
    /// `554`: a permanent refusal.
    Reject,
    /// Stores the message, then the server process dies before answering: the
    /// sender cannot tell it was accepted.
    CrashAfterAccept,
}

/// A running SMTP server (a [`testkit::Process`]); killed on drop.
pub struct SmtpSink {
    process: Process,
    /// `smtp://127.0.0.1:<port>`, for `SMTP_URL`.
    pub url: String,
    /// The port.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The script, from this crate's place in the workspace.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/smtp_sink.py")
}

impl SmtpSink {
    /// Starts a sink on a free port and waits until it listens.
    ///
    /// # Panics
    /// When it cannot start (no `python3`, no `aiosmtpd`).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir for the SMTP sink");
        Self::start_in(dir, 0)
    }

    fn start_in(dir: tempfile::TempDir, port: u16) -> Self {
        let mut process = Process::command("python3")
            .name("the SMTP sink (tools/smtp_sink.py: python3 with aiosmtpd)")
            .arg(script())
            .arg("--dir")
            .arg(dir.path())
            .arg("--port")
            .arg(port.to_string())
            .echo("[smtp sink] ")
            .spawn()
            .unwrap_or_else(|e| panic!("{e:#}"));
        let addr = process
            .wait_for_value(LISTENING, STARTUP)
            .unwrap_or_else(|e| panic!("the SMTP sink did not start (pip install aiosmtpd?): {e:#}"));
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink printed no port: {addr:?}"));
        Self { process, url: format!("smtp://127.0.0.1:{port}"), port, dir }
    }

    /// Sets how the next messages are answered.
    pub fn set_mood(&self, mood: Mood) {
        let m = match mood {
            Mood::Accept => "accept",
            Mood::TempFail => "tempfail",
            Mood::Reject => "reject",
            Mood::CrashAfterAccept => "crash",
        };
        std::fs::write(self.dir.path().join("mode"), m).expect("writing the sink's mode");
    }

    /// Every message accepted so far, raw, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let p = e.path();
                        let n = p.file_name()?.to_str()?.strip_suffix(".eml")?.parse().ok()?;
                        Some((n, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, p)| std::fs::read_to_string(p).expect("reading a stored message")).collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    ///
    /// # Panics
    /// Fewer than `n` after `within`.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let end = Instant::now() + within;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > end {
                assert!(m.len() >= n, "{} of {n} emails arrived within {within:?}", m.len());
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server process has exited by itself (as after
    /// [`Mood::CrashAfterAccept`]); whether it did within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        self.process.wait_exit(within).is_ok()
    }

    /// Stops the server (connections are then refused) and keeps its mailbox.
    pub fn stop(&mut self) {
        if let Err(e) = self.process.kill() {
            eprintln!("stopping the SMTP sink: {e:#}");
        }
    }

    /// Starts it again on the same port with the same mailbox.
    pub fn restart(self) -> Self {
        let mut me = self;
        me.stop();
        let port = me.port;
        let dir = std::mem::replace(&mut me.dir, tempfile::tempdir().expect("tempdir"));
        drop(me);
        Self::start_in(dir, port)
    }
}

/// The set-password token in an email's link, once the text is decoded.
pub fn link_token(message: &str) -> Option<String> {
    let text = plain_text(message);
    let at = text.find("set-password?token=")? + "set-password?token=".len();
    Some(text[at..].chars().take_while(char::is_ascii_hexdigit).collect())
}

/// The text of a stored single-part message with its quoted-printable transfer
/// encoding undone (soft line breaks joined, `=XX` decoded): what a mail client
/// shows.
pub fn plain_text(message: &str) -> String {
    let (head, body) = message.split_once("\r\n\r\n").unwrap_or(("", message));
    if !head.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
        return body.to_owned();
    }
    match quoted_printable::decode(body, quoted_printable::ParseMode::Robust) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => body.to_owned(),
    }
}
