//! `cargo xtask <command>`: the project's set-up, build, run, test and benchmark
//! commands, in plain cargo (no extra tools to install by hand).
//!
//! - `run`: build everything, then start the server (SQLite, embedded worker) and
//!   print its URL;
//! - `test`: build everything, start a throw-away PostgreSQL, run every Rust test on
//!   both backends, then the Playwright tests in real Chromium;
//! - `bench`: the job engine's benchmark (throughput, latency, crash recovery);
//! - `build-site`: only build the browser bundle and the server.
//!
//! The browser bundle is built without cargo-leptos: `cargo build` for
//! `wasm32-unknown-unknown`, then wasm-bindgen as a library (pinned to the same
//! version as the `wasm-bindgen` crate the app links, which it must equal).

mod pg;
mod site;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).context("entering the workspace")?;
    match args.first().map(String::as_str) {
        Some("run") => run(&root, &args[1..]),
        Some("test") => test(&root),
        Some("bench") => bench(),
        Some("build-site") => site::build(&root, release(&args)).map(|_| ()),
        _ => {
            eprintln!("usage: cargo xtask <run [--release] | test | bench | build-site [--release]>");
            std::process::exit(2);
        }
    }
}

fn release(args: &[String]) -> bool {
    args.iter().any(|a| a == "--release")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, failing with its name if it fails.
pub(crate) fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn run(root: &Path, args: &[String]) -> Result<()> {
    let built = site::build(root, release(args))?;
    std::fs::create_dir_all(root.join("data")).context("creating data/")?;
    eprintln!("xtask: starting the server (Ctrl-C to stop); data lives in {}", root.join("data").display());
    let status = Command::new(&built.server)
        .env("SITE_ROOT", &built.site_root)
        .status()
        .context("starting the server")?;
    if !status.success() {
        bail!("server exited with {status}");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    let built = site::build(root, false)?;
    let pg = pg::TestPostgres::start()?;
    // 1. Every Rust test, on SQLite and PostgreSQL.
    sh(Command::new("cargo").args(["test", "--workspace", "--exclude", "xtask"]).env("TEST_DATABASE_URL", &pg.url))?;
    // 2. The browser tests against the real server binary.
    end2end(root, &built)?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

fn end2end(root: &Path, built: &site::Built) -> Result<()> {
    let dir = root.join("end2end");
    if !Path::new("/usr/bin/chromium").exists() {
        bail!("Chromium is missing: apt-get install -y chromium (the tests drive /usr/bin/chromium)");
    }
    if !dir.join("node_modules").exists() {
        sh(Command::new("npm").arg("ci").arg("--no-audit").arg("--no-fund").current_dir(&dir))?;
    }
    sh(Command::new("npx")
        .args(["playwright", "test"])
        .current_dir(&dir)
        .env("SERVER_BIN", &built.server)
        .env("SITE_ROOT", &built.site_root))
}

fn bench() -> Result<()> {
    let pg = pg::TestPostgres::start()?;
    sh(Command::new("cargo").args(["bench", "-p", "worker", "--bench", "engine"]).env("TEST_DATABASE_URL", &pg.url))
}
