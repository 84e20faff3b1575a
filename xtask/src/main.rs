//! `cargo xtask …`: builds, runs and tests the whole product with nothing but cargo
//! (and, for the browser tests, node and a system Chromium).
//!
//! ```text
//! cargo xtask build-site [--release]   wasm + wasm-bindgen + assets into <target>/site
//! cargo xtask run [--release]          build everything, then start the server
//! cargo xtask test [--release]         build, `cargo test --workspace`, then Playwright
//! cargo xtask e2e [--release] [SPEC…] build, then only the Playwright tests (or those matching SPEC)
//! cargo xtask bench                    the benchmarks, on SQLite and PostgreSQL
//! cargo xtask results [RUN…]           benchmarks + long chaos and security runs into docs/RESULTS.md
//! cargo xtask mutants                  deliberately broken builds, each caught by its suite
//! ```
//!
//! We deliberately do not use cargo-leptos: it takes ~17 min to install on a 2-core
//! machine, its newer releases need a newer Rust, and it needs a `wasm-bindgen` CLI
//! of exactly the locked version on `PATH`. Instead the site is built here with plain
//! `cargo build --target wasm32-unknown-unknown` and the `wasm-bindgen-cli-support`
//! crate used as a library, pinned to the same version as the `wasm-bindgen` crate,
//! so the two can never drift apart.
//!
//! # Layout
//! - [`workspace`]: where things are (root, target dir, site dir, cargo) and running commands;
//! - [`site`]: the browser bundle and the server binary;
//! - [`postgres`]: a throw-away PostgreSQL cluster for the tests;
//! - [`tools`]: the test tools: installed from PyPI, or named for `apt-get`;
//! - [`e2e`]: the Playwright tests against a real server in Chromium;
//! - [`results`]: `docs/RESULTS.md` from the measuring runs;
//! - [`mutants`]: broken builds the suites must catch.

mod e2e;
mod mutants;
mod postgres;
mod results;
mod site;
mod tools;
mod workspace;

use anyhow::{Context, bail};

use crate::workspace::{Profile, Workspace};

/// The usage page; `{runs}` stands for the names of `results`' runs.
const USAGE: &str = "\
usage: cargo xtask <command> [--release]

commands:
  build-site   build the browser bundle and styles into <target>/site
  run          build everything and start the server (env is passed through:
               BIND_ADDR, DATABASE_URL, ...); prints the URL
  test         build everything, run `cargo test --workspace` against SQLite and a
               throw-away PostgreSQL, then the Playwright tests in end2end/
  e2e [SPEC…]  build the site, the server and the worker, then only the
               Playwright tests in end2end/ (what `test` runs last); SPEC
               filters the spec files as `playwright test SPEC` does
  bench        the figures: job engine (throughput, latency, kill -9 recovery,
               RSS), the engine beside graphile-worker 0.17.3 (same run,
               ratios), tenancy (request latency, rising concurrency, provisioning
               time), notifications (toast latency, idle streams), on SQLite and a
               throw-away PostgreSQL; scale-out (2 servers + 2 workers)
  results [RUN…]
               the benchmarks, the long chaos and security runs and the
               mutants, written into docs/RESULTS.md; with RUN names only
               those are measured again and the page keeps the others.
               Runs: {runs}
  mutants      break the code on purpose (the fence on stale completions, the
               super-admin check, ...) and show each suite fails; the files are
               restored afterwards

--release      optimised builds (wasm-release profile for the browser bundle)";

/// [`USAGE`] with the run names from [`results::run_names`], wrapped under
/// their entry, so the page cannot name a run that is not there, or leave one out.
fn usage() -> String {
    const INDENT: &str = "\n               ";
    let mut runs = String::new();
    let mut width = "               Runs: ".len();
    for (i, name) in results::run_names().into_iter().enumerate() {
        let item = if i == 0 { name.to_owned() } else { format!(", {name}") };
        if width + item.len() > 78 {
            runs.push(',');
            runs.push_str(INDENT);
            runs.push_str(name);
            width = INDENT.len() - 1 + name.len();
        } else {
            runs.push_str(&item);
            width += item.len();
        }
    }
    USAGE.replace("{runs}", &runs)
}

/// Errors are printed as their chain of causes, never with a backtrace: with
/// `RUST_BACKTRACE` set (as CI may have it), anyhow's frames of the xtask itself
/// filled the end of the output, which is where a failed run's reason belongs.
fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        println!("{}", usage());
        return Ok(());
    };
    let mut profile = Profile::Dev;
    // `e2e`: Playwright's file filters (`cargo xtask e2e batches`); `results`:
    // the runs to measure again.
    let mut specs = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--release" => profile = Profile::Release,
            // `cargo xtask results --help`: the same page as `cargo xtask help`.
            "--help" | "-h" => {
                println!("{}", usage());
                return Ok(());
            }
            spec if (command == "e2e" || command == "results") && !spec.starts_with('-') => specs.push(spec.to_owned()),
            other => bail!("unknown argument {other:?}\n\n{}", usage()),
        }
    }
    let ws = Workspace::detect().context("locating the workspace")?;
    match command.as_str() {
        "build-site" => site::build_site(&ws, profile),
        "run" => run(&ws, profile),
        "test" => test(&ws, profile),
        "e2e" => end_to_end(&ws, profile, &specs),
        "bench" => bench(&ws),
        "results" => results::results(&ws, &specs),
        "mutants" => mutants::mutants(&ws).map(drop),
        "help" | "--help" | "-h" => {
            println!("{}", usage());
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{}", usage()),
    }
}

/// Builds the site and the server, then becomes the server (exec), so Ctrl-C and
/// SIGTERM reach it directly and it shuts down gracefully.
fn run(ws: &Workspace, profile: Profile) -> anyhow::Result<()> {
    site::build_site(ws, profile)?;
    let server = site::build_server(ws, profile)?;
    let mut cmd = std::process::Command::new(&server);
    cmd.current_dir(&ws.root);
    if std::env::var_os("SITE_ROOT").is_none() {
        cmd.env("SITE_ROOT", ws.site_dir());
    }
    eprintln!("xtask: starting {}", server.display());
    exec(cmd)
}

#[cfg(unix)]
fn exec(mut cmd: std::process::Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // Only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("starting {:?}", cmd.get_program()))
}

#[cfg(not(unix))]
fn exec(mut cmd: std::process::Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("the server exited with {status}");
    }
    Ok(())
}

/// The benchmarks against real processes: the engine (`worker/benches/engine.rs`,
/// and at scale `worker/benches/scale.rs`, which starts its own PostgreSQL with
/// fsync on), the engine beside graphile-worker (`worker/benches/peers.rs`, on a
/// cluster of its own with fsync on), tenancy (`server/benches/tenants.rs`),
/// sign-in under a flood (`server/benches/login.rs`), notifications
/// (`server/benches/notifications.rs`) and scale-out (`server/benches/scale.rs`).
fn bench(ws: &Workspace) -> anyhow::Result<()> {
    let pg = postgres::ensure_postgres().context("starting PostgreSQL for the benchmark")?;
    e2e::npm_install(&ws.root.join("tools/peers/graphile-worker"))?;
    for (package, bench) in [
        ("worker", "engine"),
        ("worker", "scale"),
        ("worker", "peers"),
        ("server", "tenants"),
        ("server", "login"),
        ("server", "notifications"),
        ("server", "scale"),
    ] {
        let mut cargo = ws.cargo();
        cargo.args(["bench", "-p", package, "--bench", bench]).env("TEST_DATABASE_URL", &pg.url);
        workspace::run(&mut cargo).with_context(|| format!("the {bench} benchmark failed"))?;
    }
    Ok(())
}

/// Only the browser tests: what [`test`] runs last, without the minutes of
/// `cargo test --workspace` before it.
fn end_to_end(ws: &Workspace, profile: Profile, specs: &[String]) -> anyhow::Result<()> {
    tools::preflight(false)?;
    let chromium = e2e::find_chromium()?;
    let path = tools::ensure_python_tools()?;
    site::build_site(ws, profile)?;
    let server = site::build_server_and_worker(ws, profile)?;
    e2e::run_playwright(ws, &server, &chromium, &path, specs).context("end-to-end tests failed")?;
    println!("xtask: the end-to-end tests passed");
    Ok(())
}

/// Everything CI runs: fails at the first failing step.
fn test(ws: &Workspace, profile: Profile) -> anyhow::Result<()> {
    // Everything we cannot install, named at once before minutes of builds; then
    // what we can install from PyPI.
    tools::preflight(!postgres::from_environment())?;
    let chromium = e2e::find_chromium()?;
    let path = tools::ensure_python_tools()?;
    site::build_site(ws, profile)?;
    let server = site::build_server_and_worker(ws, profile)?;

    // PostgreSQL for the storage tests: `TEST_DATABASE_URL` if the caller gave one,
    // otherwise a throw-away cluster, stopped when `pg` drops (also on failure).
    let pg = postgres::ensure_postgres().context("starting PostgreSQL for the tests")?;

    let mut cargo_test = ws.cargo();
    cargo_test.args(["test", "--workspace"]).env("TEST_DATABASE_URL", &pg.url).env("PATH", &path);
    profile.add_cargo_flag(&mut cargo_test);
    workspace::run(&mut cargo_test).context("`cargo test --workspace` failed")?;

    e2e::run_playwright(ws, &server, &chromium, &path, &[]).context("end-to-end tests failed")?;
    println!("xtask: all tests passed");
    Ok(())
}
