//! Compiles `*.proto` with protox (pure Rust), so the build needs no system `protoc`.
//! Client code is emitted for every target; server traits only natively, since the
//! browser build (wasm32) has no transport to serve on.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "jobs/v1/jobs.proto",
    "auth/v1/auth.proto",
    "tenants/v1/tenants.proto",
    "notifications/v1/notifications.proto",
    "mail/v1/mail.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_transport(false)
        .codec_path("crate::codec::ProtoCodec")
        .server_mod_attribute(".", "#[cfg(not(target_arch = \"wasm32\"))]")
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(fds)?;
    Ok(())
}
