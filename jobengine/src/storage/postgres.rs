//! The PostgreSQL backend: the scale-out engine (many servers and workers on one
//! database).
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each
//! other's rows; every multi-row write (claim, completion batch, rescue) is a single
//! statement with data-modifying CTEs that also writes the history rows, so a batch
//! costs one round trip. A trigger `NOTIFY`s `jobs_enqueued` when a job becomes
//! runnable; one listener connection per process turns that into a wake-up, and the
//! worker's poll covers the time the listener is reconnecting.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;

use super::{
    AdminOp, Backend, Completion, Enqueued, HistoryRow, JobRow, ListQuery, NewJob, Pools, Rescued, StateCounts,
    Storage, Transaction, Tx, WorkerRow,
};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// The engine's migrations. `ignore_missing`, because other migrators (the control
/// plane's) share the `_sqlx_migrations` table with their own versions.
fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("../migrations/postgres/jobs");
    m.set_ignore_missing(true);
    m
}

/// The channel the `jobs_enqueued` trigger notifies.
const CHANNEL: &str = "jobs_enqueued";

/// Job storage in PostgreSQL.
#[derive(Clone)]
pub struct PgStorage {
    pool: PgPool,
    wake: Arc<Notify>,
}

impl PgStorage {
    /// Connects, runs the engine's migrations and starts the `LISTEN` task.
    ///
    /// # Errors
    /// The server cannot be reached or a migration failed.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
        migrator().run(&pool).await?;
        let wake = Arc::new(Notify::new());
        tokio::spawn(listen(pool.clone(), wake.clone()));
        Ok(Self { pool, wake })
    }

    /// The connection pool, for the caller's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Forwards `NOTIFY jobs_enqueued` to `wake` for as long as the process runs.
/// Each (re)connect also fires `wake`, so a notification missed while
/// disconnected costs at most one fetch, not a stall.
async fn listen(pool: PgPool, wake: Arc<Notify>) {
    crate::listen::listen_forever(pool, &[CHANNEL], "job listener", move |_| wake.notify_waiters()).await;
}

fn map_unique(e: sqlx::Error, key: &Option<String>) -> StorageError {
    if StorageError::is_unique_violation(&e) {
        StorageError::UniqueKeyTaken(key.clone().unwrap_or_default())
    } else {
        e.into()
    }
}

async fn enqueue_on(conn: &mut sqlx::PgConnection, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError> {
    let run_at = job.run_at.unwrap_or(now);
    let state = if run_at > now { JobState::Scheduled } else { JobState::Enqueued };
    let inserted: Option<i64> = sqlx::query_scalar(
        "WITH ins AS (
             INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at, unique_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
             ON CONFLICT DO NOTHING
             RETURNING id
         ), h AS (
             INSERT INTO job_history (job_id, state, at, attempt) SELECT id, $4, $7, 0 FROM ins
         )
         SELECT id FROM ins",
    )
    .bind(&job.kind)
    .bind(&job.queue)
    .bind(job.args.to_string())
    .bind(state.as_str())
    .bind(job.max_attempts as i32)
    .bind(run_at)
    .bind(now)
    .bind(&job.unique_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok(Enqueued { id, existing: false });
    }
    let key = job.unique_key.clone().unwrap_or_default();
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE unique_key = $1 AND state IN ('enqueued', 'scheduled', 'processing')",
    )
    .bind(&key)
    .fetch_optional(&mut *conn)
    .await?;
    id.map(|id| Enqueued { id, existing: true }).ok_or(StorageError::UniqueKeyTaken(key))
}

#[async_trait]
impl Storage for PgStorage {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn pools(&self) -> Pools {
        Pools::Postgres(self.pool.clone())
    }

    fn wakeups(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn begin(&self) -> Result<Transaction, StorageError> {
        Ok(Transaction { tx: Tx::Postgres(self.pool.begin().await?), wake: self.wake.clone(), enqueued: false })
    }

    async fn enqueue_in(&self, tx: &mut Transaction, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError> {
        let Tx::Postgres(t) = &mut tx.tx else {
            return Err(StorageError::Corrupt("an SQLite transaction was given to PostgreSQL storage".into()));
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
        Ok(sqlx::query_as(
            "WITH due AS (
                 SELECT id FROM jobs
                 WHERE state IN ('enqueued', 'scheduled') AND queue = ANY($1) AND run_at <= $2
                 ORDER BY run_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE jobs j SET state = 'processing', attempt = j.attempt + 1, lease_seq = j.lease_seq + 1,
                        worker_id = $4, attempted_at = $2, updated_at = $2, lease_expires_at = $5, progress = NULL
                 FROM due WHERE j.id = due.id
                 RETURNING j.*
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id)
                 SELECT id, 'processing', $2, attempt, $4 FROM claimed
             )
             SELECT * FROM claimed ORDER BY run_at, id",
        )
        .bind(queues)
        .bind(now)
        .bind(limit as i64)
        .bind(worker)
        .bind(lease_until)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let seqs: Vec<i64> = held.iter().map(|h| h.1).collect();
        let kept: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs j SET lease_expires_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS c(id, seq)
             WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
             RETURNING j.id",
        )
        .bind(lease_until)
        .bind(&ids)
        .bind(&seqs)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().filter(|id| !kept.contains(id)).collect())
    }

    async fn complete(&self, batch: &[Completion]) -> Result<Vec<bool>, StorageError> {
        let ids: Vec<i64> = batch.iter().map(|c| c.job_id).collect();
        let seqs: Vec<i64> = batch.iter().map(|c| c.lease_seq).collect();
        let states: Vec<&str> = batch.iter().map(|c| c.state().as_str()).collect();
        let ats: Vec<i64> = batch.iter().map(|c| c.at).collect();
        let run_ats: Vec<Option<i64>> = batch.iter().map(|c| c.run_at()).collect();
        let errors: Vec<Option<String>> = batch.iter().map(|c| c.last_error()).collect();
        let chains: Vec<Option<String>> = batch.iter().map(|c| c.error_chain_json()).collect();
        let done: Vec<i64> = sqlx::query_scalar(
            "WITH c AS (
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                                      $6::text[], $7::text[])
                        AS c(id, seq, state, at, run_at, last_error, chain)
             ), done AS (
                 UPDATE jobs j SET state = c.state, updated_at = c.at,
                        finished_at = CASE WHEN c.state IN ('succeeded', 'dead') THEN c.at END,
                        lease_expires_at = NULL,
                        run_at = COALESCE(c.run_at, j.run_at),
                        last_error = COALESCE(c.last_error, j.last_error)
                 FROM c WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
                 RETURNING j.id, j.state, c.at, j.attempt, j.worker_id, c.chain
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, error_chain)
                 SELECT id, state, at, attempt, worker_id, chain FROM done
             )
             SELECT id FROM done",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&states)
        .bind(&ats)
        .bind(&run_ats)
        .bind(&errors)
        .bind(&chains)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().map(|id| done.contains(id)).collect())
    }

    async fn release(&self, worker: &str, held: &[(i64, i64)], now: Micros) -> Result<u64, StorageError> {
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let seqs: Vec<i64> = held.iter().map(|h| h.1).collect();
        let n: i64 = sqlx::query_scalar(
            "WITH rel AS (
                 UPDATE jobs j SET state = 'enqueued', attempt = j.attempt - 1, run_at = $3, updated_at = $3,
                        lease_expires_at = NULL, progress = NULL
                 FROM unnest($1::bigint[], $2::bigint[]) AS c(id, seq)
                 WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
                 RETURNING j.id, j.attempt
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, reason)
                 SELECT id, 'enqueued', $3, attempt, $4,
                        'released: the worker shut down before the attempt finished (not counted)' FROM rel
             )
             SELECT COUNT(*) FROM rel",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(now)
        .bind(worker)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn rescue(&self, now: Micros, max_interruptions: u32) -> Result<Rescued, StorageError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH expired AS (
                 SELECT id FROM jobs WHERE state = 'processing' AND lease_expires_at < $1
                 ORDER BY lease_expires_at LIMIT 1000
                 FOR UPDATE SKIP LOCKED
             ), moved AS (
                 UPDATE jobs j SET
                        state = CASE WHEN j.interruptions + 1 >= $2 THEN 'dead' ELSE 'enqueued' END,
                        finished_at = CASE WHEN j.interruptions + 1 >= $2 THEN $1 END,
                        attempt = CASE WHEN j.interruptions + 1 >= $2 THEN j.attempt ELSE j.attempt - 1 END,
                        interruptions = j.interruptions + 1,
                        run_at = $1, updated_at = $1, lease_expires_at = NULL,
                        last_error = 'attempt ' || j.attempt || ' interrupted: worker '
                                     || COALESCE(j.worker_id, '?') || ' stopped renewing its lease ('
                                     || (j.interruptions + 1) || ' of ' || $2 || ' interruptions allowed)'
                 FROM expired e WHERE j.id = e.id
                 RETURNING j.id, j.state, j.attempt, j.worker_id, j.last_error
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, reason, error_chain)
                 SELECT id, state, $1, CASE WHEN state = 'enqueued' THEN attempt + 1 ELSE attempt END,
                        worker_id, last_error,
                        CASE WHEN state = 'dead' THEN json_build_array(last_error)::text END
                 FROM moved
             )
             SELECT state, COUNT(*) FROM moved GROUP BY state",
        )
        .bind(now)
        .bind(i32::try_from(max_interruptions.max(1)).unwrap_or(i32::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Rescued::default();
        for (state, n) in rows {
            if state == "dead" {
                out.dead += n as u64;
            } else {
                out.requeued += n as u64;
            }
        }
        Ok(out)
    }

    async fn set_progress(&self, id: i64, lease_seq: i64, step: &str, now: Micros) -> Result<bool, StorageError> {
        let n = sqlx::query(
            "UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3 AND lease_seq = $4 AND state = 'processing'",
        )
        .bind(step)
        .bind(now)
        .bind(id)
        .bind(lease_seq)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn counts(&self) -> Result<StateCounts, StorageError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetch_all(&self.pool).await?;
        let mut c = StateCounts::default();
        for (s, n) in rows {
            c.add(JobState::try_from(s).map_err(|e| StorageError::Corrupt(e.to_string()))?, n as u64);
        }
        Ok(c)
    }

    async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE state = $1 AND ($2::text IS NULL OR kind = $2) AND id < $3
               AND ($5::text IS NULL OR strpos(lower(kind || ' ' || args || ' ' || coalesce(last_error, '')), lower($5)) > 0)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(q.state.as_str())
        .bind(&q.kind)
        .bind(q.before_id.unwrap_or(i64::MAX))
        .bind(q.limit as i64)
        .bind(&q.text)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get(&self, id: i64) -> Result<Option<(JobRow, Vec<HistoryRow>)>, StorageError> {
        // One snapshot, so the job's state and its history always agree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let Some(job) =
            sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?
        else {
            return Ok(None);
        };
        let history = sqlx::query_as("SELECT * FROM job_history WHERE job_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((job, history)))
    }

    async fn admin(&self, id: i64, op: AdminOp, reason: &str, now: Micros) -> Result<JobRow, StorageError> {
        let mut tx = self.pool.begin().await?;
        let job: JobRow = sqlx::query_as("SELECT * FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StorageError::NotFound(id))?;
        if !op.allowed_from().contains(&job.state) {
            return Err(StorageError::WrongState { id, op: op.verb(), state: job.state });
        }
        let sql = match op {
            AdminOp::Requeue => {
                "UPDATE jobs SET state = 'enqueued', attempt = 0, run_at = $1, updated_at = $1, finished_at = NULL,
                        lease_expires_at = NULL, progress = NULL WHERE id = $2 RETURNING *"
            }
            AdminOp::Trigger => {
                "UPDATE jobs SET state = 'enqueued', run_at = $1, updated_at = $1 WHERE id = $2 RETURNING *"
            }
            AdminOp::Delete => {
                "UPDATE jobs SET state = 'deleted', updated_at = $1, lease_expires_at = NULL WHERE id = $2 RETURNING *"
            }
        };
        let updated: JobRow = sqlx::query_as(sql)
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_unique(e, &job.unique_key))?;
        sqlx::query("INSERT INTO job_history (job_id, state, at, attempt, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(op.target().as_str())
            .bind(now)
            .bind(updated.attempt)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn register_worker(&self, w: &WorkerRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO job_workers (id, hostname, pid, concurrency, queues, started_at, last_heartbeat, running)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn worker_heartbeat(&self, id: &str, now: Micros, running: u32) -> Result<(), StorageError> {
        sqlx::query("UPDATE job_workers SET last_heartbeat = $1, running = $2 WHERE id = $3")
            .bind(now)
            .bind(running as i32)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM job_workers WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn workers(&self, since: Micros) -> Result<Vec<WorkerRow>, StorageError> {
        Ok(sqlx::query_as("SELECT * FROM job_workers WHERE last_heartbeat >= $1 ORDER BY started_at")
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn prune_workers(&self, before: Micros) -> Result<u64, StorageError> {
        Ok(sqlx::query("DELETE FROM job_workers WHERE last_heartbeat < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
