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

use super::{Completion, Dialect, JobRow, NewJob, Transition};
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

/// The ids of the best due jobs of `n` queues (`$1`..`$n`; `$n+1` is now,
/// `$n+2` the limit): per queue, one walk of `jobs_due` (ready jobs, in its
/// order: priority descending, then due time, then id) and one of
/// `jobs_scheduled_due` up to now (scheduled jobs that fell due, oldest first),
/// each stopping after the limit, then the best of those. With `queue IN (…)`
/// over the whole list SQLite searched every queue's range and sorted the lot
/// in a temporary B-tree; with ready and scheduled jobs in one index (before
/// migration 1080), a walk that found too few read every job scheduled later.
///
/// Plan (`EXPLAIN QUERY PLAN` of the claim, 20,000 queued), one queue (with
/// more, two more arms per queue; the temporary B-tree orders at most
/// limit × 2 × queues rows):
/// ```text
/// SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)
/// LIST SUBQUERY 5
///   CO-ROUTINE (subquery-4)
///     COMPOUND QUERY
///       LEFT-MOST SUBQUERY
///         CO-ROUTINE (subquery-1)
///           SEARCH jobs USING COVERING INDEX jobs_due (queue=?)
///         SCAN (subquery-1)
///       UNION ALL
///         CO-ROUTINE (subquery-3)
///           SEARCH jobs USING INDEX jobs_scheduled_due (queue=? AND run_at<?)
///         SCAN (subquery-3)
///   SCAN (subquery-4)
///   USE TEMP B-TREE FOR ORDER BY
/// ```
fn due_ids(n: usize) -> String {
    let (now, limit) = (format!("${}", n + 1), format!("${}", n + 2));
    let arms: Vec<String> = (1..=n)
        .flat_map(|i| super::due::due_walks(&format!("${i}"), &now, &limit))
        .map(|walk| format!("SELECT * FROM ({walk})"))
        .collect();
    format!("SELECT id FROM ({}) ORDER BY priority DESC, run_at, id LIMIT {limit}", arms.join(" UNION ALL "))
}

/// The claim of `n` queues: `due_ids`' parameters, then `$n+3` the worker and
/// `$n+4` the lease's end.
fn claim_sql(n: usize) -> String {
    let (now, worker, lease) = (n + 1, n + 3, n + 4);
    format!(
        "UPDATE jobs SET state = 'processing', attempt = attempt + 1, lease_seq = lease_seq + 1,
                worker_id = ${worker}, attempted_at = ${now}, updated_at = ${now}, lease_expires_at = ${lease},
                progress = NULL
         WHERE id IN ({})
         RETURNING *",
        due_ids(n)
    )
}

/// Rows per multi-row `INSERT`: 10 variables each, well under SQLite's 32,766.
const INSERT_CHUNK: usize = 1000;

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
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut probe = query(due_ids(queues.len()));
        for q in queues {
            probe = probe.bind(q);
        }
        let due: Option<i64> = probe.bind(now).bind(1_i64).scalar_optional(self.db.read()).await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let conn = sqlite(&mut tx)?;
        let sql = claim_sql(queues.len());
        let mut claim = sqlx::query_as::<_, JobRow>(&sql);
        for q in queues {
            claim = claim.bind(q);
        }
        let mut rows =
            claim.bind(now).bind(i64::from(limit)).bind(worker).bind(lease_until).fetch_all(&mut *conn).await?;
        // In claim order (`RETURNING` has none), so the history shows the order
        // the worker starts them in (a claim takes several at once).
        rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.run_at, r.id));
        for r in &rows {
            history(conn, r.id, JobState::Processing, now, r.attempt, Some(worker), None, None).await?;
        }
        tx.commit().await?;
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

    async fn release(
        &self,
        worker: &str,
        held: &[(i64, i64)],
        kept_run_at: bool,
        reason: &str,
        now: Micros,
    ) -> Result<u64, StorageError> {
        let mut tx = self.db.begin().await?;
        let conn = sqlite(&mut tx)?;
        let mut released = 0;
        for &(id, seq) in held {
            let attempt: Option<i32> = sqlx::query_scalar(
                "UPDATE jobs SET state = 'enqueued', attempt = attempt - 1, run_at = COALESCE(?, run_at),
                        updated_at = ?, lease_expires_at = NULL, progress = NULL
                 WHERE id = ? AND lease_seq = ? AND state = 'processing'
                 RETURNING attempt",
            )
            .bind((!kept_run_at).then_some(now))
            .bind(now)
            .bind(id)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(attempt) = attempt {
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

    async fn rescue(
        &self,
        tx: &mut Tx,
        now: Micros,
        max_interruptions: u32,
        gone: &[String],
    ) -> Result<Vec<Transition>, StorageError> {
        let conn = sqlite(tx)?;
        let gone_json = serde_json::Value::from(gone.to_vec()).to_string();
        let rows: Vec<(i64, String, i32, Option<String>, String, String, String)> = sqlx::query_as(
            "UPDATE jobs SET
                    state = CASE WHEN interruptions + 1 >= ?1 THEN 'dead' ELSE 'enqueued' END,
                    finished_at = CASE WHEN interruptions + 1 >= ?1 THEN ?2 ELSE NULL END,
                    attempt = CASE WHEN interruptions + 1 >= ?1 THEN attempt ELSE attempt - 1 END,
                    interruptions = interruptions + 1,
                    run_at = ?2, updated_at = ?2, lease_expires_at = NULL,
                    last_error = 'attempt ' || attempt || ' interrupted: worker ' || COALESCE(worker_id, '?')
                                 || CASE WHEN lease_expires_at < ?2 THEN ' stopped renewing its lease ('
                                         ELSE ' is gone, found dead before its lease expired (' END
                                 || (interruptions + 1) || ' of ' || ?1 || ' interruptions allowed)'
             WHERE id IN (SELECT id FROM jobs
                          WHERE state = 'processing'
                            AND (lease_expires_at < ?2 OR worker_id IN (SELECT value FROM json_each(?3)))
                          ORDER BY lease_expires_at LIMIT 1000)
             RETURNING id, state, attempt, worker_id, last_error, kind, args",
        )
        .bind(i64::from(max_interruptions.max(1)))
        .bind(now)
        .bind(&gone_json)
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

    async fn insert(&self, tx: &mut Tx, jobs: &[NewJob], now: Micros) -> Result<Vec<Option<i64>>, StorageError> {
        let conn = sqlite(tx)?;
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(INSERT_CHUNK) {
            // Anonymous `?` placeholders, bound in order: with thousands of
            // numbered ones (`$N`) binding took quadratic time (2,500 jobs in
            // 0.7 s against 0.03 s, debug build).
            let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            let sql = format!(
                "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at,
                                   unique_key, priority)
                 VALUES {}
                 ON CONFLICT DO NOTHING
                 RETURNING id, unique_key",
                vec![row; chunk.len()].join(", ")
            );
            let mut insert = sqlx::query_as::<_, (i64, Option<String>)>(&sql);
            for j in chunk {
                let (state, run_at) = super::initial_state(j, now);
                insert = insert
                    .bind(&j.kind)
                    .bind(&j.queue)
                    .bind(j.args.to_string())
                    .bind(state.as_str())
                    .bind(i64::from(j.max_attempts))
                    .bind(run_at)
                    .bind(now)
                    .bind(now)
                    .bind(&j.unique_key)
                    .bind(j.priority);
            }
            let mut inserted = insert.fetch_all(&mut *conn).await?;
            // RETURNING's order is unspecified, but with one writer the new ids
            // rise in the order of the VALUES rows: sorted by id, the inserted rows
            // follow the inputs, and an input whose key does not match the next
            // one was not inserted (a live job held its key).
            inserted.sort_by_key(|r| r.0);
            let mut next = inserted.iter().peekable();
            for j in chunk {
                match next.peek() {
                    Some((id, key)) if *key == j.unique_key => {
                        out.push(Some(*id));
                        next.next();
                    }
                    _ => out.push(None),
                }
            }
            // History rows only for jobs that start scheduled or awaiting: a ready
            // job's first entry is read from its row (see `HistoryRow::creation`).
            let waiting = chunk.iter().any(|j| super::initial_state(j, now).0 != JobState::Enqueued);
            if waiting && !inserted.is_empty() {
                let ids = serde_json::Value::from(inserted.iter().map(|r| r.0).collect::<Vec<_>>()).to_string();
                sqlx::query(
                    "INSERT INTO job_history (job_id, state, at, attempt)
                     SELECT id, state, $1, 0 FROM jobs WHERE id IN (SELECT value FROM json_each($2))
                       AND state <> 'enqueued' ORDER BY id",
                )
                .bind(now)
                .bind(ids)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(out)
    }

    async fn explain_claim(&self, queues: &[String], limit: u32, now: Micros) -> Result<String, StorageError> {
        let Some((writer, _)) = self.db.sqlite() else {
            return Err(StorageError::Corrupt("SQLite storage on a PostgreSQL handle".into()));
        };
        let sql = format!("EXPLAIN QUERY PLAN {}", claim_sql(queues.len()));
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql);
        for queue in queues {
            q = q.bind(queue);
        }
        let rows = q.bind(now).bind(i64::from(limit)).bind("explain").bind(now).fetch_all(writer).await?;
        Ok(rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n"))
    }
}
