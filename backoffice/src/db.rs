//! The control plane's schema: its migrations (`migrations/{sqlite,postgres}/control`).
//!
//! The domain's SQL is portable (`$1` placeholders, TEXT and 64-bit integers, no
//! dialect functions): each query is written once with [`database::query`] and
//! runs on whichever backend the handle is on.

/// The control plane's migrations.
pub fn migrations() -> database::Migrations {
    database::Migrations {
        sqlite: sqlx::migrate!("../migrations/sqlite/control"),
        postgres: sqlx::migrate!("../migrations/postgres/control"),
    }
}
