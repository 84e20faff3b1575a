//! Each tenant's own database: created if absent, migrated, seeded, all idempotent
//! so a provisioning re-run after a crash at any point converges on one database.
//!
//! - SQLite: a file `<data_dir>/tenants/<db_name>.db`.
//! - PostgreSQL: `CREATE DATABASE "<db_name>"` on the control plane's server.
//!
//! The name is `t_` + the tenant's UUID in hex, checked against that exact shape
//! before it reaches the database layer: user text never does.

use std::path::PathBuf;

use anyhow::{Context, bail};
use database::{Db, Siblings, query};

/// Where tenant databases live.
#[derive(Clone)]
pub struct TenantDbs {
    siblings: Siblings,
}

/// Whether `db_name` has the shape of a tenant database's name.
pub(crate) fn is_tenant_db_name(db_name: &str) -> bool {
    check_name(db_name).is_ok()
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

/// The tenant databases' migrations.
pub fn migrations() -> database::Migrations {
    database::Migrations {
        sqlite: sqlx::migrate!("../migrations/sqlite/tenant"),
        postgres: sqlx::migrate!("../migrations/postgres/tenant"),
    }
}

impl TenantDbs {
    /// Tenant databases beside the control plane `control`: SQLite files under
    /// `data_dir/tenants`, or databases on the same PostgreSQL server.
    pub fn new(control: &Db, data_dir: PathBuf) -> Self {
        Self { siblings: control.siblings(data_dir.join("tenants")) }
    }

    /// The SQLite file of a tenant (SQLite only).
    pub fn sqlite_path(&self, db_name: &str) -> PathBuf {
        self.siblings.sqlite_path(db_name)
    }

    /// Whether the tenant's database exists.
    ///
    /// # Errors
    /// The name is malformed or the server cannot be asked.
    pub async fn exists(&self, db_name: &str) -> anyhow::Result<bool> {
        check_name(db_name)?;
        Ok(self.siblings.exists(db_name).await?)
    }

    /// Creates the database if it does not exist yet.
    ///
    /// # Errors
    /// The name is malformed, or creating failed for another reason than "exists".
    pub async fn create(&self, db_name: &str) -> anyhow::Result<()> {
        check_name(db_name)?;
        self.siblings.create(db_name).await.with_context(|| format!("CREATE DATABASE {db_name}"))
    }

    /// Opens a small handle on the tenant's database; close it when done. Never
    /// creates it: a missing one is [`database::DbError::Missing`].
    ///
    /// # Errors
    /// The name is malformed or the database cannot be opened.
    pub async fn open(&self, db_name: &str) -> anyhow::Result<Db> {
        check_name(db_name)?;
        Ok(self.siblings.open(db_name).await?)
    }

    /// Runs the tenant migrations (`migrations/<backend>/tenant`).
    ///
    /// # Errors
    /// A migration failed.
    pub async fn migrate(&self, db: &Db) -> anyhow::Result<()> {
        Ok(db.migrate(migrations()).await?)
    }

    /// What a tenant admin's home shows from the tenant's own database: its roles
    /// `(name, description)` and settings `(key, value)`, by name. Opens and
    /// closes a handle (the page is visited now and then; no pool per tenant is
    /// kept open).
    ///
    /// # Errors
    /// [`Broken`] when the database is missing or has lost its tables (a file
    /// deleted by hand, a dropped database); other failures to open or read it.
    pub async fn read_home(&self, db_name: &str) -> anyhow::Result<TenantHome> {
        check_name(db_name)?;
        let db = match self.siblings.open(db_name).await {
            Ok(db) => db,
            Err(database::DbError::Missing(_)) => {
                return Err(Broken { db_name: db_name.to_owned(), why: "it does not exist" }.into());
            }
            Err(e) => return Err(e.into()),
        };
        let read = async {
            Ok(TenantHome {
                roles: query("SELECT name, description FROM roles ORDER BY name").fetch_all(db.read()).await?,
                settings: query("SELECT key, value FROM settings ORDER BY key").fetch_all(db.read()).await?,
            })
        }
        .await;
        db.close().await;
        read.map_err(|e: database::DbError| {
            if no_such_table(&e) {
                Broken { db_name: db_name.to_owned(), why: "its tables are missing" }.into()
            } else {
                anyhow::Error::from(e)
            }
        })
    }
}

/// A tenant's database is missing or damaged: the tenant is broken, and only an
/// operator (a restore from backup) can mend it. Reads report it instead of
/// creating an empty database.
#[derive(Debug, thiserror::Error)]
#[error("the tenant database {db_name} is broken: {why}")]
pub struct Broken {
    /// The database's name.
    pub db_name: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Whether `e` says a table is missing (SQLite "no such table", PostgreSQL
/// `42P01` undefined_table).
fn no_such_table(e: &database::DbError) -> bool {
    let database::DbError::Sqlx(sqlx::Error::Database(d)) = e else { return false };
    d.code().as_deref() == Some("42P01") || d.message().starts_with("no such table")
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
