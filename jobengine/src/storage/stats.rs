//! The dashboard's figures without scanning `jobs`: counts per state and jobs
//! finished per second and per minute, kept by triggers on `jobs` (migration
//! 1040) in the transaction of every change, whoever makes it.
//!
//! On PostgreSQL the triggers append per-statement deltas instead of updating
//! one hot row per state (thousands of completions a second would queue on its
//! lock); reads add the folded totals and the deltas not folded yet, and
//! [`Store::fold_stats`] moves the deltas into the totals, one folder at a time.
//! On SQLite (one writer) the triggers update the totals directly and the delta
//! tables stay empty, so the reads below are the same SQL on both.

use std::time::Duration;

use database::{Dialect as Backend, query};

use super::{StateCounts, Store};
use crate::clock::{Micros, micros};
use crate::error::StorageError;
use crate::state::JobState;

/// Per-second throughput rows are kept this long (the realtime chart shows
/// minutes); longer windows read the per-minute rows.
pub const SECOND_BUCKETS_KEPT: Duration = Duration::from_secs(25 * 3600);

/// One second and one minute, the widths of the stored buckets.
const SECOND: Micros = 1_000_000;
const MINUTE: Micros = 60 * SECOND;

/// How often each process folds at least (PostgreSQL), dashboards or not.
const FOLD_EVERY: Micros = SECOND;

/// The advisory lock that lets one folder at a time move the deltas (any
/// constant unique to this purpose).
const FOLD_LOCK: i64 = 0x6a6f_6273_7374_6174; // "jobsstat"

impl Store {
    /// Jobs per state, from the counters (no scan of `jobs`).
    ///
    /// # Errors
    /// A database failure, or a state this version does not know.
    pub async fn counts(&self) -> Result<StateCounts, StorageError> {
        self.fold_stats_quietly().await;
        let rows: Vec<(String, i64)> = query(
            "SELECT state, CAST(SUM(n) AS BIGINT) FROM
               (SELECT state, n FROM job_counts UNION ALL SELECT state, n FROM job_count_deltas) c
             GROUP BY state",
        )
        .fetch_all(self.db.read())
        .await?;
        let mut c = StateCounts::default();
        for (s, n) in rows {
            if n == 0 {
                // A state every job has left (perhaps one an older version used).
                continue;
            }
            c.add(JobState::try_from(s).map_err(|e| StorageError::Corrupt(e.to_string()))?, n.max(0) as u64);
        }
        Ok(c)
    }

    /// Jobs finished per `bucket` (succeeded, dead) since `since`, by bucket start,
    /// oldest first; buckets with nothing finished are left out. Reads the stored
    /// per-minute rows when `bucket` is whole minutes (a day is at most 1,440
    /// rows), else the per-second rows (kept [`SECOND_BUCKETS_KEPT`]).
    ///
    /// # Errors
    /// A database failure.
    pub async fn throughput(&self, since: Micros, bucket: Micros) -> Result<Vec<(Micros, u64, u64)>, StorageError> {
        self.fold_stats_quietly().await;
        let bucket = bucket.max(1);
        let width = if bucket % MINUTE == 0 { MINUTE } else { SECOND };
        let rows: Vec<(i64, i64, i64)> = query(
            "SELECT at / $1 * $1 AS b, CAST(SUM(succeeded) AS BIGINT), CAST(SUM(dead) AS BIGINT) FROM
               (SELECT at, succeeded, dead FROM job_throughput WHERE width = $2 AND at >= $3
                UNION ALL
                SELECT at, succeeded, dead FROM job_throughput_deltas WHERE at >= $3) t
             GROUP BY 1 ORDER BY 1",
        )
        .bind(bucket)
        .bind(width)
        .bind(since - since.rem_euclid(width))
        .fetch_all(self.db.read())
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(at, ok, dead)| *at >= since - since.rem_euclid(bucket) && (*ok > 0 || *dead > 0))
            .map(|(at, ok, dead)| (at, ok.max(0) as u64, dead.max(0) as u64))
            .collect())
    }

    /// Moves the pending deltas into the totals (PostgreSQL) and drops
    /// per-second rows older than [`SECOND_BUCKETS_KEPT`] before `now`; returns
    /// whether it ran (false: another process is folding right now).
    ///
    /// # Errors
    /// A database failure (nothing is moved then).
    pub async fn fold_stats(&self, now: Micros) -> Result<bool, StorageError> {
        self.fold(Some(now - micros(SECOND_BUCKETS_KEPT))).await
    }

    /// Folds the deltas and, with `prune_before`, drops older per-second rows.
    async fn fold(&self, prune_before: Option<Micros>) -> Result<bool, StorageError> {
        let postgres = self.db.dialect() == Backend::Postgres;
        // Under READ COMMITTED each statement moves only the deltas it deletes,
        // so deltas appended meanwhile wait for the next fold, never counted twice;
        // the lock keeps two folders from waiting on each other's rows. A fold
        // lost in a crash loses its deletes with its inserts: the deltas stay.
        let mut tx = if postgres {
            let Some(tx) = self.begin_derived_work(FOLD_LOCK).await? else { return Ok(false) };
            tx
        } else {
            self.db.begin().await?
        };
        if postgres {
            query(
                "WITH moved AS (DELETE FROM job_count_deltas RETURNING state, n)
                 INSERT INTO job_counts (state, n)
                 SELECT state, SUM(n) FROM moved GROUP BY state ORDER BY state
                 ON CONFLICT (state) DO UPDATE SET n = job_counts.n + excluded.n",
            )
            .execute(&mut tx)
            .await?;
            query(
                "WITH moved AS (DELETE FROM job_throughput_deltas RETURNING at, succeeded, dead)
                 INSERT INTO job_throughput (width, at, succeeded, dead)
                 SELECT w.width, m.at / w.width * w.width, SUM(m.succeeded), SUM(m.dead)
                 FROM moved m CROSS JOIN (VALUES ($1::bigint), ($2::bigint)) w (width)
                 GROUP BY 1, 2 ORDER BY 1, 2
                 ON CONFLICT (width, at) DO UPDATE
                   SET succeeded = job_throughput.succeeded + excluded.succeeded,
                       dead = job_throughput.dead + excluded.dead",
            )
            .bind(SECOND)
            .bind(MINUTE)
            .execute(&mut tx)
            .await?;
        }
        if let Some(before) = prune_before {
            query("DELETE FROM job_throughput WHERE width = $1 AND at < $2")
                .bind(SECOND)
                .bind(before)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Folds (PostgreSQL) if this process has not for [`FOLD_EVERY`]; called
    /// from the workers' rescue pass, so deltas stay few without a dashboard.
    pub(crate) async fn fold_stats_now_and_then(&self, now: Micros) {
        use std::sync::atomic::Ordering;
        let last = self.last_fold.load(Ordering::Relaxed);
        if self.db.dialect() != Backend::Postgres || now.saturating_sub(last) < FOLD_EVERY {
            return;
        }
        self.last_fold.store(now, Ordering::Relaxed);
        self.fold_stats_quietly().await;
    }

    /// Before a read on PostgreSQL, folds what accumulated since the last read,
    /// so the deltas a read sums stay few; a failure only costs the read more rows.
    async fn fold_stats_quietly(&self) {
        if self.db.dialect() != Backend::Postgres {
            return;
        }
        if let Err(e) = self.fold(None).await {
            retry_warn!(e, "folding the dashboard's counters failed; reading the deltas as they are");
        }
    }
}
