//! Where the product's data lives.

use std::path::PathBuf;

use clap::Args;

use crate::{Show, redact_url};

/// The control-plane database when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/app.db";

/// The control-plane database and the data folder.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// The control-plane database, created and migrated at start:
    /// `sqlite://PATH` (the file is created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Folder of the tenants' SQLite files (`DATA_DIR/tenants`) and, without
    /// SMTP_URL, of the emails (`DATA_DIR/mail`).
    #[arg(long, env = "DATA_DIR", default_value = "data", hide_env_values = true)]
    pub data_dir: PathBuf,
}

impl Show for DatabaseArgs {
    fn show(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("DATABASE_URL", redact_url(&self.database_url)));
        out.push(("DATA_DIR", self.data_dir.display().to_string()));
    }
}
