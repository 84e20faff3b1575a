//! When the next scheduled job falls due, so an idle worker sleeps until then
//! rather than a whole poll interval (scheduling precision in milliseconds, not
//! up to a poll late). Both backends; one index walk (`jobs_scheduled`).

use database::query;

use super::Store;
use crate::clock::Micros;
use crate::error::StorageError;

impl Store {
    /// The earliest due time after `now` of a scheduled job in any queue
    /// (`None` when there is none). Jobs already due are the claim's business;
    /// a due time in a queue this worker does not serve costs it one empty fetch.
    ///
    /// # Errors
    /// A database failure.
    pub async fn next_due(&self, now: Micros) -> Result<Option<Micros>, StorageError> {
        Ok(query("SELECT MIN(run_at) FROM jobs WHERE state = 'scheduled' AND run_at > $1")
            .bind(now)
            .scalar::<Option<i64>>(self.db().read())
            .await?)
    }
}
