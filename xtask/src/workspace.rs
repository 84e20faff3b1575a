//! Where things are, and running commands with useful errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Debug or optimised builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Cargo's `dev` profile for everything: fastest to build, what tests use.
    Dev,
    /// `release` for the server, `wasm-release` (size-optimised) for the browser.
    Release,
}

impl Profile {
    /// The output folder of native builds under the target dir.
    pub fn native_dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }

    /// Adds `--release` to a native cargo command when needed.
    pub fn add_cargo_flag(self, cmd: &mut Command) {
        if self == Profile::Release {
            cmd.arg("--release");
        }
    }
}

/// The workspace the xtask was built from.
pub struct Workspace {
    /// The folder holding the root `Cargo.toml`.
    pub root: PathBuf,
    /// `CARGO_TARGET_DIR` if set (relative to the root), else `<root>/target`.
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Finds the root from this crate's location and the target dir from the
    /// environment, the way cargo does.
    pub fn detect() -> anyhow::Result<Self> {
        // The checkout we are run from, not the one xtask was compiled in: with a
        // target dir shared between checkouts (CI keeps one), a binary built in
        // another clone is reused as it is.
        let compiled_in =
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask's manifest dir has no parent")?.to_path_buf();
        let here = std::env::current_dir().context("reading the current directory")?;
        let root = here
            .ancestors()
            .find(|d| d.join("xtask/Cargo.toml").is_file() && d.join("Cargo.toml").is_file())
            .map_or(compiled_in, Path::to_path_buf);
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        Ok(Self { root, target_dir })
    }

    /// Where the built site goes: `pkg/` (js, wasm, css) and public assets.
    pub fn site_dir(&self) -> PathBuf {
        self.target_dir.join("site")
    }

    /// A `cargo` command in the workspace root, using the cargo that runs us.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root);
        // cargo-leptos' way of naming the bundle: if it leaks in from a shell, the
        // server would ask for files we did not build.
        cmd.env_remove("LEPTOS_OUTPUT_NAME");
        cmd
    }
}

/// Runs `cmd` to completion, inheriting stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {}", describe(cmd));
    let status = cmd.status().with_context(|| format!("starting {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} exited with {status}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; fails unless it exits 0.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {}", describe(cmd)))?;
    if !out.status.success() {
        bail!("{} exited with {}: {}", describe(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program arg arg …`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
