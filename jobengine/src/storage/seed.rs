//! Seeding many finished jobs fast, for the dashboard benchmark and for trying
//! the dashboard at scale: one `INSERT … SELECT` per chunk over a generated
//! series (PostgreSQL's `generate_series`, a recursive CTE on SQLite), so a
//! million jobs take seconds, not a million round trips. The triggers keep the
//! counters and throughput as for any insert; the search rows they queue are
//! written before the command ends.

use database::{Dialect as Backend, query};

use super::Store;
use crate::clock::Micros;
use crate::error::StorageError;

/// Rows per statement (and transaction): about half a second's work, under
/// sqlx's one-second slow-statement warning (which 50,000 crossed on every
/// chunk, flooding the command's output with the statement's text).
const CHUNK: i64 = 20_000;
/// The seeded jobs end over the day before `now`, one every `DAY / count`.
const DAY: Micros = 86_400_000_000;

/// The row for series value `g` (1-based) of `total`, ending at `$now`: per
/// 1,000 jobs 1 enqueued, 1 scheduled, 10 dead and 988 succeeded (as the issue's
/// install: mostly succeeded, some dead, a few waiting), over four kinds with
/// arguments naming one of 5,000 tenants.
const ROW: &str = "
    CASE g % 4 WHEN 0 THEN 'mail.welcome' WHEN 1 THEN 'tenant.provision' WHEN 2 THEN 'report.daily' ELSE 'diag.noop' END,
    'default',
    '{\"tenant\":\"t' || (g % 5000) || '\",\"seq\":' || g || '}',
    CASE WHEN g % 1000 = 0 THEN 'enqueued' WHEN g % 1000 = 1 THEN 'scheduled'
         WHEN g % 100 = 2 THEN 'dead' ELSE 'succeeded' END,
    CASE WHEN g % 1000 IN (0, 1) THEN 0 WHEN g % 100 = 2 THEN 3 ELSE 1 END,
    3,
    CASE WHEN g % 1000 = 1 THEN $1 + 3600000000 ELSE $1 - ($2 - g) * $3 END,
    $1 - ($2 - g) * $3 - 1000,
    $1 - ($2 - g) * $3,
    CASE WHEN g % 1000 IN (0, 1) THEN NULL ELSE $1 - ($2 - g) * $3 - 500 END,
    CASE WHEN g % 1000 IN (0, 1) THEN NULL ELSE $1 - ($2 - g) * $3 END,
    CASE WHEN g % 1000 NOT IN (0, 1) AND g % 100 = 2
         THEN 'smtp: connection to mx' || (g % 7) || '.example.net refused' END";

const COLUMNS: &str = "kind, queue, args, state, attempt, max_attempts, run_at, created_at, updated_at, \
                       attempted_at, finished_at, last_error";

impl Store {
    /// Inserts `count` jobs that ended (mostly) over the day before `now`, each
    /// with one history row, in chunks; `progress` hears the total after each.
    /// For benchmarks and demos, not for production data.
    ///
    /// # Errors
    /// A database failure (chunks already committed stay).
    pub async fn seed(&self, count: u64, now: Micros, mut progress: impl FnMut(u64)) -> Result<(), StorageError> {
        let total = i64::try_from(count).unwrap_or(i64::MAX);
        let step = (DAY / total.max(1)).max(1);
        let series = match self.db.dialect() {
            Backend::Postgres => "generate_series($4::bigint, $5::bigint) AS s (g)",
            Backend::Sqlite => {
                "(WITH RECURSIVE s (g) AS (SELECT $4 UNION ALL SELECT g + 1 FROM s WHERE g < $5) SELECT g FROM s)"
            }
        };
        let insert = format!("INSERT INTO jobs ({COLUMNS}) SELECT {ROW} FROM {series}");
        self.reserve_ids(total).await?;
        let mut from = 1;
        while from <= total {
            let to = (from + CHUNK - 1).min(total);
            let mut tx = self.db.begin().await?;
            let before: i64 = query("SELECT COALESCE(MAX(id), 0) FROM jobs").scalar(&mut tx).await?;
            query(insert.clone()).bind(now).bind(total).bind(step).bind(from).bind(to).execute(&mut tx).await?;
            query(
                "INSERT INTO job_history (job_id, state, at, attempt, reason)
                 SELECT id, state, updated_at, attempt, 'seeded' FROM jobs WHERE id > $1",
            )
            .bind(before)
            .execute(&mut tx)
            .await?;
            tx.commit().await?;
            progress(u64::try_from(to).unwrap_or(0));
            from = to + 1;
        }
        // Fresh statistics and visibility maps, as autovacuum would make a little
        // later: the planner's choices between the state index and the search
        // index depend on them, and a search checks states by index-only scans.
        if self.db.dialect() == Backend::Postgres {
            // The search rows the inserts queued, written now rather than by the
            // workers' passes over the next minutes; and the counters' and
            // throughput's deltas folded, as a running system's folds keep them
            // (about 86,000 throughput deltas after any large seed, one per
            // second each statement's jobs ended in, which the first worker's
            // fold would otherwise move in the middle of whatever runs next).
            self.index_search(u64::MAX).await?;
            self.fold_stats(now).await?;
            query(
                "VACUUM (ANALYZE) jobs, job_history, job_search, job_search_pending, job_search_pending_ranges,
                 job_counts, job_count_deltas, job_throughput, job_throughput_deltas",
            )
            .execute(self.db.write())
            .await?;
        }
        Ok(())
    }
}
