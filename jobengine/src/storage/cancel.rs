//! How deletions of running jobs reach workers (see [`crate::cancel`]).

use database::listen::ListenEvent;
use database::{Db, query};
use tokio::sync::broadcast;

use super::Store;
use crate::error::StorageError;

/// The channel the `jobs_cancel` trigger notifies (PostgreSQL), payload the id.
pub(crate) const CHANNEL: &str = "jobs_cancel";

/// Sent instead of an id when a PostgreSQL listener (re)connected: deletions
/// during the gap were not heard, so workers check what they run.
pub(crate) const RECHECK: i64 = -1;

/// The sender every deletion of a running job is announced on; on PostgreSQL
/// also fed by a listener on [`CHANNEL`], so deletions made by other processes
/// arrive too.
pub(super) fn listen(db: &Db) -> broadcast::Sender<i64> {
    let (tx, _) = broadcast::channel(1024);
    let sender = tx.clone();
    if let Some(listen) = db.listen(&[CHANNEL], "cancel listener", move |ev| {
        let id = match ev {
            ListenEvent::Connected => Some(RECHECK),
            ListenEvent::Message { payload, .. } => payload.parse().ok(),
        };
        if let Some(id) = id {
            let _ = sender.send(id);
        }
    }) {
        tokio::spawn(listen);
    }
    tx
}

impl Store {
    /// Deletions of running jobs, as ids (or [`RECHECK`]).
    pub(crate) fn cancellations(&self) -> broadcast::Receiver<i64> {
        self.cancels.subscribe()
    }

    /// Which of `ids` are deleted now.
    ///
    /// # Errors
    /// A database failure.
    pub(crate) async fn deleted_among(&self, ids: &[i64]) -> Result<Vec<i64>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A placeholder per id (a worker runs a few dozen at most): the one form
        // both backends accept without arrays or JSON.
        let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let mut q = query(format!("SELECT id FROM jobs WHERE id IN ({list}) AND state = 'deleted'"));
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.scalars(self.db.read()).await?)
    }
}
