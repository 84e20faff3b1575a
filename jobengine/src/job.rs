//! What a job type is: a serializable struct (its arguments) plus a handler.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::storage::Store;

/// A job type. The struct is the job's arguments, stored as JSON; `run` is its
/// handler.
///
/// ```ignore
/// #[derive(Serialize, Deserialize)]
/// struct SendReport { account: i64 }
///
/// impl Job for SendReport {
///     const KIND: &'static str = "reports.send";
///     type Context = AppEnv;
///     async fn run(self, ctx: JobContext<AppEnv>) -> Result<(), JobError> {
///         ctx.app.mailer.send(self.account).await.context("sending the report")?;
///         Ok(())
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name stored with each job. Never change it while jobs of the
    /// type may exist: workers look handlers up by it.
    const KIND: &'static str;
    /// The queue workers fetch it from.
    const QUEUE: &'static str = "default";
    /// Attempts before the job is dead; `None` takes the engine's default (10).
    const MAX_ATTEMPTS: Option<u32> = None;
    /// Within its queue, jobs with a higher priority are claimed first (default
    /// 0); one job can override it with [`crate::NewJob::with_priority`].
    const PRIORITY: i32 = 0;
    /// What the handler needs from the application (pools, clients, settings).
    type Context: Send + Sync + 'static;

    /// While a job with this key is enqueued, scheduled or processing, enqueueing
    /// another returns the live one instead of inserting.
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// Runs one attempt. `Err` schedules a retry (or dead-letters the job on its
    /// last attempt, or at once if [`JobError::permanent`]).
    fn run(self, ctx: JobContext<Self::Context>) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Why an attempt failed.
#[derive(Debug)]
pub struct JobError {
    /// The failure with its causes.
    pub error: anyhow::Error,
    /// True when retrying cannot help (bad arguments, a rejected request): the job
    /// goes straight to the dead-letter queue.
    pub permanent: bool,
}

impl JobError {
    /// A failure worth retrying.
    pub fn retry(error: impl Into<anyhow::Error>) -> Self {
        Self { error: error.into(), permanent: false }
    }

    /// A failure no retry can fix.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self { error: error.into(), permanent: true }
    }

    /// The message and its causes, outermost first.
    pub fn chain(&self) -> Vec<String> {
        self.error.chain().map(|e| e.to_string()).collect()
    }
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> Self {
        Self::retry(error)
    }
}

/// What a running attempt gets besides its arguments.
pub struct JobContext<C> {
    /// The application's context.
    pub app: Arc<C>,
    /// The job's id.
    pub job_id: i64,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The worker running it.
    pub worker_id: Arc<str>,
    /// Fired when the attempt should stop early: the grace period at shutdown ran
    /// out, or the lease was lost (the job was deleted or given to another worker).
    pub cancel: CancellationToken,
    pub(crate) lease_seq: i64,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl<C> JobContext<C> {
    /// Records the step the job has reached, shown on the dashboard. Returns false
    /// when this attempt no longer holds the job (its work will be discarded).
    ///
    /// # Errors
    /// The database could not be written.
    pub async fn progress(&self, step: &str) -> Result<bool, crate::StorageError> {
        self.store.set_progress(self.job_id, self.lease_seq, step, self.clock.now()).await
    }

    /// Whether this attempt was asked to stop: the job was deleted while it ran
    /// (see [`crate::cancel`]), the worker is shutting down past its grace
    /// period, or the lease was lost. Long handlers check it between steps.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when this attempt is asked to stop (see
    /// [`JobContext::is_cancelled`]); for `tokio::select!` around a long wait.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The batch this job completes (see [`Store::enqueue_batch_in`]), with its
    /// final counts; `None` when it is not a batch's completion job.
    ///
    /// # Errors
    /// The database could not be read.
    pub async fn batch(&self) -> Result<Option<crate::storage::BatchRow>, crate::StorageError> {
        self.store.batch_completed_by(self.job_id).await
    }

    /// The same attempt with another application context (used to run jobs that
    /// need none).
    pub(crate) fn with_app<D>(&self, app: Arc<D>) -> JobContext<D> {
        JobContext {
            app,
            job_id: self.job_id,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            worker_id: self.worker_id.clone(),
            cancel: self.cancel.clone(),
            lease_seq: self.lease_seq,
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}
