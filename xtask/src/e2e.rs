//! The Playwright tests in `end2end/`, driven against the real server binary in the
//! system's Chromium.
//!
//! Browsers cannot be downloaded here (Playwright's own browser builds come from a
//! CDN, not from a package registry), so the tests launch Debian's `chromium`; the
//! `@playwright/test` package itself installs from npm without downloading any.
//!
//! The server starts on port 0 with a fresh SQLite database in a temporary folder;
//! we learn its address from the line it prints (`Back office listening on
//! http://ADDR`), so there is no port to race for. A real SMTP server
//! (`tools/smtp_sink.py`) receives its email into a folder the tests read
//! (`MAILBOX_DIR`). The super admin's credentials are set (`ADMIN_EMAIL`,
//! `ADMIN_PASSWORD`), and provisioning fails for tenants whose name contains
//! "Doomed" (`PROVISION_FAULT=fail:Doomed`), so one server shows both outcomes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::Process;

use crate::workspace::{self, Workspace};

/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to stop after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// What the server prints once it listens; the URL follows.
const LISTENING: &str = "Back office listening on ";
/// What the SMTP server prints once it listens; `HOST:PORT` follows.
const SMTP_LISTENING: &str = "SMTP listening on ";
/// How long the SMTP server may take to print its address.
const SMTP_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The super admin the tests sign in as.
const ADMIN_EMAIL: &str = "admin@e2e.test";
/// Their password.
const ADMIN_PASSWORD: &str = "e2e admin password";

/// The Chromium the tests launch: `$CHROMIUM_PATH`, else Debian's `/usr/bin/chromium`.
///
/// # Errors
/// None is installed; the message says how to install it.
pub fn find_chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM_PATH").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.is_file() {
        bail!(
            "Chromium not found at {}: the end-to-end tests need a system Chromium \
             (Playwright cannot download its own here). Install it with \
             `sudo apt-get install -y chromium`, or set CHROMIUM_PATH to a Chromium binary.",
            path.display()
        );
    }
    Ok(path)
}

/// Installs the npm packages if needed, starts `server`, runs Playwright with
/// `path` as its `PATH` (only the spec files matching `specs`, when given),
/// stops the server. The `worker` binary is expected beside `server`.
pub fn run_playwright(
    ws: &Workspace,
    server: &Path,
    chromium: &Path,
    path: &OsStr,
    specs: &[String],
) -> anyhow::Result<()> {
    let dir = ws.root.join("end2end");
    npm_install(&dir)?;

    let data = std::env::temp_dir().join(format!("xtask-e2e-{}", std::process::id()));
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
    }
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let result = (|| {
        let mailbox = data.join("mailbox");
        let smtp = Smtp::start(ws, &mailbox)?;
        let server_bin = server;
        let mut server = Server::start(ws, server, &data, &smtp.url)?;
        let mut playwright = Command::new(dir.join("node_modules/.bin/playwright"));
        playwright
            .arg("test")
            .args(specs)
            .current_dir(&dir)
            .env("PATH", path)
            .env("BASE_URL", &server.url)
            .env("CHROMIUM_PATH", chromium)
            .env("MAILBOX_DIR", &mailbox)
            .env("ADMIN_EMAIL", ADMIN_EMAIL)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            // The mailbox test starts a server of its own with the file transport.
            .env("SERVER_BIN", server_bin)
            // The bulk import spec runs provisioning in workers of its own and kills one.
            .env("WORKER_BIN", server_bin.with_file_name(format!("worker{}", std::env::consts::EXE_SUFFIX)))
            .env("SITE_ROOT", ws.site_dir());
        let outcome = workspace::run(&mut playwright);
        let stopped = server.stop();
        if outcome.is_err() {
            // Last, so that the end of the output (all a CI summary may show) says
            // what the failed tests saw and what the server said meanwhile.
            eprintln!("{}", failure_report(&dir.join("test-results"), &server.process.log()));
        }
        outcome.and(stopped)
    })();
    if let Err(e) = std::fs::remove_dir_all(&data) {
        eprintln!("xtask: removing {} failed: {e}", data.display());
    }
    result
}

/// Pages and server lines shown after a failed run: enough to tell a page
/// that showed an error from one still waiting, without flooding the output.
const REPORT_PAGES: usize = 3;
const REPORT_PAGE_LINES: usize = 30;
const REPORT_SERVER_LINES: usize = 40;

/// What the first failed tests' pages showed when they failed (Playwright's
/// `error-context.md` page snapshots, oldest first) and the server's warnings
/// and errors: the end of a long run's output, where a CI summary looks.
fn failure_report(results: &Path, server_log: &str) -> String {
    let mut out = String::from("\nxtask: what the failed tests saw\n");
    let mut contexts: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(results)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("error-context.md"))
        .filter_map(|p| modified(&p).map(|t| (t, p)))
        .collect();
    contexts.sort();
    if contexts.is_empty() {
        out.push_str("  (no page snapshots under test-results)\n");
    }
    for (_, path) in contexts.iter().take(REPORT_PAGES) {
        let test =
            path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push_str(&format!("--- {test}\n"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in page_content(&text).into_iter().take(REPORT_PAGE_LINES) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if contexts.len() > REPORT_PAGES {
        out.push_str(&format!("  ({} more under {})\n", contexts.len() - REPORT_PAGES, results.display()));
    }
    let notable = warnings_and_errors(server_log);
    out.push_str(&format!(
        "xtask: the server's warnings and errors ({} in all, the last {REPORT_SERVER_LINES})\n",
        notable.len()
    ));
    for line in &notable[notable.len().saturating_sub(REPORT_SERVER_LINES)..] {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The page snapshot of a Playwright `error-context.md` (its YAML block after
/// `# Page snapshot`), from the page's `main` element when it has one: what the
/// page said (an alert, a heading) without the header every page repeats.
fn page_content(context: &str) -> Vec<&str> {
    let snapshot: Vec<&str> = context
        .lines()
        .skip_while(|l| !l.starts_with("# Page snapshot"))
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    match snapshot.iter().position(|l| l.trim_start().starts_with("- main")) {
        Some(main) => snapshot[main..].to_vec(),
        None => snapshot,
    }
}

/// The lines of a server log at WARN or ERROR, colour codes taken out, less
/// those of the fault the suite sets on purpose (`PROVISION_FAULT`: a failing
/// "Doomed" tenant warns at each of its attempts).
fn warnings_and_errors(log: &str) -> Vec<String> {
    log.lines()
        .map(without_colours)
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|level| level == "WARN" || level == "ERROR"))
        .filter(|l| !l.contains("PROVISION_FAULT"))
        .collect()
}

/// `line` without ANSI colour sequences (`ESC [ … letter`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `npm ci` when `node_modules` is missing (or older than the lock file).
pub(crate) fn npm_install(dir: &Path) -> anyhow::Result<()> {
    let modules = dir.join("node_modules");
    let lock = dir.join("package-lock.json");
    let stale = match (modified(&modules.join(".package-lock.json")), modified(&lock)) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    };
    if !stale {
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.current_dir(dir).args(if lock.exists() { ["ci", "--no-audit"] } else { ["install", "--no-audit"] });
    // Playwright's browsers are not used (see the module docs); never try to fetch them.
    npm.env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
    workspace::run(&mut npm).with_context(|| {
        format!(
            "installing the npm packages in {} (is node/npm installed? `apt-get install nodejs npm`)",
            dir.display()
        )
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server under test; killed on drop if [`Server::stop`] was not reached.
struct Server {
    process: Process,
    /// `http://127.0.0.1:PORT`.
    url: String,
}

impl Server {
    /// Starts `bin` on a free port with a fresh SQLite database under `data`,
    /// sending email to `smtp_url`. Its output is echoed as `[server] …` and kept
    /// in `data/server.log`.
    fn start(ws: &Workspace, bin: &Path, data: &Path, smtp_url: &str) -> anyhow::Result<Self> {
        eprintln!("xtask: starting {}", bin.display());
        let mut process = Process::command(bin)
            .name("the server")
            .current_dir(data)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SMTP_URL", smtp_url)
            .env("SUPERADMIN_EMAIL", ADMIN_EMAIL)
            .env("SUPERADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PROVISION_FAULT", "fail:Doomed")
            .env("JOB_BACKOFF_BASE_MS", "5")
            .env("SIGNUP_PER_IP_PER_HOUR", "1000")
            .env("SITE_ROOT", ws.site_dir())
            .env("DATABASE_URL", format!("sqlite://{}", data.join("app.db").display()))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .log_file(data.join("server.log"))
            .echo("[server] ")
            .spawn()?;
        let url = process.wait_for_value(LISTENING, STARTUP_TIMEOUT)?;
        eprintln!("xtask: server up at {url}");
        Ok(Server { process, url })
    }

    /// SIGTERM, then waits for a graceful exit (killing after a timeout); a
    /// non-zero exit is an error, since a clean shutdown is part of what we test.
    fn stop(&mut self) -> anyhow::Result<()> {
        let status = self.process.terminate(SHUTDOWN_TIMEOUT)?;
        if !status.success() {
            bail!("the server exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

/// The suites' SMTP server (`tools/smtp_sink.py`), storing messages in a folder;
/// killed on drop.
struct Smtp {
    _process: Process,
    /// `smtp://127.0.0.1:PORT`.
    url: String,
}

impl Smtp {
    fn start(ws: &Workspace, mailbox: &Path) -> anyhow::Result<Self> {
        let mut process = Process::command("python3")
            .name("the SMTP server (tools/smtp_sink.py, python3 with aiosmtpd)")
            .arg(ws.root.join("tools/smtp_sink.py"))
            .arg("--dir")
            .arg(mailbox)
            .echo("[smtp] ")
            .spawn()?;
        let addr = process.wait_for_value(SMTP_LISTENING, SMTP_STARTUP_TIMEOUT)?;
        eprintln!("xtask: SMTP server at {addr}, mailbox {}", mailbox.display());
        Ok(Self { url: format!("smtp://{addr}"), _process: process })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_the_page_from_its_main_element() {
        let context = "# Error details\n\nTimeout\n\n# Page snapshot\n\n```yaml\n- generic:\n  - banner:\n    - link \"Sign in\"\n  - main:\n    - heading \"Sign in\"\n    - alert: wrong email or password\n```\n\n# Test source\n```ts\n1 | import\n```\n";
        assert_eq!(
            page_content(context),
            ["  - main:", "    - heading \"Sign in\"", "    - alert: wrong email or password"]
        );
    }

    #[test]
    fn the_report_keeps_warnings_and_errors_without_colours() {
        let log = "\u{1b}[2m2026-12-03T15:34:19Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m server: listening\n\
                   \u{1b}[2m2026-12-03T15:34:20Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m server: slow\n\
                   2026-12-03T15:34:21Z ERROR server: broken\n\
                   2026-12-03T15:34:22Z  WARN job attempt failed error=PROVISION_FAULT=fail is set\n\
                   [server] a line that says WARN in its text\n";
        assert_eq!(
            warnings_and_errors(log),
            ["2026-12-03T15:34:20Z  WARN server: slow", "2026-12-03T15:34:21Z ERROR server: broken"]
        );
    }
}
