//! `sqlx::migrate!` embeds the SQL files at compile time but cannot tell cargo
//! about them on stable Rust: rebuild when a migration changes.
fn main() {
    for dir in ["sqlite/control", "postgres/control", "sqlite/tenant", "postgres/tenant"] {
        println!("cargo:rerun-if-changed=../migrations/{dir}");
    }
}
