//! Fresh databases for tests, on both backends (feature `testing`).
//!
//! SQLite: a new file in a temporary folder. PostgreSQL: a new database on the
//! server named by `TEST_DATABASE_URL` (`cargo xtask test` starts a throw-away
//! cluster and sets it). A PostgreSQL test without that variable fails loudly: it
//! is never skipped in silence.

use crate::db::Db;

/// Which backend a shared test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// A temporary SQLite file.
    Sqlite,
    /// A new database on the test PostgreSQL server.
    Postgres,
}

/// A database that lives as long as the value.
pub struct TestDb {
    /// Its `DATABASE_URL`.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty database on `which`.
    ///
    /// # Panics
    /// When it cannot be made (no `TEST_DATABASE_URL` for PostgreSQL, server down).
    pub async fn new(which: Which) -> Self {
        match which {
            Which::Sqlite => Self::sqlite(),
            Which::Postgres => Self::postgres().await,
        }
    }

    /// A new SQLite file.
    ///
    /// # Panics
    /// When no temporary folder can be made.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self { url, _dir: Some(dir) }
    }

    /// A new database on the test PostgreSQL server.
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` is unset or the server refuses.
    pub async fn postgres() -> Self {
        let admin = std::env::var("TEST_DATABASE_URL").expect(
            "TEST_DATABASE_URL is not set: PostgreSQL tests need a server. Run `cargo xtask test`, which starts one, \
             or set TEST_DATABASE_URL=postgres://user@host:port/postgres",
        );
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&admin).await.expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&pool).await.expect("create test database");
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Self { url: format!("{base}/{name}"), _dir: None }
    }

    /// A handle on it.
    ///
    /// # Panics
    /// When it cannot be opened.
    pub async fn db(&self) -> Db {
        Db::connect(&self.url).await.expect("open test database")
    }
}
