//! When the next scheduled job falls due, so an idle worker sleeps until then
//! rather than a whole poll interval (scheduling precision in milliseconds, not
//! up to a poll late), and whether a job is due now. Both backends; one step
//! of `jobs_due` or `jobs_scheduled_due` (migration 1080) per queue.

use database::query;

use super::Store;
use crate::clock::Micros;
use crate::error::StorageError;

impl Store {
    /// The earliest due time after `now` of a scheduled job in one of `queues`
    /// (`None` when there is none): one step of `jobs_scheduled_due` per queue.
    /// Jobs already due are the claim's business.
    ///
    /// # Errors
    /// A database failure.
    pub async fn next_due(&self, queues: &[String], now: Micros) -> Result<Option<Micros>, StorageError> {
        let mut next: Option<Micros> = None;
        for q in queues {
            let due: Option<i64> =
                query("SELECT MIN(run_at) FROM jobs WHERE queue = $1 AND state = 'scheduled' AND run_at > $2")
                    .bind(q)
                    .bind(now)
                    .scalar(self.db().read())
                    .await?;
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(next)
    }

    /// Whether one of `queues` holds a job due by `now`: the claim's walks,
    /// each stopping at the first job. The order is the indexes' own: without
    /// it PostgreSQL may walk `jobs_by_state` instead and test the queue of
    /// every ready job (143 ms a call beside 10,000 ready jobs of another queue
    /// at 10,000,000 jobs).
    ///
    /// # Errors
    /// A database failure.
    pub async fn has_due_jobs(&self, queues: &[String], now: Micros) -> Result<bool, StorageError> {
        for q in queues {
            let due: Option<i64> = query(
                "SELECT id FROM (SELECT id FROM jobs WHERE queue = $1 AND state = 'enqueued' AND run_at <= $2
                                 ORDER BY priority DESC, run_at, id LIMIT 1) AS ready
                 UNION ALL
                 SELECT id FROM (SELECT id FROM jobs WHERE queue = $1 AND state = 'scheduled' AND run_at <= $2
                                 ORDER BY run_at, id LIMIT 1) AS scheduled
                 LIMIT 1",
            )
            .bind(q)
            .bind(now)
            .scalar_optional(self.db().read())
            .await?;
            if due.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
