//! `sqlx::migrate!` embeds the SQL files at compile time but cannot tell cargo
//! about them on stable Rust: rebuild when a migration changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/sqlite/jobs");
    println!("cargo:rerun-if-changed=../migrations/postgres/jobs");
}
