//! The partitions of `jobs` on PostgreSQL (migration 1100): `jobs` is
//! partitioned by ranges of `id`, so that new rows only ever land among the
//! newest partition's pages and not in the small gaps the free space map keeps
//! in millions of older ones (docs/ARCHITECTURE.md, "New rows apart from old
//! pages").
//!
//! A partition must exist before an id can be inserted, and enqueueing must not
//! depend on a worker running, so every process that inserts keeps partitions
//! ahead: [`Partitions`] remembers the first id of the last partition, and an
//! insert that hands out that id or a later one starts a top-up in the
//! background (one at a time per process; the SQL function takes an advisory
//! lock, so processes do not race). A partition holds
//! `job_partitioning.width` ids (10,000,000 by default), and one whole
//! partition's worth is always ahead of the next id, so a top-up has that many
//! inserts' time to succeed. An insert that still finds no partition (every
//! top-up failing for that long) tops up at once and is retried once when it
//! has no transaction of its own to lose; otherwise the caller's transaction
//! fails with the database's error.
//!
//! The retention sweep also tops up, and drops partitions it emptied that no
//! new id can reach ([`Store::tidy_partitions`]). Attaching and detaching
//! take locks that wait for open transactions on `jobs` and on the tables that
//! reference it, so both run with a short `lock_timeout` and are simply tried
//! again later.
//!
//! SQLite has no partitions (it never showed the loss: its free pages are
//! whole pages) and none of this runs there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use database::Db;
use sqlx::PgPool;

use super::Store;
use crate::error::StorageError;

/// How long adding a partition waits for its locks before giving up (and
/// being tried again by the next insert past the mark or the next sweep).
const ADD_LOCK_TIMEOUT: &str = "2s";
/// How long detaching an emptied partition waits: it wants an ACCESS
/// EXCLUSIVE lock on `jobs`, and every claim and completion queues behind a
/// waiting one, so it gives up quickly.
const DROP_LOCK_TIMEOUT: &str = "200ms";

/// This process's knowledge of the partitions ahead.
pub(crate) struct Partitions {
    /// The first id of the last partition, as last seen; ids from here on start
    /// a top-up. `i64::MIN` until the first one.
    refill_from: AtomicI64,
    /// A top-up is running in this process.
    busy: AtomicBool,
}

impl Partitions {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { refill_from: AtomicI64::new(i64::MIN), busy: AtomicBool::new(false) })
    }

    /// Adds partitions so that the next id and the `extra` after it, and a
    /// whole partition beyond, are covered; remembers where to top up next.
    ///
    /// # Errors
    /// A database failure, or the locks not granted within [`ADD_LOCK_TIMEOUT`].
    pub(crate) async fn top_up(&self, pool: &PgPool, extra: i64) -> Result<(), StorageError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)").bind(ADD_LOCK_TIMEOUT).execute(&mut *tx).await?;
        let from: i64 = sqlx::query_scalar("SELECT jobs_add_partitions(jobs_next_id() + $1)")
            .bind(extra)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.refill_from.store(from, Ordering::Relaxed);
        Ok(())
    }

    /// Called with the highest id an insert handed out: past the mark, tops up
    /// in the background (once at a time).
    pub(crate) fn saw(self: &Arc<Self>, pool: &PgPool, max_id: i64) {
        if max_id < self.refill_from.load(Ordering::Relaxed) || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = me.top_up(&pool, 0).await {
                tracing::warn!(error = %e, "adding partitions of jobs failed; the next insert past the mark tries again");
            }
            me.busy.store(false, Ordering::Release);
        });
    }
}

/// Whether an insert may have failed for want of a partition for its ids:
/// PostgreSQL's "no partition of relation found for row" is a check violation
/// (23514), told from a failed `CHECK` only by its message, which the server
/// may translate. Either way adding partitions and trying once more is
/// harmless: a failed `CHECK` fails again.
pub(crate) fn no_partition(e: &StorageError) -> bool {
    sqlstate_is(e, "23514")
}

impl Store {
    /// PostgreSQL: adds the partitions ahead that are missing and drops those
    /// that retention emptied and no new id can reach; returns how many were
    /// dropped. SQLite: nothing. Run by the retention sweep.
    ///
    /// # Errors
    /// A database failure. Locks not granted in time are not failures: the
    /// work is left to the next call.
    pub async fn tidy_partitions(&self) -> Result<u32, StorageError> {
        let Some(pool) = self.db.postgres() else { return Ok(0) };
        if let Err(e) = self.partitions.top_up(pool, 0).await {
            if !lock_timeout(&e) {
                return Err(e);
            }
            tracing::info!("adding partitions of jobs waited too long for its locks; the next sweep tries again");
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)").bind(DROP_LOCK_TIMEOUT).execute(&mut *tx).await?;
        match sqlx::query_scalar::<_, i32>("SELECT jobs_drop_emptied()").fetch_one(&mut *tx).await {
            Ok(n) => {
                tx.commit().await?;
                if n > 0 {
                    tracing::info!(dropped = n, "dropped emptied partitions of jobs");
                }
                Ok(u32::try_from(n).unwrap_or(0))
            }
            Err(e) => {
                let e = StorageError::from(e);
                if !lock_timeout(&e) {
                    return Err(e);
                }
                tracing::info!(
                    "dropping emptied partitions of jobs waited too long for its lock; the next sweep tries again"
                );
                Ok(0)
            }
        }
    }

    /// PostgreSQL: makes sure the next `count` ids have partitions (a seed or
    /// a move about to insert that many). SQLite: nothing.
    ///
    /// # Errors
    /// A database failure.
    pub async fn reserve_ids(&self, count: i64) -> Result<(), StorageError> {
        match self.db.postgres() {
            Some(pool) => self.partitions.top_up(pool, count).await,
            None => Ok(()),
        }
    }
}

/// As [`Store::reserve_ids`], on a database no store is open on (the target
/// of a move), without a store's listeners and migrations.
///
/// # Errors
/// A database failure.
pub async fn reserve_ids(db: &Db, count: i64) -> Result<(), StorageError> {
    match db.postgres() {
        Some(pool) => Partitions::new().top_up(pool, count).await,
        None => Ok(()),
    }
}

/// PostgreSQL's "canceling statement due to lock timeout".
fn lock_timeout(e: &StorageError) -> bool {
    sqlstate_is(e, "55P03")
}

fn sqlstate_is(e: &StorageError, code: &str) -> bool {
    matches!(e, StorageError::Database(d) if d.sqlstate().as_deref() == Some(code))
}
