//! The site: the browser bundle (`pkg/app.js`, `pkg/app_bg.wasm`), the stylesheet
//! (`pkg/app.css`) and public assets, all under `<target>/site`; and the server
//! binary that serves it.
//!
//! The file names are what `leptos::HydrationScripts` asks for when the server
//! runs with `output_name = "app"` and was built without cargo-leptos'
//! `LEPTOS_OUTPUT_NAME`: `<name>.js` and `<name>_bg.wasm` under `/pkg`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wasm_bindgen_cli_support::Bindgen;

use crate::workspace::{self, Profile, Workspace};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The bundle's base name; must match the server's `LeptosOptions::output_name`.
const OUTPUT_NAME: &str = "app";

/// Builds the browser bundle and copies styles and public assets into the site dir.
pub fn build_site(ws: &Workspace, profile: Profile) -> anyhow::Result<()> {
    ensure_wasm_target()?;

    let mut cargo = ws.cargo();
    cargo.args([
        "build",
        "-p",
        "app",
        "--lib",
        "--target",
        WASM_TARGET,
        "--no-default-features",
        "--features",
        "hydrate",
    ]);
    let wasm_profile_dir = match profile {
        Profile::Dev => "debug",
        Profile::Release => {
            cargo.args(["--profile", "wasm-release"]);
            "wasm-release"
        }
    };
    workspace::run(&mut cargo).context("building the browser bundle (wasm)")?;
    let wasm = ws.target_dir.join(WASM_TARGET).join(wasm_profile_dir).join("app.wasm");

    let site = ws.site_dir();
    let pkg = site.join("pkg");
    // Start from an empty pkg/ so no stale snippet or bundle survives a rebuild.
    if pkg.exists() {
        std::fs::remove_dir_all(&pkg).with_context(|| format!("clearing {}", pkg.display()))?;
    }
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;

    eprintln!("xtask: wasm-bindgen {} -> {}", wasm.display(), pkg.display());
    Bindgen::new()
        .input_path(&wasm)
        .out_name(OUTPUT_NAME)
        .web(true)
        .context("selecting wasm-bindgen's `web` target")?
        .typescript(false)
        .debug(profile == Profile::Dev)
        .generate(&pkg)
        .with_context(|| format!("running wasm-bindgen on {}", wasm.display()))?;

    let css_src = ws.root.join("style/main.css");
    let css_dst = pkg.join(format!("{OUTPUT_NAME}.css"));
    std::fs::copy(&css_src, &css_dst)
        .with_context(|| format!("copying {} to {}", css_src.display(), css_dst.display()))?;

    let public = ws.root.join("app/public");
    if public.is_dir() {
        copy_dir(&public, &site)?;
    }
    eprintln!("xtask: site ready in {}", site.display());
    Ok(())
}

/// Builds the server (SSR) and returns the path of its binary.
pub fn build_server(ws: &Workspace, profile: Profile) -> anyhow::Result<PathBuf> {
    build_server_and(ws, profile, &[])
}

/// [`build_server`], plus the `worker` binary beside it (the end-to-end tests
/// run provisioning in worker processes of their own, and kill one).
///
/// # Errors
/// The build failed.
pub fn build_server_and_worker(ws: &Workspace, profile: Profile) -> anyhow::Result<PathBuf> {
    build_server_and(ws, profile, &["-p", "worker", "--bin", "worker"])
}

fn build_server_and(ws: &Workspace, profile: Profile, more: &[&str]) -> anyhow::Result<PathBuf> {
    let mut cargo = ws.cargo();
    cargo.args(["build", "-p", "server", "--bin", "server"]).args(more);
    profile.add_cargo_flag(&mut cargo);
    workspace::run(&mut cargo).context("building the server")?;
    let bin = ws.target_dir.join(profile.native_dir()).join(format!("server{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("the server built, but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Adds the wasm target through rustup when it is missing. Without rustup (a
/// distribution's Rust) we go on and let cargo say what is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed =
        match workspace::output(std::process::Command::new("rustup").args(["target", "list", "--installed"])) {
            Ok(list) => list,
            Err(e) => {
                eprintln!("xtask: cannot ask rustup for installed targets ({e:#}); assuming {WASM_TARGET} is there");
                return Ok(());
            }
        };
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    workspace::run(std::process::Command::new("rustup").args(["target", "add", WASM_TARGET]))
        .with_context(|| format!("installing the {WASM_TARGET} target"))
}

/// Copies the files under `from` into `to`, keeping the folder structure.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().with_context(|| format!("inspecting {}", src.display()))?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}
