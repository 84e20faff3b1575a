//! Databases beside the main one, each a [`Db`] of its own: one per tenant.
//!
//! - SQLite: a file `<dir>/<name>.db`;
//! - PostgreSQL: a database `<name>` on the main handle's server, made with
//!   `CREATE DATABASE`.
//!
//! Names are quoted into SQL, so callers must only ever pass names they generated
//! ([`Siblings`] checks them against a strict shape too: ASCII letters, digits
//! and `_`, at most 63 bytes).

use std::path::PathBuf;

use sqlx::sqlite::SqliteConnectOptions;

use crate::db::{Db, Pools, sqlite_options};
use crate::error::DbError;

/// Where sibling databases of a handle live.
#[derive(Clone)]
pub struct Siblings {
    main: Db,
    /// SQLite: the folder holding the files.
    dir: PathBuf,
}

/// A name that may be quoted into `CREATE DATABASE` and used as a file name.
fn checked(name: &str) -> Result<&str, DbError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(name)
    } else {
        Err(DbError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refusing database name {name:?}: only letters, digits and _"),
        )))
    }
}

impl Db {
    /// Sibling databases of this one; on SQLite their files go in `dir`.
    pub fn siblings(&self, dir: PathBuf) -> Siblings {
        Siblings { main: self.clone(), dir }
    }
}

impl Siblings {
    /// The SQLite file of `name` (meaningful on SQLite only).
    pub fn sqlite_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.db"))
    }

    /// Whether `name` exists.
    ///
    /// # Errors
    /// A malformed name, or the server cannot be asked.
    pub async fn exists(&self, name: &str) -> Result<bool, DbError> {
        let name = checked(name)?;
        match &self.main.pools {
            Pools::Sqlite { .. } => Ok(self.sqlite_path(name).exists()),
            Pools::Postgres(pool, _) => {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .fetch_one(pool)
                    .await?;
                Ok(n > 0)
            }
        }
    }

    /// Creates `name` unless it exists. Idempotent, also when two callers race:
    /// PostgreSQL's "already exists" (42P04) counts as success.
    ///
    /// # Errors
    /// A malformed name, or creating failed for another reason.
    pub async fn create(&self, name: &str) -> Result<(), DbError> {
        let name = checked(name)?;
        match &self.main.pools {
            Pools::Sqlite { .. } => {
                std::fs::create_dir_all(&self.dir)?;
                // Opening with create creates the file; the handle is closed at once.
                let opts = sqlite_options(SqliteConnectOptions::new().filename(self.sqlite_path(name)));
                Db::open_sqlite(opts, 1).await?.close().await;
                Ok(())
            }
            Pools::Postgres(pool, _) => {
                if self.exists(name).await? {
                    return Ok(());
                }
                match sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(pool).await {
                    Ok(_) => Ok(()),
                    // Another attempt created it between our check and our create.
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Opens a small handle on `name` (one connection on SQLite, two on
    /// PostgreSQL); close it when done. Never creates it ([`Siblings::create`]
    /// does): a database that went missing must be reported, not silently
    /// replaced by an empty one.
    ///
    /// # Errors
    /// A malformed name, [`DbError::Missing`] when it does not exist, or the
    /// database cannot be opened.
    pub async fn open(&self, name: &str) -> Result<Db, DbError> {
        let name = checked(name)?;
        match &self.main.pools {
            Pools::Sqlite { .. } => {
                let path = self.sqlite_path(name);
                if !path.exists() {
                    return Err(DbError::Missing(name.to_owned()));
                }
                let opts = sqlite_options(SqliteConnectOptions::new().filename(path)).create_if_missing(false);
                Db::open_sqlite(opts, 1).await.map_err(|e| match e {
                    // Deleted between the check and the open.
                    _ if !self.sqlite_path(name).exists() => DbError::Missing(name.to_owned()),
                    e => e,
                })
            }
            Pools::Postgres(_, reach) => {
                // Asked first: sqlx's pool retries "database does not exist" for
                // its whole acquire timeout (it may be being created).
                if !self.exists(name).await? {
                    return Err(DbError::Missing(name.to_owned()));
                }
                let opts = reach.options().clone().database(name);
                let pool = crate::db::pg_pool_options(2).connect_with(opts.clone()).await?;
                // The same server: what the main handle knows of it holds here.
                Ok(Db { pools: Pools::Postgres(pool, reach.clone()), feed: None })
            }
        }
    }
}
