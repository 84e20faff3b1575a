//! Where jobs live: one [`Store`] on the [`database`] handle, its SQL written
//! once where both backends accept it ([`portable`]), and a [`Dialect`] per
//! backend for the statements the dialects force apart: the claim, the lease
//! renewal, the batched completion, the release at shutdown and the rescue.
//!
//! PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, writes batches with `unnest`
//! arrays in one statement, and wakes workers with `LISTEN/NOTIFY`; SQLite has a
//! single writer (see the `database` crate), so its batches are loops inside one
//! `BEGIN IMMEDIATE` transaction.
//!
//! Storage is deliberately dumb: it applies the transitions it is told to, fenced
//! on `lease_seq`, and never decides policy (retry timing, attempts) itself. The
//! transitions that end a job (succeeded, dead, deleted) run the job type's end
//! hook, if it has one, inside the transition's own transaction.

mod batch;
mod cancel;
mod due;
mod partitions;
pub use partitions::reserve_ids;
mod portable;
mod postgres;
mod recurring;
mod retention;
mod search;
mod seed;
mod sqlite;
mod stats;

pub use search::SearchLimits;
pub use stats::SECOND_BUCKETS_KEPT;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use database::{Db, Dialect as Backend, Tx};
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Micros;
use crate::error::StorageError;
use crate::hooks::Hooks;
use crate::state::JobState;

pub use batch::{AWAITING, BatchEnqueued, BatchRow, ContinueOn, Wait};

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
    /// Within its queue, higher runs first (default 0, negative allowed).
    pub priority: i32,
}

impl NewJob {
    /// This job with `priority`: within its queue, higher runs first.
    #[must_use]
    pub fn with_priority(self, priority: i32) -> Self {
        Self { priority, ..self }
    }
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
    /// Within its queue, higher runs first.
    pub priority: i32,
}

/// One transition in a job's history.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct HistoryRow {
    /// Primary key (orders the history); 0 for a ready job's creation, which
    /// has no row (see [`HistoryRow::creation`]).
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
    /// The first entry of a job created ready (enqueued), which is not written:
    /// its row holds all of it (created when, attempt 0), and a bulk enqueue
    /// writes a third less WAL and takes a quarter less time without it (about
    /// 11 → 8 ms per 1,000 jobs in PostgreSQL). Jobs created scheduled or
    /// awaiting have their first entry written, as every later transition has.
    pub fn creation(job: &JobRow) -> Self {
        Self {
            id: 0,
            job_id: job.id,
            state: JobState::Enqueued,
            at: job.created_at,
            attempt: 0,
            worker_id: None,
            reason: None,
            error_chain: None,
        }
    }

    /// Whether this is the written first entry of `job` (a job created
    /// scheduled or awaiting, or ready before creations were derived): no
    /// transition happens in the microsecond of its creation, before a claim.
    fn is_creation_of(&self, job: &JobRow) -> bool {
        self.at == job.created_at && self.attempt == 0
    }

    /// `job`'s history from its written rows (oldest first): its creation
    /// first, derived when not written.
    pub(crate) fn complete(job: &JobRow, mut rows: Vec<Self>) -> Vec<Self> {
        if !rows.first().is_some_and(|r| r.is_creation_of(job)) {
            rows.insert(0, Self::creation(job));
        }
        rows
    }

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

/// Why a stopping worker gives a job back (see [`Store::release`]). Either way
/// the job is enqueued again and the attempt is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Its attempt was still running when the grace ran out; it goes to the
    /// back of its priority (`run_at` = now), as a job that may be what keeps
    /// failing to stop.
    Unfinished,
    /// Claimed ahead (the prefetch buffer) and never started: it keeps its place
    /// in the queue (`run_at` unchanged).
    Unstarted,
}

impl Release {
    /// The history row's reason.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Release::Unfinished => "released: the worker shut down before the attempt finished (not counted)",
            Release::Unstarted => "released: claimed ahead, not started before the worker shut down (not counted)",
        }
    }
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
    /// Waiting for another job to end (continuations, batch completion jobs).
    pub awaiting: u64,
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
            JobState::Awaiting => self.awaiting += n,
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
            JobState::Awaiting => self.awaiting,
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
    /// Any state but deleted → deleted. An awaiting job may be deleted (as in
    /// Hangfire); its own continuations are settled like after any end.
    Delete,
    /// Enqueued or scheduled → enqueued now, attempts kept. Not awaiting: a
    /// continuation started before its parent ended would break the one promise
    /// it makes (refused as a wrong state, FAILED_PRECONDITION over gRPC).
    Trigger,
}

impl AdminOp {
    /// The states the operation applies to.
    pub fn allowed_from(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            AdminOp::Requeue => &[Succeeded, Dead, Deleted],
            AdminOp::Delete => &[Enqueued, Processing, Scheduled, Awaiting, Succeeded, Dead],
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

/// A job that reached an end (succeeded, dead or deleted) in a transition, as
/// the end hooks see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Transition {
    /// The job.
    pub id: i64,
    /// Its type.
    pub kind: String,
    /// Its arguments, as JSON text.
    pub args: String,
    /// The state it entered.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// The failure that ended it (dead), or who deleted it (deleted).
    pub detail: Option<String>,
}

/// The statements each backend writes its own way. Each runs in one transaction;
/// those that can end a job take the caller's, so end hooks join it.
#[async_trait]
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Claims up to `limit` due jobs from `queues` for `worker`, leased until
    /// `lease_until`: each becomes processing with its attempt and `lease_seq`
    /// bumped, and a history row.
    async fn claim(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError>;

    /// Extends the leases of jobs `(id, lease_seq)` still held; returns the ids no
    /// longer held.
    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError>;

    /// Applies attempt outcomes in `tx`, each fenced on its `lease_seq`; returns,
    /// per completion, the transition when it was accepted.
    async fn complete(&self, tx: &mut Tx, batch: &[Completion]) -> Result<Vec<Option<Transition>>, StorageError>;

    /// Gives back jobs `(id, lease_seq)` at shutdown: enqueued again, the attempt
    /// not counted; `run_at` becomes `now` unless `kept_run_at` (see [`Release`]).
    async fn release(
        &self,
        worker: &str,
        held: &[(i64, i64)],
        kept_run_at: bool,
        reason: &str,
        now: Micros,
    ) -> Result<u64, StorageError>;

    /// Takes back, in `tx`, processing jobs whose lease expired before `now` or
    /// whose worker is in `gone` (known dead, see [`crate::liveness`]): enqueued
    /// again with the interrupted attempt not counted, or dead once interrupted
    /// `max_interruptions` times. Returns every job moved.
    async fn rescue(
        &self,
        tx: &mut Tx,
        now: Micros,
        max_interruptions: u32,
        gone: &[String],
    ) -> Result<Vec<Transition>, StorageError>;

    /// Inserts `jobs` (their state and `run_at` resolved) in `tx` with their
    /// history rows, in as few statements as the backend allows; per job, in
    /// order, its new id, or `None` when a live job held its unique key.
    async fn insert(&self, tx: &mut Tx, jobs: &[NewJob], now: Micros) -> Result<Vec<Option<i64>>, StorageError>;

    /// As [`Dialect::insert`] outside any transaction, when the backend can do it
    /// in one atomic statement and no job has a unique key (so every job is
    /// inserted): their new ids. `None`: use a transaction.
    async fn insert_alone(&self, _jobs: &[NewJob], _now: Micros) -> Result<Option<Vec<i64>>, StorageError> {
        Ok(None)
    }

    /// The plan of the claim statement for these arguments, as the backend
    /// prints it (PostgreSQL: `EXPLAIN (ANALYZE, FORMAT JSON)`, run in a
    /// transaction that is rolled back; SQLite: `EXPLAIN QUERY PLAN` lines).
    async fn explain_claim(&self, queues: &[String], limit: u32, now: Micros) -> Result<String, StorageError>;
}

/// The engine's persistence: a database handle, the dialect's statements, the
/// wake-up of this process's workers, and the job types' end hooks. Every write
/// is one transaction; every transition also writes its history row in it
/// (a ready job's creation excepted: see [`HistoryRow::creation`]).
pub struct Store {
    db: Db,
    dialect: Box<dyn Dialect>,
    wake: Arc<Notify>,
    hooks: OnceLock<Arc<dyn Hooks>>,
    /// Ids of running jobs an admin deleted (see [`crate::cancel`]).
    cancels: tokio::sync::broadcast::Sender<i64>,
    /// Workers running in this process (see [`crate::liveness`]): never judged
    /// dead by this process's rescuer, whatever their lock's connection is doing.
    pub(crate) local_workers: crate::liveness::LocalWorkers,
    /// When this process last folded the dashboard's deltas (see [`stats`]).
    last_fold: std::sync::atomic::AtomicI64,
    /// How a text search picks its way (see [`search`]).
    search_limits: std::sync::RwLock<SearchLimits>,
    /// PostgreSQL: the partitions of `jobs` ahead (see [`partitions`]).
    partitions: Arc<partitions::Partitions>,
}

/// The migrations of the engine's tables.
pub fn migrations() -> database::Migrations {
    database::Migrations {
        sqlite: sqlx::migrate!("../migrations/sqlite/jobs"),
        postgres: sqlx::migrate!("../migrations/postgres/jobs"),
    }
}

/// A new job's first state and due time: awaiting when its due time is
/// [`AWAITING`] (a continuation or a batch's completion job, see [`batch`]),
/// scheduled when due later than `now`, enqueued otherwise.
pub(crate) fn initial_state(job: &NewJob, now: Micros) -> (JobState, Micros) {
    let run_at = job.run_at.unwrap_or(now);
    let state = if run_at == AWAITING {
        JobState::Awaiting
    } else if run_at > now {
        JobState::Scheduled
    } else {
        JobState::Enqueued
    };
    (state, run_at)
}

/// The channel the `jobs_enqueued` trigger notifies (PostgreSQL).
const CHANNEL: &str = "jobs_enqueued";

impl Store {
    /// PostgreSQL: a transaction holding the advisory lock `lock` (so one
    /// process at a time does this work), committing without waiting for a
    /// flush; `None` when another process holds the lock. For writes of derived
    /// rows together with the entries they consume (the counters' fold, the
    /// search rows): a crash that loses the commit loses both, and the work is
    /// simply done again, so no fsync is added to others' commits. It runs
    /// without JIT compilation, and does not wait long for a table lock (a
    /// migration building an index, say): after a second it fails, and the next
    /// pass does the work.
    ///
    /// # Errors
    /// A database failure, or a table lock held for over a second.
    pub(crate) async fn begin_derived_work(&self, lock: i64) -> Result<Option<Tx>, StorageError> {
        let mut tx = self.db.begin().await?;
        let mine: bool = database::query("SELECT pg_try_advisory_xact_lock($1)").bind(lock).scalar(&mut tx).await?;
        if !mine {
            tx.rollback().await?;
            return Ok(None);
        }
        // For this transaction only, in one round trip. No JIT: a batch's
        // estimated cost (20,000 queued search rows, say) passes the threshold
        // and compiling took longer than the statement (45-53 ms against 20 ms
        // beside 10,000,000 jobs).
        database::query(
            "SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '1s', true),
                    set_config('jit', 'off', true)",
        )
        .execute(&mut tx)
        .await?;
        Ok(Some(tx))
    }

    /// The engine's storage on `db`: runs the engine's migrations and, on
    /// PostgreSQL, starts listening for other processes' enqueues.
    ///
    /// # Errors
    /// A migration failed.
    pub async fn open(db: Db) -> Result<Arc<Self>, StorageError> {
        db.migrate(migrations()).await?;
        let partitions = partitions::Partitions::new();
        if let Some(pool) = db.postgres() {
            // Usually nothing to add; learns where the last partition starts.
            if let Err(e) = partitions.top_up(pool, 0).await {
                tracing::warn!(error = %e, "adding partitions of jobs failed; the first insert past the mark tries again");
            }
        }
        let wake = Arc::new(Notify::new());
        let dialect: Box<dyn Dialect> = match db.dialect() {
            Backend::Sqlite => Box::new(sqlite::SqliteDialect::new(db.clone(), wake.clone())),
            Backend::Postgres => Box::new(postgres::PgDialect::new(db.clone(), partitions.clone())),
        };
        // Each (re)connect also wakes the workers, so a notification missed while
        // disconnected costs at most one fetch, not a stall.
        let w = wake.clone();
        if let Some(listen) = db.listen(&[CHANNEL], "job listener", move |_| w.notify_waiters()) {
            tokio::spawn(listen);
        }
        // SQLite: another process's enqueue (or anything it commits) wakes ours
        // within milliseconds instead of at the next poll.
        if let Some(changes) = db.changes() {
            let w = wake.clone();
            tokio::spawn(changes.each(move || w.notify_waiters()));
        }
        let cancels = cancel::listen(&db);
        Ok(Arc::new(Self {
            db,
            dialect,
            wake,
            hooks: OnceLock::new(),
            cancels,
            local_workers: Default::default(),
            last_fold: std::sync::atomic::AtomicI64::new(i64::MIN),
            search_limits: Default::default(),
            partitions,
        }))
    }

    /// The database handle, for the application's own queries and transactions.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Fired when this process enqueued a job, or another process did
    /// (PostgreSQL: its `NOTIFY`; SQLite: any commit to the file).
    pub fn wakeups(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Installs the job types' end hooks; only the first call counts.
    pub(crate) fn install_hooks(&self, hooks: Arc<dyn Hooks>) {
        let _ = self.hooks.set(hooks);
    }

    /// Runs the end hooks of `ended` inside `tx`, and settles what waits on them
    /// (batches, continuations; see [`batch`]): continuations deleted because
    /// their parent ended badly have ended too, so they go round again.
    async fn run_hooks(&self, tx: &mut Tx, ended: &[Transition], now: Micros) -> Result<(), StorageError> {
        let mut round = ended.to_vec();
        while !round.is_empty() {
            if let Some(hooks) = self.hooks.get() {
                for t in &round {
                    if hooks.wants(&t.kind) {
                        hooks.run(tx, t, now).await.map_err(StorageError::Hook)?;
                    }
                }
            }
            round = self.settle_ended(tx, &round, now).await?;
        }
        Ok(())
    }

    /// Claims due jobs (see [`Dialect::claim`]).
    ///
    /// # Errors
    /// A database failure.
    pub async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError> {
        self.dialect.claim(worker, queues, limit, now, lease_until).await
    }

    /// The plan of the claim statement (see [`Dialect::explain_claim`]), to check
    /// that claiming walks the due index whatever the backlog.
    ///
    /// # Errors
    /// A database failure.
    pub async fn explain_claim(&self, queues: &[String], limit: u32, now: Micros) -> Result<String, StorageError> {
        self.dialect.explain_claim(queues, limit, now).await
    }

    /// Renews leases (see [`Dialect::extend_leases`]).
    ///
    /// # Errors
    /// A database failure.
    pub async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError> {
        self.dialect.extend_leases(held, lease_until).await
    }

    /// Records attempt outcomes and runs the end hooks of the jobs they end, in
    /// one transaction; returns, per completion, whether it was accepted. When a
    /// hook fails, the batch is retried one completion per transaction, so one
    /// failing hook holds back only its own job (which then fails with the hook's
    /// error, and is retried by the caller).
    ///
    /// # Errors
    /// A database failure, or (single completion) its hook failed.
    pub async fn complete(&self, batch: &[Completion], now: Micros) -> Result<Vec<bool>, StorageError> {
        match self.complete_in_one(batch, now).await {
            Err(StorageError::Hook(e)) if batch.len() > 1 => {
                tracing::warn!(error = %format!("{e:#}"), "an end hook failed; recording this batch one job at a time");
                let mut out = Vec::with_capacity(batch.len());
                for c in batch {
                    out.push(
                        self.complete_in_one(std::slice::from_ref(c), now).await?.first().copied().unwrap_or(false),
                    );
                }
                Ok(out)
            }
            other => other,
        }
    }

    async fn complete_in_one(&self, batch: &[Completion], now: Micros) -> Result<Vec<bool>, StorageError> {
        let mut tx = self.db.begin().await?;
        let done = self.dialect.complete(&mut tx, batch).await?;
        let ended: Vec<Transition> = done.iter().flatten().filter(|t| t.state.is_final()).cloned().collect();
        self.run_hooks(&mut tx, &ended, now).await?;
        if done.iter().flatten().any(|t| t.state == JobState::Enqueued) {
            let wake = self.wake.clone();
            tx.after_commit(move || wake.notify_waiters());
        }
        tx.commit().await?;
        Ok(done.iter().map(Option::is_some).collect())
    }

    /// Gives back jobs a stopping worker holds (see [`Dialect::release`] and
    /// [`Release`]).
    ///
    /// # Errors
    /// A database failure.
    pub async fn release(
        &self,
        worker: &str,
        held: &[(i64, i64)],
        why: Release,
        now: Micros,
    ) -> Result<u64, StorageError> {
        let n = self.dialect.release(worker, held, why == Release::Unstarted, why.reason(), now).await?;
        if n > 0 {
            self.wake.notify_waiters();
        }
        Ok(n)
    }

    /// Takes back jobs whose lease expired, running the end hooks of those that
    /// die of it, in one transaction.
    ///
    /// # Errors
    /// A database failure or a failing hook (nothing is moved then; the next pass
    /// tries again).
    pub async fn rescue(&self, now: Micros, max_interruptions: u32) -> Result<Rescued, StorageError> {
        // Every worker rescues every few hundred milliseconds: the dashboard's
        // deltas stay few even when no dashboard reads them.
        self.fold_stats_now_and_then(now).await;
        // Workers known dead (their lock released, their process gone) are taken
        // back at once; the lease covers what this cannot see.
        let gone = match self.gone_workers().await {
            Ok(gone) => gone,
            Err(e) => {
                retry_warn!(e, "checking which workers are alive failed; relying on leases");
                Vec::new()
            }
        };
        // A cheap read first: on SQLite a transaction takes the one write lock.
        let expired: Option<i64> =
            database::query("SELECT id FROM jobs WHERE state = 'processing' AND lease_expires_at < $1 LIMIT 1")
                .bind(now)
                .scalar_optional(self.db.read())
                .await?;
        if expired.is_none() && gone.is_empty() {
            return Ok(Rescued::default());
        }
        let mut tx = self.db.begin().await?;
        let moved = self.dialect.rescue(&mut tx, now, max_interruptions, &gone).await?;
        if moved.is_empty() {
            tx.rollback().await?;
            return Ok(Rescued::default());
        }
        let dead: Vec<Transition> = moved.iter().filter(|t| t.state == JobState::Dead).cloned().collect();
        self.run_hooks(&mut tx, &dead, now).await?;
        let out = Rescued { requeued: (moved.len() - dead.len()) as u64, dead: dead.len() as u64 };
        if out.requeued > 0 {
            let wake = self.wake.clone();
            tx.after_commit(move || wake.notify_waiters());
        }
        tx.commit().await?;
        Ok(out)
    }
}
