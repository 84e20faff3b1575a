//! Where jobs live: one [`Storage`] trait, one implementation per database.
//!
//! Like Hangfire's `JobStorage` and River's driver interface, the engine above this
//! line is database-agnostic and each backend owns its SQL: PostgreSQL claims with
//! `FOR UPDATE SKIP LOCKED` and wakes workers with `LISTEN/NOTIFY`; SQLite has a
//! single writer, so every write transaction starts with `BEGIN IMMEDIATE` (taking
//! the write lock up front instead of failing to upgrade a read lock) and in-process
//! writes queue on one connection rather than on the file lock. sqlx's `Any` driver
//! was rejected: it cannot express either dialect's locking.
//!
//! Storage is deliberately dumb: it applies the transitions it is told to, fenced
//! on `lease_seq`, and never decides policy (retry timing, attempts) itself.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Notify;

pub use self::postgres::PgStorage;
pub use self::sqlite::SqliteStorage;
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job type's stable name.
    pub kind: String,
    /// The job's arguments, serialized as JSON.
    pub args: serde_json::Value,
    /// The queue workers fetch it from.
    pub queue: String,
    /// Attempts before it is dead-lettered.
    pub max_attempts: u32,
    /// At most one live job (enqueued, scheduled or processing) holds a given key.
    pub unique_key: Option<String>,
    /// When it becomes due; `None` means now.
    pub run_at: Option<Micros>,
}

/// The result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The job's id: the new one, or the live job that already held the unique key.
    pub id: i64,
    /// True when no job was inserted because a live job held the unique key.
    pub existing: bool,
}

/// A job row as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct JobRow {
    /// Primary key.
    pub id: i64,
    /// The job type's stable name.
    pub kind: String,
    /// The queue it is fetched from.
    pub queue: String,
    /// Arguments as JSON text.
    pub args: String,
    /// Current state.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// Attempts started so far (1 while the first attempt runs).
    pub attempt: i32,
    /// Attempts allowed before the job is dead.
    pub max_attempts: i32,
    /// Incremented on every claim; completions and lease renewals must quote the
    /// value they claimed with, so a stale worker's late write matches no row.
    pub lease_seq: i64,
    /// When an enqueued or scheduled job is due.
    pub run_at: Micros,
    /// When the job was first enqueued.
    pub created_at: Micros,
    /// Last change of any kind.
    pub updated_at: Micros,
    /// When the current or last attempt started.
    pub attempted_at: Option<Micros>,
    /// When it reached succeeded or dead.
    pub finished_at: Option<Micros>,
    /// While processing: the time after which the rescuer may take it back.
    pub lease_expires_at: Option<Micros>,
    /// The worker running it (or that ran the last attempt).
    pub worker_id: Option<String>,
    /// Unique key, if any.
    pub unique_key: Option<String>,
    /// The outermost message of the last failure.
    pub last_error: Option<String>,
    /// The step the running job last reported.
    pub progress: Option<String>,
}

/// One transition in a job's history.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct HistoryRow {
    /// Primary key (orders the history).
    pub id: i64,
    /// The job.
    pub job_id: i64,
    /// The state entered.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// When.
    pub at: Micros,
    /// The job's attempt counter at the time.
    pub attempt: i32,
    /// The worker that caused it, if one did.
    pub worker_id: Option<String>,
    /// Why, in words ("requeued by admin", "attempt 2 interrupted: ...").
    pub reason: Option<String>,
    /// For failures: a JSON array of messages, outermost first.
    pub error_chain: Option<String>,
}

impl HistoryRow {
    /// The error chain decoded (empty when none or unreadable).
    pub fn errors(&self) -> Vec<String> {
        self.error_chain.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
    }
}

/// A registered worker process.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct WorkerRow {
    /// `hostname:pid:random`, unique per process start.
    pub id: String,
    /// Host it runs on.
    pub hostname: String,
    /// Its process id.
    pub pid: i64,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// Queues it fetches from, comma-separated.
    pub queues: String,
    /// When it started.
    pub started_at: Micros,
    /// Its last heartbeat.
    pub last_heartbeat: Micros,
    /// Jobs it was running at its last heartbeat.
    pub running: i32,
}

/// How an attempt ended, as the worker decided.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It succeeded.
    Succeeded,
    /// It failed and runs again at `at`.
    Retry {
        /// When the next attempt is due.
        at: Micros,
        /// The failure, outermost message first.
        errors: Vec<String>,
    },
    /// It failed for good: the job is dead-lettered.
    Dead {
        /// The failure, outermost message first.
        errors: Vec<String>,
    },
}

/// A worker's report that an attempt ended.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The job.
    pub job_id: i64,
    /// The `lease_seq` the worker claimed the job with (the fence).
    pub lease_seq: i64,
    /// When the attempt ended.
    pub at: Micros,
    /// How.
    pub outcome: Outcome,
}

impl Completion {
    pub(crate) fn state(&self) -> JobState {
        match self.outcome {
            Outcome::Succeeded => JobState::Succeeded,
            Outcome::Retry { .. } => JobState::Scheduled,
            Outcome::Dead { .. } => JobState::Dead,
        }
    }

    pub(crate) fn run_at(&self) -> Option<Micros> {
        match self.outcome {
            Outcome::Retry { at, .. } => Some(at),
            _ => None,
        }
    }

    pub(crate) fn errors(&self) -> Option<&[String]> {
        match &self.outcome {
            Outcome::Succeeded => None,
            Outcome::Retry { errors, .. } | Outcome::Dead { errors } => Some(errors),
        }
    }

    pub(crate) fn error_chain_json(&self) -> Option<String> {
        self.errors().map(|e| serde_json::Value::from(e.to_vec()).to_string())
    }

    /// The message with its causes on one line (as anyhow's `{:#}` prints it), so
    /// a list of failed jobs shows why, not only the step that failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.errors().filter(|e| !e.is_empty()).map(|e| e.join(": "))
    }
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Waiting to run now.
    pub enqueued: u64,
    /// Running.
    pub processing: u64,
    /// Waiting for a later time (delayed or retrying).
    pub scheduled: u64,
    /// Done.
    pub succeeded: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Deleted by an admin.
    pub deleted: u64,
}

impl StateCounts {
    pub(crate) fn add(&mut self, state: JobState, n: u64) {
        match state {
            JobState::Enqueued => self.enqueued += n,
            JobState::Processing => self.processing += n,
            JobState::Scheduled => self.scheduled += n,
            JobState::Succeeded => self.succeeded += n,
            JobState::Dead => self.dead += n,
            JobState::Deleted => self.deleted += n,
        }
    }

    /// The count for one state.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Enqueued => self.enqueued,
            JobState::Processing => self.processing,
            JobState::Scheduled => self.scheduled,
            JobState::Succeeded => self.succeeded,
            JobState::Dead => self.dead,
            JobState::Deleted => self.deleted,
        }
    }
}

/// A page of jobs in one state, newest first.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// The state to list.
    pub state: JobState,
    /// Only this job type, when set.
    pub kind: Option<String>,
    /// Only ids below this one (the previous page's last id).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Only jobs whose kind, arguments or last error contain this text
    /// (case-insensitive), when set.
    pub text: Option<String>,
}

/// What the rescuer did in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Jobs put back in the queue.
    pub requeued: u64,
    /// Jobs whose expired attempt was their last.
    pub dead: u64,
}

/// An admin operation on one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    /// Succeeded, dead or deleted → enqueued now, attempts reset.
    Requeue,
    /// Any state but deleted → deleted.
    Delete,
    /// Enqueued or scheduled → enqueued now, attempts kept.
    Trigger,
}

impl AdminOp {
    /// The states the operation applies to.
    pub fn allowed_from(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            AdminOp::Requeue => &[Succeeded, Dead, Deleted],
            AdminOp::Delete => &[Enqueued, Processing, Scheduled, Succeeded, Dead],
            AdminOp::Trigger => &[Enqueued, Scheduled],
        }
    }

    /// The state the job ends in.
    pub fn target(self) -> JobState {
        match self {
            AdminOp::Requeue | AdminOp::Trigger => JobState::Enqueued,
            AdminOp::Delete => JobState::Deleted,
        }
    }

    /// A verb for messages.
    pub fn verb(self) -> &'static str {
        match self {
            AdminOp::Requeue => "requeue",
            AdminOp::Delete => "delete",
            AdminOp::Trigger => "trigger",
        }
    }
}

/// A transaction of the caller's, on whichever backend is configured: write your
/// own rows and enqueue jobs in it, and they commit (or roll back) together.
pub enum Tx {
    /// SQLite, started with `BEGIN IMMEDIATE`.
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    /// PostgreSQL.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A [`Tx`] and the wake-up to fire once it commits.
pub struct Transaction {
    /// The database transaction; match on it to run your own SQL.
    pub tx: Tx,
    pub(crate) wake: Arc<Notify>,
    pub(crate) enqueued: bool,
}

impl Transaction {
    /// Commits, then wakes this process's workers if a job was enqueued.
    ///
    /// # Errors
    /// The database refused the commit; nothing was written.
    pub async fn commit(self) -> Result<(), StorageError> {
        match self.tx {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        if self.enqueued {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    /// Rolls back: nothing written in it, jobs included, remains.
    ///
    /// # Errors
    /// The database connection failed; the transaction is abandoned either way.
    pub async fn rollback(self) -> Result<(), StorageError> {
        match self.tx {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// The connection pools behind a storage, for an application's own tables in the
/// same database (so its writes and its enqueues share one transaction).
#[derive(Clone)]
pub enum Pools {
    /// SQLite: writes must go through `write` (one connection, `BEGIN IMMEDIATE`).
    Sqlite {
        /// The single writer connection.
        write: sqlx::SqlitePool,
        /// Readers.
        read: sqlx::SqlitePool,
    },
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
}

/// Which database a storage talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The engine's persistence. Every write is one transaction; every transition also
/// writes its history row in that transaction.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The pools, for the application's own queries.
    fn pools(&self) -> Pools;

    /// Fired when this process enqueued a job or (PostgreSQL) any process did.
    fn wakeups(&self) -> Arc<Notify>;

    /// Opens a transaction for the caller's own writes plus [`Storage::enqueue_in`].
    async fn begin(&self) -> Result<Transaction, StorageError>;

    /// Inserts a job in the caller's transaction (or returns the live job holding its
    /// unique key).
    async fn enqueue_in(&self, tx: &mut Transaction, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError>;

    /// Claims up to `limit` due jobs from `queues` for `worker`, leased until
    /// `lease_until`: each becomes processing with its attempt and `lease_seq` bumped.
    async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError>;

    /// Extends the leases of jobs `(id, lease_seq)` still held; returns the ids that
    /// are no longer held (rescued, deleted, or claimed again elsewhere).
    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError>;

    /// Records attempt outcomes in one transaction. Each is applied only if the job
    /// is still processing under the same `lease_seq`; returns, per completion,
    /// whether it was accepted.
    async fn complete(&self, batch: &[Completion]) -> Result<Vec<bool>, StorageError>;

    /// Gives back jobs `(id, lease_seq)` at shutdown: enqueued again, the attempt not
    /// counted.
    async fn release(&self, worker: &str, held: &[(i64, i64)], now: Micros) -> Result<u64, StorageError>;

    /// Takes back processing jobs whose lease expired before `now`: enqueued again
    /// with the interrupted attempt not counted, or dead once a job has been
    /// interrupted `max_interruptions` times.
    async fn rescue(&self, now: Micros, max_interruptions: u32) -> Result<Rescued, StorageError>;

    /// Records the step a running job reached; false if the lease is no longer held.
    async fn set_progress(&self, id: i64, lease_seq: i64, step: &str, now: Micros) -> Result<bool, StorageError>;

    /// Jobs per state.
    async fn counts(&self) -> Result<StateCounts, StorageError>;

    /// A page of jobs.
    async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError>;

    /// One job and its history, oldest transition first.
    async fn get(&self, id: i64) -> Result<Option<(JobRow, Vec<HistoryRow>)>, StorageError>;

    /// Applies an admin operation, recording `reason` in the history.
    async fn admin(&self, id: i64, op: AdminOp, reason: &str, now: Micros) -> Result<JobRow, StorageError>;

    /// Inserts or refreshes a worker's registry row.
    async fn register_worker(&self, w: &WorkerRow) -> Result<(), StorageError>;

    /// Records a worker's heartbeat.
    async fn worker_heartbeat(&self, id: &str, now: Micros, running: u32) -> Result<(), StorageError>;

    /// Removes a worker's registry row (clean shutdown).
    async fn deregister_worker(&self, id: &str) -> Result<(), StorageError>;

    /// Workers whose last heartbeat is at or after `since`.
    async fn workers(&self, since: Micros) -> Result<Vec<WorkerRow>, StorageError>;

    /// Removes registry rows of workers silent since before `before`.
    async fn prune_workers(&self, before: Micros) -> Result<u64, StorageError>;
}

/// Opens the storage named by a `DATABASE_URL` (`sqlite://path` or
/// `postgres://...`) and runs the engine's migrations.
///
/// # Errors
/// The URL is neither SQLite nor PostgreSQL, the database cannot be reached or
/// created, or a migration failed.
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>, StorageError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStorage::connect(url).await?))
    } else {
        Err(StorageError::BadUrl(url.split(':').next().unwrap_or("").to_owned()))
    }
}
