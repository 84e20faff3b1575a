//! Retention's deletes (see [`crate::retention`]), both backends.

use database::query;

use super::Store;
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

impl Store {
    /// Removes jobs in `state` (succeeded, dead or deleted) that ended strictly
    /// before `before`, with their history, `batch` rows per statement; returns
    /// how many. Live states are refused.
    ///
    /// # Errors
    /// A database failure (what earlier batches removed stays removed).
    pub async fn remove_ended(&self, state: JobState, before: Micros, batch: u32) -> Result<u64, StorageError> {
        if !state.is_final() {
            return Err(StorageError::Corrupt(format!("retention never removes {state} jobs")));
        }
        let mut total = 0;
        loop {
            // The outer conditions repeat the inner ones: on PostgreSQL a row
            // requeued between the subquery's snapshot and the delete is re-checked
            // and kept.
            let n = query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = $1 AND updated_at < $2
                                               ORDER BY updated_at LIMIT $3)
                   AND state = $1 AND updated_at < $2",
            )
            .bind(state.as_str())
            .bind(before)
            .bind(batch.max(1))
            .execute(self.db.write())
            .await?;
            total += n;
            if n < u64::from(batch.max(1)) {
                return Ok(total);
            }
            // Let other writers in between batches.
            tokio::task::yield_now().await;
        }
    }
}
