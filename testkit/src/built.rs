//! Another package's binary for a test or benchmark of this one. Cargo builds only
//! the binaries of the package under test (`CARGO_BIN_EXE_<name>`); the server's
//! process tests and benchmarks also run `worker`, so it is built here, beside the
//! server's, before it is started: a stale one is never tested or measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, bail};

/// The binary of `package` (named like it) in the folder of `beside` (a binary of
/// the running test's package, `env!("CARGO_BIN_EXE_…")`), after `cargo build -p
/// package` (`--release` when `release`) with `cargo` (`env!("CARGO")`). Built
/// once per package and process; a no-op for cargo when it is fresh.
///
/// # Errors
/// The build failed.
pub fn built_binary(cargo: &str, beside: &Path, package: &str, release: bool) -> anyhow::Result<PathBuf> {
    /// The packages built by this process. Held while building, so tests running
    /// in parallel wait for the one build rather than start their own.
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !built.iter().any(|p| p == package) {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", package]);
        if release {
            build.arg("--release");
        }
        let status = build.status().with_context(|| format!("running {build:?}"))?;
        if !status.success() {
            bail!("{build:?} failed ({status})");
        }
        built.push(package.to_owned());
    }
    Ok(beside.with_file_name(package))
}
