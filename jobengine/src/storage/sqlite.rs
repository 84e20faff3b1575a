//! The SQLite backend: one database file in WAL mode.
//!
//! SQLite allows one writer at a time. Two pools keep that cheap: `write` has a
//! single connection, so writers in this process queue on an async pool (fair, no
//! sleeping) instead of on the file lock, and every write transaction starts with
//! `BEGIN IMMEDIATE` so it takes the lock before reading and cannot fail to upgrade
//! later; `read` has several connections that WAL lets run beside the writer. Other
//! processes on the same file (a separate `worker`) wait on the busy timeout.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::Notify;

use super::{
    AdminOp, Backend, Completion, Enqueued, HistoryRow, JobRow, ListQuery, NewJob, Pools, Rescued, StateCounts,
    Storage, Transaction, Tx, WorkerRow,
};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine's migrations. `ignore_missing`, because other migrators (the control
/// plane's) share the `_sqlx_migrations` table with their own versions.
fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("../migrations/sqlite/jobs");
    m.set_ignore_missing(true);
    m
}

/// Job storage in an SQLite file.
#[derive(Clone)]
pub struct SqliteStorage {
    write: SqlitePool,
    read: SqlitePool,
    wake: Arc<Notify>,
}

impl SqliteStorage {
    /// Opens (creating if missing, with its directory) the database at `url`
    /// (`sqlite://data/app.db`) and runs the engine's migrations.
    ///
    /// # Errors
    /// The file cannot be created or opened, or a migration failed.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        migrator().run(&write).await?;
        Ok(Self { write, read, wake: Arc::new(Notify::new()) })
    }

    /// The single-connection pool writes go through; use
    /// `begin_with("BEGIN IMMEDIATE")` for your own write transactions.
    pub fn write_pool(&self) -> &SqlitePool {
        &self.write
    }

    /// The pool for reads.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }

    async fn begin_immediate(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StorageError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[allow(clippy::too_many_arguments, reason = "one argument per history column")]
async fn history(
    conn: &mut sqlx::SqliteConnection,
    job_id: i64,
    state: JobState,
    at: Micros,
    attempt: i32,
    worker: Option<&str>,
    reason: Option<&str>,
    error_chain: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_history (job_id, state, at, attempt, worker_id, reason, error_chain)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(state.as_str())
    .bind(at)
    .bind(attempt)
    .bind(worker)
    .bind(reason)
    .bind(error_chain)
    .execute(conn)
    .await?;
    Ok(())
}

async fn enqueue_on(conn: &mut sqlx::SqliteConnection, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError> {
    let run_at = job.run_at.unwrap_or(now);
    let state = if run_at > now { JobState::Scheduled } else { JobState::Enqueued };
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at, unique_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.queue)
    .bind(job.args.to_string())
    .bind(state.as_str())
    .bind(job.max_attempts as i64)
    .bind(run_at)
    .bind(now)
    .bind(now)
    .bind(&job.unique_key)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => {
            history(conn, id, state, now, 0, None, None, None).await?;
            Ok(Enqueued { id, existing: false })
        }
        None => {
            let key = job.unique_key.clone().unwrap_or_default();
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE unique_key = ? AND state IN ('enqueued', 'scheduled', 'processing')",
            )
            .bind(&key)
            .fetch_optional(&mut *conn)
            .await?;
            id.map(|id| Enqueued { id, existing: true }).ok_or(StorageError::UniqueKeyTaken(key))
        }
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn pools(&self) -> Pools {
        Pools::Sqlite { write: self.write.clone(), read: self.read.clone() }
    }

    fn wakeups(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn begin(&self) -> Result<Transaction, StorageError> {
        Ok(Transaction { tx: Tx::Sqlite(self.begin_immediate().await?), wake: self.wake.clone(), enqueued: false })
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError> {
        let Tx::Sqlite(t) = &mut tx.tx else {
            return Err(StorageError::Corrupt("a PostgreSQL transaction was given to SQLite storage".into()));
        };
        let e = enqueue_on(t, job, now).await?;
        tx.enqueued |= !e.existing;
        Ok(e)
    }

    async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError> {
        // A cheap read first: an idle queue polled often must not take the write lock.
        let queues_json = serde_json::Value::from(queues.to_vec()).to_string();
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state IN ('enqueued', 'scheduled')
               AND queue IN (SELECT value FROM json_each(?)) AND run_at <= ? LIMIT 1",
        )
        .bind(&queues_json)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_immediate().await?;
        let mut rows: Vec<JobRow> = sqlx::query_as(
            "UPDATE jobs SET state = 'processing', attempt = attempt + 1, lease_seq = lease_seq + 1,
                    worker_id = ?, attempted_at = ?, updated_at = ?, lease_expires_at = ?, progress = NULL
             WHERE id IN (SELECT id FROM jobs
                          WHERE state IN ('enqueued', 'scheduled')
                            AND queue IN (SELECT value FROM json_each(?)) AND run_at <= ?
                          ORDER BY run_at, id LIMIT ?)
             RETURNING *",
        )
        .bind(worker)
        .bind(now)
        .bind(now)
        .bind(lease_until)
        .bind(&queues_json)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            history(&mut tx, r.id, JobState::Processing, now, r.attempt, Some(worker), None, None).await?;
        }
        tx.commit().await?;
        rows.sort_by_key(|r| (r.run_at, r.id));
        Ok(rows)
    }

    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_immediate().await?;
        let mut lost = Vec::new();
        for &(id, seq) in held {
            let n = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_seq = ? AND state = 'processing'",
            )
            .bind(lease_until)
            .bind(id)
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                lost.push(id);
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn complete(&self, batch: &[Completion]) -> Result<Vec<bool>, StorageError> {
        let mut tx = self.begin_immediate().await?;
        let mut accepted = Vec::with_capacity(batch.len());
        for c in batch {
            let state = c.state();
            let finished = matches!(state, JobState::Succeeded | JobState::Dead).then_some(c.at);
            let row: Option<(i32, Option<String>)> = sqlx::query_as(
                "UPDATE jobs SET state = ?, updated_at = ?, finished_at = ?, lease_expires_at = NULL,
                        run_at = COALESCE(?, run_at), last_error = COALESCE(?, last_error)
                 WHERE id = ? AND lease_seq = ? AND state = 'processing'
                 RETURNING attempt, worker_id",
            )
            .bind(state.as_str())
            .bind(c.at)
            .bind(finished)
            .bind(c.run_at())
            .bind(c.last_error())
            .bind(c.job_id)
            .bind(c.lease_seq)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((attempt, worker)) = &row {
                let chain = c.error_chain_json();
                history(&mut tx, c.job_id, state, c.at, *attempt, worker.as_deref(), None, chain.as_deref()).await?;
            }
            accepted.push(row.is_some());
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn release(&self, worker: &str, held: &[(i64, i64)], now: Micros) -> Result<u64, StorageError> {
        let mut tx = self.begin_immediate().await?;
        let mut released = 0;
        for &(id, seq) in held {
            let attempt: Option<i32> = sqlx::query_scalar(
                "UPDATE jobs SET state = 'enqueued', attempt = attempt - 1, run_at = ?, updated_at = ?,
                        lease_expires_at = NULL, progress = NULL
                 WHERE id = ? AND lease_seq = ? AND state = 'processing'
                 RETURNING attempt",
            )
            .bind(now)
            .bind(now)
            .bind(id)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(attempt) = attempt {
                let reason = "released: the worker shut down before the attempt finished (not counted)";
                history(&mut tx, id, JobState::Enqueued, now, attempt, Some(worker), Some(reason), None).await?;
                released += 1;
            }
        }
        tx.commit().await?;
        if released > 0 {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    async fn rescue(&self, now: Micros, max_interruptions: u32) -> Result<Rescued, StorageError> {
        let expired: Option<i64> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'processing' AND lease_expires_at < ? LIMIT 1")
                .bind(now)
                .fetch_optional(&self.read)
                .await?;
        if expired.is_none() {
            return Ok(Rescued::default());
        }
        let mut tx = self.begin_immediate().await?;
        let rows: Vec<(i64, String, i32, Option<String>, String)> = sqlx::query_as(
            "UPDATE jobs SET
                    state = CASE WHEN interruptions + 1 >= ?1 THEN 'dead' ELSE 'enqueued' END,
                    finished_at = CASE WHEN interruptions + 1 >= ?1 THEN ?2 ELSE NULL END,
                    attempt = CASE WHEN interruptions + 1 >= ?1 THEN attempt ELSE attempt - 1 END,
                    interruptions = interruptions + 1,
                    run_at = ?2, updated_at = ?2, lease_expires_at = NULL,
                    last_error = 'attempt ' || attempt || ' interrupted: worker ' || COALESCE(worker_id, '?')
                                 || ' stopped renewing its lease (' || (interruptions + 1) || ' of ' || ?1
                                 || ' interruptions allowed)'
             WHERE id IN (SELECT id FROM jobs WHERE state = 'processing' AND lease_expires_at < ?2
                          ORDER BY lease_expires_at LIMIT 1000)
             RETURNING id, state, attempt, worker_id, last_error",
        )
        .bind(i64::from(max_interruptions.max(1)))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Rescued::default();
        for (id, state, attempt, worker, reason) in rows {
            let state = JobState::try_from(state).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let chain = (state == JobState::Dead).then(|| serde_json::Value::from(vec![reason.clone()]).to_string());
            // The history names the interrupted attempt (the row now holds the one
            // before it, since the interrupted one does not count).
            let shown = if state == JobState::Dead { attempt } else { attempt + 1 };
            history(&mut tx, id, state, now, shown, worker.as_deref(), Some(&reason), chain.as_deref()).await?;
            if state == JobState::Dead {
                out.dead += 1;
            } else {
                out.requeued += 1;
            }
        }
        tx.commit().await?;
        if out.requeued > 0 {
            self.wake.notify_waiters();
        }
        Ok(out)
    }

    async fn set_progress(&self, id: i64, lease_seq: i64, step: &str, now: Micros) -> Result<bool, StorageError> {
        let n = sqlx::query(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND lease_seq = ? AND state = 'processing'",
        )
        .bind(step)
        .bind(now)
        .bind(id)
        .bind(lease_seq)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn counts(&self) -> Result<StateCounts, StorageError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetch_all(&self.read).await?;
        let mut c = StateCounts::default();
        for (s, n) in rows {
            c.add(JobState::try_from(s).map_err(|e| StorageError::Corrupt(e.to_string()))?, n as u64);
        }
        Ok(c)
    }

    async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE state = ? AND (? IS NULL OR kind = ?) AND id < ?
               AND (? IS NULL OR instr(lower(kind || ' ' || args || ' ' || coalesce(last_error, '')), lower(?)) > 0)
             ORDER BY id DESC LIMIT ?",
        )
        .bind(q.state.as_str())
        .bind(&q.kind)
        .bind(&q.kind)
        .bind(q.before_id.unwrap_or(i64::MAX))
        .bind(&q.text)
        .bind(&q.text)
        .bind(q.limit as i64)
        .fetch_all(&self.read)
        .await?)
    }

    async fn get(&self, id: i64) -> Result<Option<(JobRow, Vec<HistoryRow>)>, StorageError> {
        // One read transaction is one WAL snapshot: state and history agree.
        let mut tx = self.read.begin().await?;
        let Some(job) =
            sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?
        else {
            return Ok(None);
        };
        let history = sqlx::query_as("SELECT * FROM job_history WHERE job_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((job, history)))
    }

    async fn admin(&self, id: i64, op: AdminOp, reason: &str, now: Micros) -> Result<JobRow, StorageError> {
        let mut tx = self.begin_immediate().await?;
        let job: JobRow = sqlx::query_as("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StorageError::NotFound(id))?;
        if !op.allowed_from().contains(&job.state) {
            return Err(StorageError::WrongState { id, op: op.verb(), state: job.state });
        }
        let sql = match op {
            AdminOp::Requeue => {
                "UPDATE jobs SET state = 'enqueued', attempt = 0, run_at = ?1, updated_at = ?1, finished_at = NULL,
                        lease_expires_at = NULL, progress = NULL WHERE id = ?2 RETURNING *"
            }
            AdminOp::Trigger => {
                "UPDATE jobs SET state = 'enqueued', run_at = ?1, updated_at = ?1 WHERE id = ?2 RETURNING *"
            }
            AdminOp::Delete => {
                "UPDATE jobs SET state = 'deleted', updated_at = ?1, lease_expires_at = NULL WHERE id = ?2 RETURNING *"
            }
        };
        let updated: JobRow = match sqlx::query_as(sql).bind(now).bind(id).fetch_one(&mut *tx).await {
            Ok(row) => row,
            Err(e) if StorageError::is_unique_violation(&e) => {
                return Err(StorageError::UniqueKeyTaken(job.unique_key.unwrap_or_default()));
            }
            Err(e) => return Err(e.into()),
        };
        history(&mut tx, id, op.target(), now, updated.attempt, None, Some(reason), None).await?;
        tx.commit().await?;
        if op.target() == JobState::Enqueued {
            self.wake.notify_waiters();
        }
        Ok(updated)
    }

    async fn register_worker(&self, w: &WorkerRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO job_workers (id, hostname, pid, concurrency, queues, started_at, last_heartbeat, running)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat",
        )
        .bind(&w.id)
        .bind(&w.hostname)
        .bind(w.pid)
        .bind(w.concurrency)
        .bind(&w.queues)
        .bind(w.started_at)
        .bind(w.last_heartbeat)
        .bind(w.running)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn worker_heartbeat(&self, id: &str, now: Micros, running: u32) -> Result<(), StorageError> {
        sqlx::query("UPDATE job_workers SET last_heartbeat = ?, running = ? WHERE id = ?")
            .bind(now)
            .bind(running as i64)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM job_workers WHERE id = ?").bind(id).execute(&self.write).await?;
        Ok(())
    }

    async fn workers(&self, since: Micros) -> Result<Vec<WorkerRow>, StorageError> {
        Ok(sqlx::query_as("SELECT * FROM job_workers WHERE last_heartbeat >= ? ORDER BY started_at")
            .bind(since)
            .fetch_all(&self.read)
            .await?)
    }

    async fn prune_workers(&self, before: Micros) -> Result<u64, StorageError> {
        Ok(sqlx::query("DELETE FROM job_workers WHERE last_heartbeat < ?")
            .bind(before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }
}
