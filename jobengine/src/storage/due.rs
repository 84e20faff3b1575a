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

    /// Whether one of `queues` holds a job due by `now`: the claim's walks
    /// ([`due_walks`]), each stopping at the first job. Walked in the indexes'
    /// order: without it PostgreSQL may walk `jobs_by_state` instead and test the
    /// queue of every ready job (143 ms a call beside 10,000 ready jobs of
    /// another queue at 10,000,000 jobs).
    ///
    /// # Errors
    /// A database failure.
    pub async fn has_due_jobs(&self, queues: &[String], now: Micros) -> Result<bool, StorageError> {
        let [ready, scheduled] = due_walks("$1", "$2", "1");
        let sql =
            format!("SELECT id FROM ({ready}) AS ready UNION ALL SELECT id FROM ({scheduled}) AS scheduled LIMIT 1");
        for q in queues {
            let due: Option<i64> = query(sql.clone()).bind(q).bind(now).scalar_optional(self.db().read()).await?;
            if due.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The two walks that find a queue's due jobs (migration 1080), in the claim's
/// order: ready jobs through `jobs_due` (priority first), and scheduled jobs
/// that fell due through `jobs_scheduled_due` (oldest first), each stopping
/// after `limit` rows of `(id, priority, run_at)`. The arguments are SQL
/// expressions (parameters or columns), so both backends' claims and
/// [`Store::has_due_jobs`] share one definition of "due".
pub(crate) fn due_walks(queue: &str, now: &str, limit: &str) -> [String; 2] {
    [
        format!(
            "SELECT id, priority, run_at FROM jobs
             WHERE queue = {queue} AND state = 'enqueued' AND run_at <= {now}
             ORDER BY priority DESC, run_at, id LIMIT {limit}"
        ),
        format!(
            "SELECT id, priority, run_at FROM jobs
             WHERE queue = {queue} AND state = 'scheduled' AND run_at <= {now}
             ORDER BY run_at, id LIMIT {limit}"
        ),
    ]
}
