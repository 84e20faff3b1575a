//! [`Db`]: the handle on the database, and the targets queries run against.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

use crate::error::DbError;
use crate::migrate::Migrations;
use crate::tx::Tx;

/// How long a connection waits for another process's write lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in a PostgreSQL handle's pool.
pub const PG_POOL_SIZE: u32 = 16;
/// How long a PostgreSQL query waits for a free connection.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which SQL dialect a handle speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pools {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// A handle on the database. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct Db {
    pub(crate) pools: Pools,
    /// PostgreSQL: the options the pool connects with (sibling databases swap
    /// the database name).
    pub(crate) pg_options: Option<PgConnectOptions>,
    /// SQLite file: the watch of other processes' commits (see [`crate::changes`]).
    pub(crate) feed: Option<std::sync::Arc<crate::changes::Feed>>,
}

/// Where a query runs: a pool (reads or writes) or a transaction's connection.
/// Made by [`Db::read`], [`Db::write`] or from `&mut Tx`.
pub enum Conn<'c> {
    /// An SQLite pool.
    SqlitePool(&'c SqlitePool),
    /// A PostgreSQL pool.
    PgPool(&'c PgPool),
    /// An SQLite connection (in a transaction).
    Sqlite(&'c mut SqliteConnection),
    /// A PostgreSQL connection (in a transaction).
    Pg(&'c mut PgConnection),
}

impl Db {
    /// Opens the database named by `url`: `sqlite://PATH` (the file and its folder
    /// are created if missing, at this call only) or `postgres://…` (the database
    /// is created if missing).
    ///
    /// # Errors
    /// An unsupported URL, or the database cannot be reached or created.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let opts = sqlite_options(SqliteConnectOptions::from_str(url)?);
            if let Some(dir) = opts.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            if opts.get_filename().as_os_str() == ":memory:" {
                return Self::open_sqlite(opts, 4).await;
            }
            // The file is made here, once. The pools' later connections never
            // create it: if it is deleted while we run, they fail instead of
            // quietly starting an empty control plane that a restart would take
            // for the real one.
            sqlx::Connection::close(<SqliteConnection as sqlx::Connection>::connect_with(&opts).await?).await?;
            Self::open_sqlite(opts.create_if_missing(false), 4).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            create_pg_database_if_missing(&opts).await?;
            let pool = PgPoolOptions::new()
                .max_connections(PG_POOL_SIZE)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                .connect_with(opts.clone())
                .await?;
            Ok(Self { pools: Pools::Postgres(pool), pg_options: Some(opts), feed: None })
        } else {
            Err(DbError::BadUrl(url.split(':').next().unwrap_or("").to_owned()))
        }
    }

    /// An SQLite handle on `opts` with `readers` read connections beside the one
    /// writer.
    pub(crate) async fn open_sqlite(opts: SqliteConnectOptions, readers: u32) -> Result<Self, DbError> {
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        let file = opts.get_filename();
        let feed = (file.as_os_str() != ":memory:").then(|| crate::changes::Feed::new(file.to_path_buf()));
        let read = SqlitePoolOptions::new().max_connections(readers.max(1)).connect_with(opts).await?;
        Ok(Self { pools: Pools::Sqlite { write, read }, pg_options: None, feed })
    }

    /// The dialect this handle speaks.
    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Where reads go (SQLite: the readers beside the writer).
    pub fn read(&self) -> Conn<'_> {
        match &self.pools {
            Pools::Sqlite { read, .. } => Conn::SqlitePool(read),
            Pools::Postgres(p) => Conn::PgPool(p),
        }
    }

    /// Where single-statement writes go (SQLite: the one writer connection).
    pub fn write(&self) -> Conn<'_> {
        match &self.pools {
            Pools::Sqlite { write, .. } => Conn::SqlitePool(write),
            Pools::Postgres(p) => Conn::PgPool(p),
        }
    }

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE` on the writer).
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match &self.pools {
            Pools::Sqlite { write, .. } => Tx::sqlite_tx(write.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres(p) => Tx::pg_tx(p.begin().await?),
        })
    }

    /// Starts a read-only snapshot: SQLite, a deferred transaction on a reader
    /// (one WAL snapshot, no write lock); PostgreSQL, `REPEATABLE READ, READ
    /// ONLY`. Roll it back when done.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin_read(&self) -> Result<Tx, DbError> {
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => Tx::sqlite_tx(read.begin().await?),
            Pools::Postgres(p) => Tx::pg_tx(p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?),
        })
    }

    /// Runs a migration set (see [`crate::migrate`]).
    ///
    /// # Errors
    /// A migration failed.
    pub async fn migrate(&self, m: Migrations) -> Result<(), DbError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => {
                let mut m = m.sqlite;
                m.set_ignore_missing(true);
                m.run(write).await?;
            }
            Pools::Postgres(p) => {
                let mut m = m.postgres;
                m.set_ignore_missing(true);
                m.run(p).await?;
            }
        }
        Ok(())
    }

    /// SQLite's `(write, read)` pools, for dialect-specific code.
    pub fn sqlite(&self) -> Option<(&SqlitePool, &SqlitePool)> {
        match &self.pools {
            Pools::Sqlite { write, read } => Some((write, read)),
            Pools::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, for dialect-specific code.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(p) => Some(p),
            Pools::Sqlite { .. } => None,
        }
    }

    /// Closes the pools (waits for connections in use to be returned).
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// Creates the database `opts` names when the server says it does not exist
/// (as the README promises), through the server's `postgres` maintenance
/// database. Without this, sqlx's pool retries "does not exist" (it may be being
/// created) for its whole acquire timeout and then says only "pool timed out".
/// Any other failure of the probe is left to the pool, which reports or retries
/// it as before (a server still starting up).
async fn create_pg_database_if_missing(opts: &PgConnectOptions) -> Result<(), DbError> {
    use sqlx::Connection;
    let missing = match PgConnection::connect_with(opts).await {
        Ok(c) => {
            let _ = c.close().await;
            return Ok(());
        }
        Err(e) => e.as_database_error().and_then(|d| d.code()).as_deref() == Some("3D000"),
    };
    let Some(name) = opts.get_database().filter(|_| missing).map(str::to_owned) else { return Ok(()) };
    let create = async {
        let mut admin = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
        // The name comes from the operator's DATABASE_URL; quoted as an identifier.
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        let made = match sqlx::query(&sql).execute(&mut admin).await {
            Ok(_) => Ok(()),
            // Another process created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
            Err(e) => Err(e),
        };
        let _ = admin.close().await;
        made
    };
    create.await.map_err(|source| DbError::CannotCreate { name: name.clone(), source })?;
    tracing::info!(database = %name, "created the PostgreSQL database DATABASE_URL names");
    Ok(())
}

/// The options every SQLite connection of ours uses: WAL, `synchronous=NORMAL`
/// (durable at checkpoints, safe against corruption), a busy timeout for other
/// processes' writes, foreign keys on.
pub(crate) fn sqlite_options(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
}

impl<'c> From<&'c mut Tx> for Conn<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        tx.conn()
    }
}
