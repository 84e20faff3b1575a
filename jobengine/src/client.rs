//! [`Jobs`]: the handle applications hold to enqueue jobs and to administer them.

use std::sync::Arc;

use database::{Db, Tx};

use crate::clock::{Clock, Micros, SystemClock};
use crate::error::StorageError;
use crate::job::Job;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::storage::{
    AdminOp, BatchEnqueued, BatchRow, ContinueOn, Enqueued, HistoryRow, JobRow, ListQuery, NewJob, StateCounts, Store,
    Wait, WorkerRow,
};

/// Attempts a job gets unless its type says otherwise (Hangfire's default too).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// A job with its history, for the dashboard.
#[derive(Debug, Clone)]
pub struct JobDetail {
    /// The job.
    pub job: JobRow,
    /// Its transitions, oldest first.
    pub history: Vec<HistoryRow>,
}

/// Enqueues and administers jobs. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    default_max_attempts: u32,
}

impl Jobs {
    /// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`),
    /// runs the engine's migrations, and uses the wall clock.
    ///
    /// # Errors
    /// The URL is unsupported, or the database cannot be reached or migrated.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::open(Db::connect(url).await?, Arc::new(SystemClock)).await
    }

    /// The engine on an open database with the given clock: runs the engine's
    /// migrations.
    ///
    /// # Errors
    /// A migration failed.
    pub async fn open(db: Db, clock: Arc<dyn Clock>) -> Result<Self, StorageError> {
        Ok(Self::new(Store::open(db).await?, clock))
    }

    /// A handle on an open store with the given clock.
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, metrics: Arc::new(Metrics::default()), default_max_attempts: DEFAULT_MAX_ATTEMPTS }
    }

    /// Sets the attempts for job types that do not set their own.
    pub fn with_default_max_attempts(mut self, n: u32) -> Self {
        self.default_max_attempts = n.max(1);
        self
    }

    /// The attempts of job types that do not set their own.
    pub fn default_max_attempts(&self) -> u32 {
        self.default_max_attempts
    }

    /// The storage.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The database the jobs live in, for the application's own tables (write
    /// them in [`Jobs::begin`]'s transaction to enqueue atomically with them).
    pub fn db(&self) -> &Db {
        self.store.db()
    }

    /// Makes the end hooks of `registry`'s job types run, with `app`, on every
    /// transition that ends a job through this handle or a worker built from it
    /// (see [`crate::hooks`]). Only the first call counts; call it at start-up,
    /// before any job can end.
    pub fn install_end_hooks<C: Send + Sync + 'static>(&self, registry: &Registry<C>, app: Arc<C>) {
        self.store.install_hooks(registry.bind_hooks(app));
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This process's metrics (workers built from this handle record into it).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The row that enqueueing `job` inserts.
    ///
    /// # Errors
    /// The job's arguments do not serialize to JSON.
    pub fn new_job<J: Job>(&self, job: &J, run_at: Option<Micros>) -> Result<NewJob, StorageError> {
        Ok(NewJob {
            kind: J::KIND.to_owned(),
            args: serde_json::to_value(job)?,
            queue: J::QUEUE.to_owned(),
            max_attempts: J::MAX_ATTEMPTS.unwrap_or(self.default_max_attempts).max(1),
            unique_key: job.unique_key(),
            run_at,
            priority: J::PRIORITY,
        })
    }

    /// Starts a transaction for your own writes plus [`Jobs::enqueue_in`].
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin(&self) -> Result<Tx, StorageError> {
        self.store.begin().await
    }

    /// Enqueues `job` in the caller's transaction: it exists only if that commits.
    ///
    /// # Errors
    /// The database failed or the arguments do not serialize.
    pub async fn enqueue_in<J: Job>(&self, tx: &mut Tx, job: &J) -> Result<Enqueued, StorageError> {
        let new = self.new_job(job, None)?;
        self.store.enqueue_in(tx, &new, self.clock.now()).await
    }

    /// Enqueues `job` to run now, in a transaction of its own.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_in`].
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<Enqueued, StorageError> {
        self.enqueue_at(job, None).await
    }

    /// Enqueues `job` to run at `run_at` (or now when `None`).
    ///
    /// # Errors
    /// As [`Jobs::enqueue_in`].
    pub async fn enqueue_at<J: Job>(&self, job: &J, run_at: Option<Micros>) -> Result<Enqueued, StorageError> {
        let new = self.new_job(job, run_at)?;
        self.enqueue_many(std::slice::from_ref(&new)).await.map(|v| v[0])
    }

    /// Enqueues many prepared jobs in one transaction, inserted in one statement
    /// per batch (see [`Store::enqueue_many`]); per job, in order, its id or
    /// the live job that held its unique key.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_in`]; then none is enqueued.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StorageError> {
        self.store.enqueue_many(jobs, self.clock.now()).await
    }

    /// Enqueues `job` in the caller's transaction as a continuation of `parent`:
    /// it waits until the parent ends, then runs if `on` allows, or is deleted
    /// with the reason (see [`crate::storage::ContinueOn`]).
    ///
    /// # Errors
    /// [`StorageError::NotFound`] for a parent that does not exist; as
    /// [`Jobs::enqueue_in`].
    pub async fn enqueue_after_in<J: Job>(
        &self,
        tx: &mut Tx,
        parent: i64,
        on: ContinueOn,
        job: &J,
    ) -> Result<Enqueued, StorageError> {
        let new = self.new_job(job, None)?;
        self.store.enqueue_after_in(tx, parent, on, &new, self.clock.now()).await
    }

    /// As [`Jobs::enqueue_after_in`], in a transaction of its own.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_after_in`].
    pub async fn enqueue_after<J: Job>(&self, parent: i64, on: ContinueOn, job: &J) -> Result<Enqueued, StorageError> {
        let mut tx = self.store.begin().await?;
        let e = self.enqueue_after_in(&mut tx, parent, on, job).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Enqueues prepared `jobs` as one batch in the caller's transaction, with an
    /// optional completion job run once when all have ended (see
    /// [`Store::enqueue_batch_in`]).
    ///
    /// # Errors
    /// As [`Jobs::enqueue_in`].
    pub async fn enqueue_batch_in(
        &self,
        tx: &mut Tx,
        label: &str,
        jobs: &[NewJob],
        completion: Option<&NewJob>,
    ) -> Result<BatchEnqueued, StorageError> {
        self.store.enqueue_batch_in(tx, label, jobs, completion, self.clock.now()).await
    }

    /// One batch's progress.
    ///
    /// # Errors
    /// [`StorageError::BatchNotFound`] or a database failure.
    pub async fn batch(&self, id: i64) -> Result<BatchRow, StorageError> {
        self.store.batch(id).await?.ok_or(StorageError::BatchNotFound(id))
    }

    /// Batches, newest first, below `before_id`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn batches(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<BatchRow>, StorageError> {
        self.store.batches(before_id, limit).await
    }

    /// What job `id` waits for, and what waits for it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn links(&self, id: i64) -> Result<(Option<Wait>, Vec<Wait>), StorageError> {
        Ok((self.store.waits_for(id).await?, self.store.waited_on_by(id).await?))
    }

    /// Jobs per state.
    ///
    /// # Errors
    /// The database failed.
    pub async fn counts(&self) -> Result<StateCounts, StorageError> {
        self.metrics.count_counts_query();
        self.store.counts().await
    }

    /// A page of jobs in one state, newest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError> {
        self.store.list(q).await
    }

    /// One job with its history.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] or a database failure.
    pub async fn get(&self, id: i64) -> Result<JobDetail, StorageError> {
        let (job, history) = self.store.get(id).await?.ok_or(StorageError::NotFound(id))?;
        Ok(JobDetail { job, history })
    }

    /// Puts a succeeded, dead or deleted job back in the queue with fresh attempts.
    ///
    /// # Errors
    /// Not found, in another state, its unique key taken by a live job, or a
    /// database failure.
    pub async fn requeue(&self, id: i64, actor: &str) -> Result<JobRow, StorageError> {
        self.admin(id, AdminOp::Requeue, actor).await
    }

    /// Moves a job to deleted. A running attempt's result is then refused.
    ///
    /// # Errors
    /// As [`Jobs::requeue`].
    pub async fn delete(&self, id: i64, actor: &str) -> Result<JobRow, StorageError> {
        self.admin(id, AdminOp::Delete, actor).await
    }

    /// Runs an enqueued or scheduled job now.
    ///
    /// # Errors
    /// As [`Jobs::requeue`].
    pub async fn trigger(&self, id: i64, actor: &str) -> Result<JobRow, StorageError> {
        self.admin(id, AdminOp::Trigger, actor).await
    }

    async fn admin(&self, id: i64, op: AdminOp, actor: &str) -> Result<JobRow, StorageError> {
        let past = match op {
            AdminOp::Requeue => "requeued",
            AdminOp::Delete => "deleted",
            AdminOp::Trigger => "triggered",
        };
        self.store.admin(id, op, &format!("{past} by {actor}"), self.clock.now()).await
    }

    /// Workers that sent a heartbeat within `window` microseconds.
    ///
    /// # Errors
    /// The database failed.
    pub async fn workers(&self, window: Micros) -> Result<Vec<WorkerRow>, StorageError> {
        self.store.workers(self.clock.now() - window).await
    }

    /// Jobs finished per `bucket` (succeeded, dead) since `since`, by bucket
    /// start, oldest first; buckets with nothing finished are left out.
    ///
    /// # Errors
    /// The database failed.
    pub async fn throughput(&self, since: Micros, bucket: Micros) -> Result<Vec<(Micros, u64, u64)>, StorageError> {
        self.store.throughput(since, bucket).await
    }
}
