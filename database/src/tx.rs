//! [`Tx`]: a transaction on whichever backend the handle is on, with actions to
//! run once it has committed.

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection};

use crate::db::{Conn, Dialect};
use crate::error::DbError;

enum Inner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A transaction: write your rows (and enqueue jobs) in it, and they commit or
/// roll back together. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: Inner,
    /// Run after a successful commit, in order (wake-ups of local waiters).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

impl Tx {
    pub(crate) fn sqlite_tx(t: sqlx::Transaction<'static, Sqlite>) -> Self {
        Self { inner: Inner::Sqlite(t), after_commit: Vec::new() }
    }

    pub(crate) fn pg_tx(t: sqlx::Transaction<'static, Postgres>) -> Self {
        Self { inner: Inner::Postgres(t), after_commit: Vec::new() }
    }

    /// The dialect of the transaction's connection.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The connection, as a query target.
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            Inner::Sqlite(t) => Conn::Sqlite(&mut *t),
            Inner::Postgres(t) => Conn::Pg(&mut *t),
        }
    }

    /// The SQLite connection, for dialect-specific code.
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.inner {
            Inner::Sqlite(t) => Some(&mut *t),
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL connection, for dialect-specific code.
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.inner {
            Inner::Postgres(t) => Some(&mut *t),
            Inner::Sqlite(_) => None,
        }
    }

    /// Runs `f` once this transaction has committed (never if it rolls back):
    /// for wake-ups of waiters in this process, which must not see a row before
    /// it is visible.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    /// Holds a lock on `(class, key)` until this transaction ends, so writers of
    /// the same key commit one after the other in the order they took it.
    /// PostgreSQL: `pg_advisory_xact_lock`. SQLite: nothing to do, its one writer
    /// already commits transactions in the order they started.
    ///
    /// # Errors
    /// The database failed.
    pub async fn lock(&mut self, class: i32, key: &str) -> Result<(), DbError> {
        if let Inner::Postgres(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(class)
                .bind(key)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// Commits, then runs the after-commit actions.
    ///
    /// # Errors
    /// The database refused the commit; nothing was written.
    pub async fn commit(self) -> Result<(), DbError> {
        match self.inner {
            Inner::Sqlite(t) => t.commit().await?,
            Inner::Postgres(t) => t.commit().await?,
        }
        for f in self.after_commit {
            f();
        }
        Ok(())
    }

    /// Rolls back: nothing written in it remains.
    ///
    /// # Errors
    /// The connection failed; the transaction is abandoned either way.
    pub async fn rollback(self) -> Result<(), DbError> {
        match self.inner {
            Inner::Sqlite(t) => t.rollback().await?,
            Inner::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}
