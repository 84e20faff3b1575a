//! The SQLite dialect: one database file in WAL mode, one writer at a time (see
//! the `database` crate). Batches are loops of small statements inside one
//! `BEGIN IMMEDIATE` transaction: with a single writer and no network between us
//! and the file, a statement costs microseconds, and SQLite before 3.35 has no
//! `RETURNING` in CTEs to do better.

use std::sync::Arc;

use async_trait::async_trait;
use database::{Db, Tx, query};
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use super::{Completion, Dialect, JobRow, Transition};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// Job statements for SQLite.
pub(crate) struct SqliteDialect {
    db: Db,
    wake: Arc<Notify>,
}

impl SqliteDialect {
    pub(crate) fn new(db: Db, wake: Arc<Notify>) -> Self {
        Self { db, wake }
    }
}

#[allow(clippy::too_many_arguments, reason = "one argument per history column")]
async fn history(
    conn: &mut SqliteConnection,
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

fn sqlite(tx: &mut Tx) -> Result<&mut SqliteConnection, StorageError> {
    tx.sqlite().ok_or_else(|| StorageError::Corrupt("a PostgreSQL transaction was given to SQLite storage".into()))
}

#[async_trait]
impl Dialect for SqliteDialect {
    async fn claim(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError> {
        // A cheap read first: an idle queue polled often must not take the write lock.
        let queues_json = serde_json::Value::from(queues.to_vec()).to_string();
        let due: Option<i64> = query(
            "SELECT id FROM jobs WHERE state IN ('enqueued', 'scheduled')
               AND queue IN (SELECT value FROM json_each($1)) AND run_at <= $2 LIMIT 1",
        )
        .bind(&queues_json)
        .bind(now)
        .scalar_optional(self.db.read())
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let conn = sqlite(&mut tx)?;
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
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            history(conn, r.id, JobState::Processing, now, r.attempt, Some(worker), None, None).await?;
        }
        tx.commit().await?;
        rows.sort_by_key(|r| (r.run_at, r.id));
        Ok(rows)
    }

    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let conn = sqlite(&mut tx)?;
        let mut lost = Vec::new();
        for &(id, seq) in held {
            let n = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_seq = ? AND state = 'processing'",
            )
            .bind(lease_until)
            .bind(id)
            .bind(seq)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 0 {
                lost.push(id);
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn complete(&self, tx: &mut Tx, batch: &[Completion]) -> Result<Vec<Option<Transition>>, StorageError> {
        let conn = sqlite(tx)?;
        let mut accepted = Vec::with_capacity(batch.len());
        for c in batch {
            let state = c.state();
            let finished = matches!(state, JobState::Succeeded | JobState::Dead).then_some(c.at);
            let row: Option<(i32, Option<String>, String, String)> = sqlx::query_as(
                "UPDATE jobs SET state = ?, updated_at = ?, finished_at = ?, lease_expires_at = NULL,
                        run_at = COALESCE(?, run_at), last_error = COALESCE(?, last_error)
                 WHERE id = ? AND lease_seq = ? AND state = 'processing'
                 RETURNING attempt, worker_id, kind, args",
            )
            .bind(state.as_str())
            .bind(c.at)
            .bind(finished)
            .bind(c.run_at())
            .bind(c.last_error())
            .bind(c.job_id)
            .bind(c.lease_seq)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((attempt, worker, kind, args)) = row else {
                accepted.push(None);
                continue;
            };
            let chain = c.error_chain_json();
            history(conn, c.job_id, state, c.at, attempt, worker.as_deref(), None, chain.as_deref()).await?;
            accepted.push(Some(Transition { id: c.job_id, kind, args, state, detail: c.last_error() }));
        }
        Ok(accepted)
    }

    async fn release(&self, worker: &str, held: &[(i64, i64)], now: Micros) -> Result<u64, StorageError> {
        let mut tx = self.db.begin().await?;
        let conn = sqlite(&mut tx)?;
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
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(attempt) = attempt {
                let reason = "released: the worker shut down before the attempt finished (not counted)";
                history(conn, id, JobState::Enqueued, now, attempt, Some(worker), Some(reason), None).await?;
                released += 1;
            }
        }
        tx.commit().await?;
        if released > 0 {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    async fn rescue(&self, tx: &mut Tx, now: Micros, max_interruptions: u32) -> Result<Vec<Transition>, StorageError> {
        let conn = sqlite(tx)?;
        let rows: Vec<(i64, String, i32, Option<String>, String, String, String)> = sqlx::query_as(
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
             RETURNING id, state, attempt, worker_id, last_error, kind, args",
        )
        .bind(i64::from(max_interruptions.max(1)))
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        let mut moved = Vec::with_capacity(rows.len());
        for (id, state, attempt, worker, reason, kind, args) in rows {
            let state = JobState::try_from(state).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let chain = (state == JobState::Dead).then(|| serde_json::Value::from(vec![reason.clone()]).to_string());
            // The history names the interrupted attempt (the row now holds the one
            // before it, since the interrupted one does not count).
            let shown = if state == JobState::Dead { attempt } else { attempt + 1 };
            history(conn, id, state, now, shown, worker.as_deref(), Some(&reason), chain.as_deref()).await?;
            moved.push(Transition { id, kind, args, state, detail: Some(reason) });
        }
        Ok(moved)
    }
}
