//! Migrations: one set per backend, run by whichever the handle is on.
//!
//! Owners keep their migration files (`migrations/{sqlite,postgres}/<set>`) and
//! embed them with `sqlx::migrate!` in their own crate; several sets share one
//! `_sqlx_migrations` table, each with its own range of versions, so every set
//! runs with `ignore_missing` (the others' versions are not "missing" ones).

use sqlx::migrate::Migrator;

/// One migration set, for both backends.
pub struct Migrations {
    /// The SQLite flavour.
    pub sqlite: Migrator,
    /// The PostgreSQL flavour.
    pub postgres: Migrator,
}
