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
        // What cargo set for the running test (its package's manifest dir, name,
        // version, binaries) is not this build's: build scripts that watch such a
        // variable (ring's watches `CARGO_MANIFEST_DIR`) would run again, and
        // the next `cargo test` would rebuild them back, 40 s each way.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(set_by_cargo_for_a_test) {
                build.env_remove(key);
            }
        }
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

/// Whether cargo sets variable `key` for the package it runs (tests, build
/// scripts), rather than reading it as configuration (`CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`… stay).
fn set_by_cargo_for_a_test(key: &str) -> bool {
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_MANIFEST_"];
    const NAMES: [&str; 6] = [
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_for_a_test;

    #[test]
    fn a_tests_package_variables_go_and_cargo_settings_stay() {
        for gone in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_BIN_EXE_server", "OUT_DIR", "CARGO_TARGET_TMPDIR"] {
            assert!(set_by_cargo_for_a_test(gone), "{gone}");
        }
        for kept in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL", "CARGO_PROFILE_DEV_DEBUG", "PATH"] {
            assert!(!set_by_cargo_for_a_test(kept), "{kept}");
        }
    }
}
