//! Each tenant's own database: created if absent, migrated, seeded, all idempotent
//! so a provisioning re-run after a crash at any point converges on one database.
//!
//! - SQLite: a file `<data_dir>/tenants/<db_name>.db`.
//! - PostgreSQL: `CREATE DATABASE "<db_name>"` on the control plane's server. The
//!   name is `t_` + the tenant's UUID in hex, checked against that exact shape
//!   before it is quoted into SQL: user text never reaches it.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use jobengine::Pools;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

/// An open tenant database.
pub enum TenantPool {
    /// SQLite file.
    Sqlite(sqlx::SqlitePool),
    /// PostgreSQL database.
    Postgres(sqlx::PgPool),
}

/// Where tenant databases live.
#[derive(Clone)]
pub struct TenantDbs {
    control: Pools,
    /// SQLite: the folder holding tenant files.
    dir: PathBuf,
    /// PostgreSQL: the control plane's connection options (the database name is
    /// swapped per tenant).
    pg: Option<PgConnectOptions>,
}

fn check_name(db_name: &str) -> anyhow::Result<()> {
    let ok = db_name.len() == 34
        && db_name.starts_with("t_")
        && db_name[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        bail!("refusing tenant database name {db_name:?}: not t_<32 hex digits>");
    }
    Ok(())
}

impl TenantDbs {
    /// Tenant databases beside the control plane: SQLite files under
    /// `data_dir/tenants`, or databases on the same PostgreSQL server as
    /// `control_url`.
    ///
    /// # Errors
    /// The PostgreSQL URL does not parse.
    pub fn new(control: Pools, control_url: &str, data_dir: PathBuf) -> anyhow::Result<Self> {
        let pg = match &control {
            Pools::Postgres(_) => Some(PgConnectOptions::from_str(control_url).context("parsing DATABASE_URL")?),
            Pools::Sqlite { .. } => None,
        };
        Ok(Self { control, dir: data_dir.join("tenants"), pg })
    }

    /// The SQLite file of a tenant (SQLite only).
    pub fn sqlite_path(&self, db_name: &str) -> PathBuf {
        self.dir.join(format!("{db_name}.db"))
    }

    /// Whether the tenant's database exists.
    ///
    /// # Errors
    /// The name is malformed or the server cannot be asked.
    pub async fn exists(&self, db_name: &str) -> anyhow::Result<bool> {
        check_name(db_name)?;
        match &self.control {
            Pools::Sqlite { .. } => Ok(self.sqlite_path(db_name).exists()),
            Pools::Postgres(pool) => {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(db_name)
                    .fetch_one(pool)
                    .await?;
                Ok(n > 0)
            }
        }
    }

    /// Creates the database if it does not exist yet.
    ///
    /// # Errors
    /// The name is malformed, or creating failed for another reason than "exists".
    pub async fn create(&self, db_name: &str) -> anyhow::Result<()> {
        check_name(db_name)?;
        match &self.control {
            Pools::Sqlite { .. } => {
                std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
                // Opening with create_if_missing creates it; the pool is dropped at once.
                let pool = self.open(db_name).await?;
                if let TenantPool::Sqlite(p) = pool {
                    p.close().await;
                }
                Ok(())
            }
            Pools::Postgres(pool) => {
                if self.exists(db_name).await? {
                    return Ok(());
                }
                match sqlx::query(&format!("CREATE DATABASE \"{db_name}\"")).execute(pool).await {
                    Ok(_) => Ok(()),
                    // Another attempt created it between our check and our create.
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
                    Err(e) => Err(anyhow!(e).context(format!("CREATE DATABASE {db_name}"))),
                }
            }
        }
    }

    /// Opens a small pool on the tenant's database.
    ///
    /// # Errors
    /// The name is malformed or the database cannot be opened.
    pub async fn open(&self, db_name: &str) -> anyhow::Result<TenantPool> {
        check_name(db_name)?;
        match &self.pg {
            None => {
                let opts = SqliteConnectOptions::new()
                    .filename(self.sqlite_path(db_name))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(std::time::Duration::from_secs(30))
                    .foreign_keys(true);
                Ok(TenantPool::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?))
            }
            Some(base) => {
                let opts = base.clone().database(db_name);
                Ok(TenantPool::Postgres(PgPoolOptions::new().max_connections(2).connect_with(opts).await?))
            }
        }
    }

    /// Runs the tenant migrations (`migrations/<backend>/tenant`).
    ///
    /// # Errors
    /// A migration failed.
    pub async fn migrate(&self, pool: &TenantPool) -> anyhow::Result<()> {
        match pool {
            TenantPool::Sqlite(p) => sqlx::migrate!("../migrations/sqlite/tenant").run(p).await?,
            TenantPool::Postgres(p) => sqlx::migrate!("../migrations/postgres/tenant").run(p).await?,
        }
        Ok(())
    }

    /// What a tenant admin's home shows from the tenant's own database: its roles
    /// `(name, description)` and settings `(key, value)`, by name. Opens and
    /// closes a pool (the page is visited now and then; no pool per tenant is
    /// kept open).
    ///
    /// # Errors
    /// The database cannot be opened or read.
    pub async fn read_home(&self, db_name: &str) -> anyhow::Result<TenantHome> {
        const ROLES: &str = "SELECT name, description FROM roles ORDER BY name";
        const SETTINGS: &str = "SELECT key, value FROM settings ORDER BY key";
        let home = match self.open(db_name).await? {
            TenantPool::Sqlite(p) => {
                let home = TenantHome {
                    roles: sqlx::query_as(ROLES).fetch_all(&p).await?,
                    settings: sqlx::query_as(SETTINGS).fetch_all(&p).await?,
                };
                p.close().await;
                home
            }
            TenantPool::Postgres(p) => {
                let home = TenantHome {
                    roles: sqlx::query_as(ROLES).fetch_all(&p).await?,
                    settings: sqlx::query_as(SETTINGS).fetch_all(&p).await?,
                };
                p.close().await;
                home
            }
        };
        Ok(home)
    }
}

/// Data read from a tenant's own database for its admin's home page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHome {
    /// `(name, description)`.
    pub roles: Vec<(String, String)>,
    /// `(key, value)`.
    pub settings: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_names_pass() {
        assert!(check_name(&format!("t_{}", uuid::Uuid::new_v4().simple())).is_ok());
        for bad in ["t_", "postgres", "t_0123456789abcdef0123456789ABCDEF", "t_x\"; DROP DATABASE x; --aaaaaaaaaa"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
