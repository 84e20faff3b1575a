//! [`Db`]: the handle on the database, and the targets queries run against.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

use crate::error::DbError;
use crate::migrate::Migrations;
use crate::reach::Reach;
use crate::tx::Tx;

/// How long a connection waits for another process's write lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in a PostgreSQL handle's pool.
pub const PG_POOL_SIZE: u32 = 16;
/// How long a PostgreSQL query waits for a free connection.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// A pooled PostgreSQL connection used this recently is handed out without a
/// liveness round trip first (HikariCP's `aliveBypassWindowMs` is 500 ms too).
/// Pinging every connection taken from the pool, sqlx's default, put a second
/// round trip before every statement: an enqueue, a sign-in's each query.
/// sqlx still tests each connection as it comes back to the pool and drops a
/// broken one there, so only one that broke while idle for less than this (a
/// server restarted within it) can reach a caller: its statement fails as
/// "unavailable" (see [`DbError::is_unavailable`]), and the connection is
/// dropped as it comes back.
pub const PG_PING_IF_IDLE: Duration = Duration::from_millis(500);

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
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    /// The pool, and what is known about its server's reach (which also holds
    /// the options the pool connects with: sibling databases swap the name).
    Postgres(PgPool, std::sync::Arc<Reach>),
}

/// A handle on the database. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct Db {
    pub(crate) pools: Pools,
    /// SQLite file: the watch of other processes' commits (see [`crate::changes`]).
    pub(crate) feed: Option<std::sync::Arc<crate::changes::Feed>>,
}

/// Where a query runs: a pool (reads or writes) or a transaction's connection.
/// Made by [`Db::read`], [`Db::write`] or from `&mut Tx`.
pub enum Conn<'c> {
    /// An SQLite pool.
    SqlitePool(&'c SqlitePool),
    /// A PostgreSQL pool; a connection is taken through the server's [`Reach`].
    PgPool(&'c PgPool, &'c std::sync::Arc<Reach>),
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
        Self::open(url, true).await
    }

    /// Opens the database named by `url` as [`Db::connect`] does, except that
    /// a database that does not exist (SQLite file or PostgreSQL database) is an
    /// error, not a new empty one: for commands that read an installation (a
    /// mistyped path must not look like an empty installation).
    ///
    /// # Errors
    /// [`DbError::Missing`] for a database that does not exist; as
    /// [`Db::connect`].
    pub async fn open_existing(url: &str) -> Result<Self, DbError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let opts = sqlite_options(SqliteConnectOptions::from_str(url)?);
            let file = opts.get_filename();
            if !create && file.as_os_str() != ":memory:" && !file.exists() {
                return Err(DbError::Missing(file.display().to_string()));
            }
            if let Some(dir) = file.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            if file.as_os_str() == ":memory:" {
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
            reach_pg(&opts, PG_ACQUIRE_TIMEOUT, create).await?;
            let pool = pg_pool_options(PG_POOL_SIZE).connect_with(opts.clone()).await?;
            let reach = Reach::new(opts);
            Ok(Self { pools: Pools::Postgres(pool, reach), feed: None })
        } else {
            Err(DbError::BadUrl(url.split(':').next().unwrap_or("").to_owned()))
        }
    }

    /// An SQLite handle on `opts` with `readers` read connections beside the one
    /// writer.
    pub(crate) async fn open_sqlite(opts: SqliteConnectOptions, readers: u32) -> Result<Self, DbError> {
        // No liveness ping before each use (sqlx's default): a connection to a
        // local file has no link to lose, and the ping was a round trip to the
        // connection's thread before every statement, the one writer's included.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let file = opts.get_filename();
        let feed = (file.as_os_str() != ":memory:").then(|| crate::changes::Feed::new(file.to_path_buf()));
        let read = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        Ok(Self { pools: Pools::Sqlite { write, read }, feed })
    }

    /// The dialect this handle speaks.
    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Postgres(..) => Dialect::Postgres,
        }
    }

    /// Where reads go (SQLite: the readers beside the writer).
    pub fn read(&self) -> Conn<'_> {
        match &self.pools {
            Pools::Sqlite { read, .. } => Conn::SqlitePool(read),
            Pools::Postgres(p, reach) => Conn::PgPool(p, reach),
        }
    }

    /// Where single-statement writes go (SQLite: the one writer connection).
    pub fn write(&self) -> Conn<'_> {
        match &self.pools {
            Pools::Sqlite { write, .. } => Conn::SqlitePool(write),
            Pools::Postgres(p, reach) => Conn::PgPool(p, reach),
        }
    }

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE` on the writer).
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match &self.pools {
            Pools::Sqlite { write, .. } => Tx::sqlite_tx(write.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres(p, reach) => Tx::pg_tx(reach.gate(|| p.begin()).await?),
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
            Pools::Postgres(p, reach) => {
                Tx::pg_tx(reach.gate(|| p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")).await?)
            }
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
            Pools::Postgres(p, _) => {
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
            Pools::Postgres(..) => None,
        }
    }

    /// The PostgreSQL pool, for dialect-specific code.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(p, _) => Some(p),
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
            Pools::Postgres(p, _) => p.close().await,
        }
    }
}

/// Reaches the server `opts` names before the pool is made, so that a failure
/// says why. A server that refuses connections or is starting up (a restart,
/// one started beside us) is waited for up to `within`, as sqlx's pool would
/// (the same errors, [`transient_at_connect`]), but when the wait runs out the
/// error names the server and the last cause ("connection refused") where the
/// pool said only "pool timed out". Any other failure (a wrong password, an
/// unknown host) is reported at once.
///
/// A database the server says does not exist is created when `create` is set
/// (as the README promises), through the server's `postgres` maintenance
/// database, and is [`DbError::Missing`] otherwise: the pool would retry "does
/// not exist" (it may be being created) for its whole acquire timeout.
pub(crate) async fn reach_pg(opts: &PgConnectOptions, within: Duration, create: bool) -> Result<(), DbError> {
    use sqlx::Connection;
    let deadline = tokio::time::Instant::now() + within;
    let mut delays = crate::backoff::retry_delays(Duration::from_millis(100));
    let mut told = false;
    loop {
        // A server that takes the connection and never answers (a frozen
        // host, a wrong port's other service) is given the same time.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(left, PgConnection::connect_with(opts)).await.unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to the connection")))
        });
        match attempt {
            Ok(c) => {
                let _ = c.close().await;
                return Ok(());
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("3D000") => break,
            Err(e) if transient_at_connect(&e) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(DbError::Unreachable { server: server_of(opts), waited: within, source: e });
                }
                if !told {
                    tracing::warn!(server = %server_of(opts), error = %e, waiting = ?within,
                        "PostgreSQL does not answer yet; waiting for it");
                    told = true;
                }
                tokio::time::sleep(delays.next().unwrap_or(crate::backoff::MAX_DELAY).min(left)).await;
            }
            Err(e) => return Err(DbError::Sqlx(e)),
        }
    }
    let Some(name) = opts.get_database().map(str::to_owned) else { return Ok(()) };
    if !create {
        return Err(DbError::Missing(name));
    }
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

/// The connect failures sqlx's pool retries (sqlx-core 0.8's `PoolInner::connect`):
/// a refused connection, too many connections, the server starting up; and
/// ours, no answer within the time left.
fn transient_at_connect(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut)
        }
        e => e.as_database_error().and_then(|d| d.code()).is_some_and(|c| matches!(c.as_ref(), "53300" | "57P03")),
    }
}

/// `host:port` (or the socket's folder) of a PostgreSQL URL, for messages.
pub(crate) fn server_of(opts: &PgConnectOptions) -> String {
    match opts.get_socket() {
        Some(dir) => format!("{} (socket)", dir.display()),
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    }
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

/// The options of a PostgreSQL pool of `size` connections: the acquire timeout,
/// and a liveness ping only for a connection idle for [`PG_PING_IF_IDLE`].
pub(crate) fn pg_pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(PG_ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PG_PING_IF_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;
    use crate::forward::{Forwarder, closed_port, test_url};

    /// The pool hands a connection used within [`PG_PING_IF_IDLE`] out with no
    /// liveness round trip: its server process killed just before, the next
    /// statement fails, as "unavailable" (with sqlx's ping before every use it
    /// would have gone through on a fresh connection), and the broken
    /// connection is not handed out again. One idle for longer is pinged
    /// first: killed, it is replaced and the statement goes through.
    #[tokio::test]
    async fn only_a_connection_idle_for_a_while_is_pinged_before_use() {
        let db = Db::connect(&test_url()).await.expect("connect");
        let mut admin = <PgConnection as sqlx::Connection>::connect(&test_url()).await.expect("admin connection");
        let backend = || async { crate::query("SELECT pg_backend_pid()").scalar::<i32>(db.read()).await };
        let kill = |pid: i32| {
            // Waits (up to 5 s) until the process has gone.
            sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1, 5000)").bind(pid)
        };
        // sqlx pings a connection as it comes back, in a task of its own: kill
        // a process only once its connection is back, or that ping finds it dead.
        let pool = db.postgres().expect("a PostgreSQL pool");
        let settled = || async {
            let back = async {
                while pool.num_idle() < pool.size() as usize {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), back).await.expect("the connection came back to the pool");
        };

        let pid = backend().await.expect("pid");
        settled().await;
        assert!(kill(pid).fetch_one(&mut admin).await.expect("terminate"));
        let err = backend().await.expect_err("the connection used a moment ago was handed out untested");
        assert!(err.is_unavailable(), "{err:?}");
        let again = backend().await.expect("a fresh connection after the broken one");
        assert_ne!(again, pid);

        settled().await;
        assert!(kill(again).fetch_one(&mut admin).await.expect("terminate"));
        tokio::time::sleep(PG_PING_IF_IDLE + Duration::from_millis(200)).await;
        let fresh = backend().await.expect("the idle connection was pinged, found dead and replaced");
        assert_ne!(fresh, again);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_named_with_the_cause() {
        let port = closed_port().await;
        let opts = PgConnectOptions::from_str(&format!("postgres://postgres@127.0.0.1:{port}/app")).expect("url");
        let started = Instant::now();
        let err = reach_pg(&opts, Duration::from_secs(1), true).await.expect_err("nothing listens there");
        let took = started.elapsed();
        assert!(matches!(err, DbError::Unreachable { .. }) && err.is_unavailable(), "{err:?}");
        let said = err.to_string();
        assert!(said.contains(&format!("127.0.0.1:{port}")) && said.contains("refused"), "{said}");
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "waited {took:?}");
    }

    #[tokio::test]
    async fn a_server_that_takes_the_connection_and_never_answers_is_given_up_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let opts = PgConnectOptions::from_str(&format!("postgres://postgres@127.0.0.1:{port}/app")).expect("url");
        let started = Instant::now();
        let err = reach_pg(&opts, Duration::from_secs(1), true).await.expect_err("no answer");
        let took = started.elapsed();
        assert!(matches!(err, DbError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("no answer"), "{err}");
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "waited {took:?}");
        silent.abort();
    }

    #[tokio::test]
    async fn a_server_that_comes_up_while_we_wait_is_used() {
        // The test server, reached through a port that refuses connections
        // until a forwarder starts listening on it 700 ms in.
        let forwarder = std::sync::Arc::new(Forwarder::new().await);
        let opts = PgConnectOptions::from_str(&forwarder.url()).expect("forwarded URL");
        let later = forwarder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            later.restore().await;
        });
        let started = Instant::now();
        reach_pg(&opts, Duration::from_secs(20), true).await.expect("reached once the forwarder listens");
        assert!(started.elapsed() >= Duration::from_millis(700), "it waited for the server");
    }

    #[tokio::test]
    async fn a_refusal_that_is_not_a_startup_is_reported_at_once() {
        let opts = PgConnectOptions::from_str(&test_url()).expect("TEST_DATABASE_URL").username("no_such_role");
        let started = Instant::now();
        let err = reach_pg(&opts, Duration::from_secs(20), true).await.expect_err("no such role");
        assert!(err.to_string().contains("no_such_role"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "no wait: {:?}", started.elapsed());
    }
}
