//! Builds the site: the hydrating WASM bundle, the stylesheet and static files, and
//! the server binary, all under `<target>/site`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::sh;

/// What a build produced.
pub struct Built {
    /// The server binary.
    pub server: PathBuf,
    /// The site root the server serves `/pkg` and static files from.
    pub site_root: PathBuf,
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-unknown-unknown") => Ok(()),
        Ok(_) => sh(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"])),
        Err(_) => Ok(()), // no rustup: assume the toolchain has the target, cargo will say if not
    }
}

/// Builds the WASM bundle, copies the assets, builds the server.
///
/// # Errors
/// A build step failed.
pub fn build(root: &Path, release: bool) -> Result<Built> {
    ensure_wasm_target()?;
    let target = target_dir(root);
    let site = target.join("site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;

    let wasm_profile = if release { "wasm-release" } else { "dev" };
    eprintln!("xtask: building the browser bundle ({wasm_profile})");
    sh(Command::new("cargo").args([
        "build",
        "-p",
        "app",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--no-default-features",
        "--features",
        "hydrate",
        "--profile",
        wasm_profile,
    ]))?;
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = target.join("wasm32-unknown-unknown").join(profile_dir).join("app.wasm");
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen
        .input_path(&wasm)
        .web(true)
        .context("wasm-bindgen --target web")?
        .typescript(false)
        .out_name("app")
        .generate(&pkg)
        .with_context(|| format!("running wasm-bindgen on {}", wasm.display()))?;

    std::fs::copy(root.join("style/main.css"), pkg.join("app.css")).context("copying style/main.css")?;
    let public = root.join("app/public");
    if public.exists() {
        for entry in std::fs::read_dir(&public).context("reading app/public")? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), site.join(entry.file_name()))
                    .with_context(|| format!("copying {}", entry.path().display()))?;
            }
        }
    }

    eprintln!("xtask: building the server");
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "-p", "server", "-p", "worker"]);
    if release {
        cmd.arg("--release");
    }
    sh(&mut cmd)?;
    let server = target.join(if release { "release" } else { "debug" }).join("server");
    Ok(Built { server, site_root: site })
}
