//! One counts query per server per tick, shared by every open `WatchCounts`
//! stream: a task started by the first subscriber reads the counts every
//! [`TICK`] into a `tokio::sync::watch` channel, and each stream reads the
//! latest value from it. A hundred open dashboards cost what one does; the task
//! ends after a tick with no subscriber left, and the next subscriber starts a
//! new one.

use std::sync::Mutex;
use std::time::Duration;

use jobengine::{Jobs, StateCounts};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::grpc::status::storage_status;

/// How often the shared task reads the counts.
pub const TICK: Duration = Duration::from_millis(500);

/// The latest read: the counts and when (engine clock, µs), or why it failed.
pub type Reading = Option<Result<(StateCounts, i64), Status>>;

/// The shared reader.
pub struct CountsFeed {
    jobs: Jobs,
    shutdown: CancellationToken,
    current: Mutex<Option<watch::Receiver<Reading>>>,
}

impl CountsFeed {
    /// A feed of `jobs`' counts; its task stops at `shutdown`.
    pub fn new(jobs: Jobs, shutdown: CancellationToken) -> Self {
        Self { jobs, shutdown, current: Mutex::new(None) }
    }

    /// A receiver of the readings, starting the task if none runs. When the
    /// returned receiver reports the sender gone, subscribe again.
    pub fn subscribe(&self) -> watch::Receiver<Reading> {
        // A panic while holding the lock leaves a plain Option behind: keep going.
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rx) = current.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        let jobs = self.jobs.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let reading = jobs.counts().await.map(|c| (c, jobs.clock().now())).map_err(storage_status);
                tx.send_replace(Some(reading));
                tokio::select! {
                    () = tokio::time::sleep(TICK) => {}
                    () = shutdown.cancelled() => return,
                }
                // Only the feed's own copy is left: nobody is watching.
                if tx.receiver_count() <= 1 {
                    return;
                }
            }
        });
        *current = Some(rx.clone());
        rx
    }
}
