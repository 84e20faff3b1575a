//! Continuations and batches (Hangfire's `ContinueJobWith` and Pro batches),
//! written once for both backends (`migrations/*/jobs/1030_batches.sql`).
//!
//! A continuation waits for its parent to end. Until then it is `awaiting`
//! (Hangfire's Awaiting state; migration 1060) and its row in `job_waits` is
//! undecided. A claim takes only `enqueued` and `scheduled` jobs, so no claim,
//! "trigger now" or requeue starts it early; the dashboard lists it apart from
//! scheduled jobs. Its `run_at` stays [`AWAITING`] (the column is not null and
//! an awaiting job has no due time); the parent's end sets it to the release
//! time. A batch's completion job waits the same way for the batch's last member.
//!
//! A batch is a row of counters plus a membership table. Everything here runs in
//! the transaction that ends a job ([`Store::settle_ended`], called next to the
//! end hooks on every path: completion, rescuer, admin delete), so a parent's
//! end and its continuations' release, a member's end and its batch's counters,
//! commit together or not at all: a `kill -9` cannot separate them. The batch's
//! last member flips `finished_at` by compare-and-set (`WHERE finished_at IS
//! NULL`) on the batch row, which PostgreSQL locks for the rest of the
//! transaction (SQLite has one writer): two workers ending the last two jobs at
//! the same moment release the completion job exactly once.

use database::{Tx, query};
use serde::Serialize;

use super::{Enqueued, NewJob, Store, Transition};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// The `run_at` of a job inserted `awaiting` (9999-12-31T23:59:59Z): passed as
/// a [`NewJob`]'s due time it makes the insert's state `awaiting` (see
/// `initial_state`), and it is later than any claim's `now`, so even a row read
/// by an older version is never due; still a time every display can format.
pub const AWAITING: Micros = 253_402_300_799_000_000;

/// When a continuation may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ContinueOn {
    /// Only when the parent succeeds; a dead or deleted parent deletes it.
    Success,
    /// Whenever the parent ends: succeeded, dead or deleted.
    AnyEnd,
}

impl ContinueOn {
    fn as_str(self) -> &'static str {
        match self {
            ContinueOn::Success => "success",
            ContinueOn::AnyEnd => "any",
        }
    }

    fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "success" => Ok(ContinueOn::Success),
            "any" => Ok(ContinueOn::AnyEnd),
            other => Err(StorageError::Corrupt(format!("unknown continuation condition {other:?}"))),
        }
    }
}

/// A continuation's link to its parent.
#[derive(Debug, Clone, Serialize)]
pub struct Wait {
    /// The job that waits.
    pub child_id: i64,
    /// The job it waits for.
    pub parent_id: i64,
    /// When it may run.
    pub on: ContinueOn,
    /// When the parent's end decided it (enqueued or deleted); `None` while waiting.
    pub decided_at: Option<Micros>,
}

/// A batch's progress, kept by the end transitions.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct BatchRow {
    /// Primary key.
    pub id: i64,
    /// What the batch is, in words ("import of 50 tenants").
    pub label: String,
    /// Jobs in the batch.
    pub total: i64,
    /// Members that succeeded.
    pub succeeded: i64,
    /// Members that died.
    pub dead: i64,
    /// Members that were deleted.
    pub deleted: i64,
    /// The job released once every member has ended, if any.
    pub completion_job_id: Option<i64>,
    /// When the batch was opened.
    pub created_at: Micros,
    /// When its last member ended.
    pub finished_at: Option<Micros>,
}

/// What [`Store::enqueue_batch_in`] made.
#[derive(Debug, Clone, Serialize)]
pub struct BatchEnqueued {
    /// The batch.
    pub id: i64,
    /// Per job, in order, as [`Store::enqueue_many_in`] answers.
    pub jobs: Vec<Enqueued>,
    /// The completion job, waiting for the batch to finish.
    pub completion: Option<i64>,
}

impl BatchRow {
    /// Members that have not ended yet.
    pub fn pending(&self) -> i64 {
        (self.total - self.succeeded - self.dead - self.deleted).max(0)
    }
}

type WaitTuple = (i64, i64, String, Option<i64>);

fn wait_from(t: WaitTuple) -> Result<Wait, StorageError> {
    Ok(Wait { child_id: t.0, parent_id: t.1, on: ContinueOn::parse(&t.2)?, decided_at: t.3 })
}

/// `id1, id2, …` for an `IN` list. The ids are integers the engine read itself,
/// never user text, so they are formatted into the SQL rather than bound (a bound
/// list is written differently by each backend).
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Inserts `job` in `tx` as a continuation of `parent`: it runs once the parent
    /// ends, if `on` allows; otherwise it is deleted then, with the reason. When
    /// the parent has already ended it is decided at once.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when the parent does not exist; a database failure.
    pub async fn enqueue_after_in(
        &self,
        tx: &mut Tx,
        parent: i64,
        on: ContinueOn,
        job: &NewJob,
        now: Micros,
    ) -> Result<Enqueued, StorageError> {
        // A no-op write on the parent: on PostgreSQL it holds the parent's row lock
        // to commit, so the parent cannot end between this read and the wait row
        // becoming visible (its end transition would miss the row); SQLite has one
        // writer already.
        let state: Option<String> = query("UPDATE jobs SET updated_at = updated_at WHERE id = $1 RETURNING state")
            .bind(parent)
            .scalar_optional(&mut *tx)
            .await?;
        let state = JobState::try_from(state.ok_or(StorageError::NotFound(parent))?)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let waiting = NewJob { run_at: Some(AWAITING), ..job.clone() };
        let e = self.enqueue_in(tx, &waiting, now).await?;
        if e.existing {
            return Ok(e);
        }
        query("INSERT INTO job_waits (child_id, parent_id, on_end) VALUES ($1, $2, $3)")
            .bind(e.id)
            .bind(parent)
            .bind(on.as_str())
            .execute(&mut *tx)
            .await?;
        if state.is_final() {
            let w = Wait { child_id: e.id, parent_id: parent, on, decided_at: None };
            if let Some(t) = self.decide(tx, &w, state, now).await? {
                self.run_hooks(tx, &[t], now).await?;
            }
        }
        Ok(e)
    }

    /// Enqueues `jobs` in `tx` as one batch labelled `label` (bulk, see
    /// [`Store::enqueue_many_in`]), with an optional `completion` job that waits
    /// (like a continuation) until every member has ended, then is enqueued once;
    /// its handler finds the batch's counts with [`Store::batch_completed_by`]
    /// (or [`JobContext::batch`](crate::JobContext::batch)). A job whose unique
    /// key a live job already held is not a member (it is not this batch's job).
    /// An empty batch is finished at once.
    ///
    /// # Errors
    /// A database failure.
    pub async fn enqueue_batch_in(
        &self,
        tx: &mut Tx,
        label: &str,
        jobs: &[NewJob],
        completion: Option<&NewJob>,
        now: Micros,
    ) -> Result<BatchEnqueued, StorageError> {
        let id: i64 = query("INSERT INTO job_batches (label, created_at) VALUES ($1, $2) RETURNING id")
            .bind(label)
            .bind(now)
            .scalar(&mut *tx)
            .await?;
        let out = self.enqueue_many_in(tx, jobs, now).await?;
        let new: Vec<i64> = out.iter().filter(|e| !e.existing).map(|e| e.id).collect();
        // Multi-row VALUES in chunks: under SQLite's variable limit.
        for chunk in new.chunks(400) {
            let values = (0..chunk.len()).map(|i| format!("(${}, $1)", i + 2)).collect::<Vec<_>>().join(", ");
            let mut q = query(format!("INSERT INTO job_batch_jobs (job_id, batch_id) VALUES {values}")).bind(id);
            for job in chunk {
                q = q.bind(*job);
            }
            q.execute(&mut *tx).await?;
        }
        let completion_id = match completion {
            Some(job) => {
                let waiting = NewJob { run_at: Some(AWAITING), ..job.clone() };
                Some(self.enqueue_in(tx, &waiting, now).await?.id)
            }
            None => None,
        };
        query("UPDATE job_batches SET total = $1, completion_job_id = $2 WHERE id = $3")
            .bind(new.len() as i64)
            .bind(completion_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if new.is_empty() {
            self.finish_batch(tx, id, now).await?;
        }
        Ok(BatchEnqueued { id, jobs: out, completion: completion_id })
    }

    /// The batch whose completion job is `job_id`, if any.
    ///
    /// # Errors
    /// A database failure.
    pub async fn batch_completed_by(&self, job_id: i64) -> Result<Option<BatchRow>, StorageError> {
        Ok(query("SELECT * FROM job_batches WHERE completion_job_id = $1")
            .bind(job_id)
            .fetch_optional(self.db.read())
            .await?)
    }

    /// One batch, or `None`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn batch(&self, id: i64) -> Result<Option<BatchRow>, StorageError> {
        Ok(query("SELECT * FROM job_batches WHERE id = $1").bind(id).fetch_optional(self.db.read()).await?)
    }

    /// Batches, newest first: ids below `before_id`, at most `limit`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn batches(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<BatchRow>, StorageError> {
        Ok(query("SELECT * FROM job_batches WHERE id < $1 ORDER BY id DESC LIMIT $2")
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.db.read())
            .await?)
    }

    /// What job `id` waits for (or waited for), if it is a continuation.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn waits_for(&self, id: i64) -> Result<Option<Wait>, StorageError> {
        let row: Option<WaitTuple> =
            query("SELECT child_id, parent_id, on_end, decided_at FROM job_waits WHERE child_id = $1")
                .bind(id)
                .fetch_optional(self.db.read())
                .await?;
        row.map(wait_from).transpose()
    }

    /// The continuations of job `id`, oldest first.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn waited_on_by(&self, id: i64) -> Result<Vec<Wait>, StorageError> {
        let rows: Vec<WaitTuple> = query(
            "SELECT child_id, parent_id, on_end, decided_at FROM job_waits WHERE parent_id = $1 ORDER BY child_id",
        )
        .bind(id)
        .fetch_all(self.db.read())
        .await?;
        rows.into_iter().map(wait_from).collect()
    }

    /// The batch job `id` belongs to, if any.
    ///
    /// # Errors
    /// A database failure.
    pub async fn batch_of(&self, id: i64) -> Result<Option<i64>, StorageError> {
        Ok(query("SELECT batch_id FROM job_batch_jobs WHERE job_id = $1")
            .bind(id)
            .scalar_optional(self.db.read())
            .await?)
    }

    /// What follows from jobs ending, in their transition's `tx`: batches count
    /// their members and release completion jobs; continuations are enqueued or
    /// deleted. Returns the continuations deleted here: they ended too, so the
    /// caller runs their hooks and settles them in turn.
    pub(crate) async fn settle_ended(
        &self,
        tx: &mut Tx,
        ended: &[Transition],
        now: Micros,
    ) -> Result<Vec<Transition>, StorageError> {
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        let ids = id_list(&ended.iter().map(|t| t.id).collect::<Vec<_>>());
        // Batches: count each member's first end only.
        let members: Vec<(i64, i64)> =
            query(format!("SELECT job_id, batch_id FROM job_batch_jobs WHERE job_id IN ({ids}) AND ended IS NULL"))
                .fetch_all(&mut *tx)
                .await?;
        if !members.is_empty() {
            // batch → (succeeded, dead, deleted), in id order so two transactions
            // lock batch rows in the same order (no deadlock on PostgreSQL).
            let mut per_batch = std::collections::BTreeMap::<i64, (i64, i64, i64)>::new();
            for (job_id, batch_id) in members {
                let Some(t) = ended.iter().find(|t| t.id == job_id) else { continue };
                let n = query("UPDATE job_batch_jobs SET ended = $1 WHERE job_id = $2 AND ended IS NULL")
                    .bind(t.state.as_str())
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?;
                if n == 0 {
                    continue;
                }
                let c = per_batch.entry(batch_id).or_default();
                match t.state {
                    JobState::Succeeded => c.0 += 1,
                    JobState::Dead => c.1 += 1,
                    _ => c.2 += 1,
                }
            }
            for (batch, (ok, dead, deleted)) in per_batch {
                query(
                    "UPDATE job_batches SET succeeded = succeeded + $1, dead = dead + $2, deleted = deleted + $3
                     WHERE id = $4",
                )
                .bind(ok)
                .bind(dead)
                .bind(deleted)
                .bind(batch)
                .execute(&mut *tx)
                .await?;
                self.finish_batch(tx, batch, now).await?;
            }
        }
        // Continuations.
        let waits: Vec<WaitTuple> = query(format!(
            "SELECT child_id, parent_id, on_end, decided_at FROM job_waits
             WHERE parent_id IN ({ids}) AND decided_at IS NULL ORDER BY child_id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut more = Vec::new();
        for w in waits {
            let w = wait_from(w)?;
            let Some(parent) = ended.iter().find(|t| t.id == w.parent_id) else { continue };
            if let Some(t) = self.decide(tx, &w, parent.state, now).await? {
                more.push(t);
            }
        }
        Ok(more)
    }

    /// Marks `batch` finished if its last member has ended and it was not
    /// already, releasing its completion job: the compare-and-set on
    /// `finished_at` makes that happen once.
    async fn finish_batch(&self, tx: &mut Tx, batch: i64, now: Micros) -> Result<(), StorageError> {
        let done: Option<(i64, i64, i64, i64, Option<i64>)> = query(
            "UPDATE job_batches SET finished_at = $1
             WHERE id = $2 AND finished_at IS NULL AND succeeded + dead + deleted >= total
             RETURNING total, succeeded, dead, deleted, completion_job_id",
        )
        .bind(now)
        .bind(batch)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((total, ok, dead, deleted, Some(job))) = done {
            let reason =
                format!("batch {batch} finished: {total} jobs, {ok} succeeded, {dead} dead, {deleted} deleted");
            self.release_waiting(tx, job, &reason, now).await?;
        }
        Ok(())
    }

    /// Decides continuation `w` now that its parent is in `parent_state` (final):
    /// enqueued when the condition holds, deleted otherwise (returned: it ended).
    async fn decide(
        &self,
        tx: &mut Tx,
        w: &Wait,
        parent_state: JobState,
        now: Micros,
    ) -> Result<Option<Transition>, StorageError> {
        query("UPDATE job_waits SET decided_at = $1 WHERE child_id = $2")
            .bind(now)
            .bind(w.child_id)
            .execute(&mut *tx)
            .await?;
        let parent = w.parent_id;
        if parent_state == JobState::Succeeded || w.on == ContinueOn::AnyEnd {
            self.release_waiting(tx, w.child_id, &format!("parent job {parent} {parent_state}"), now).await?;
            return Ok(None);
        }
        let how = if parent_state == JobState::Dead { "died" } else { "was deleted" };
        let reason = format!("parent job {parent} {how}; this continuation runs only on its success");
        let row: Option<(String, String, i32)> = query(
            "UPDATE jobs SET state = 'deleted', updated_at = $1, lease_expires_at = NULL
             WHERE id = $2 AND (state = 'awaiting' OR (state = 'scheduled' AND run_at = $3))
             RETURNING kind, args, attempt",
        )
        .bind(now)
        .bind(w.child_id)
        .bind(AWAITING)
        .fetch_optional(&mut *tx)
        .await?;
        // Already deleted by an admin: nothing left to decide.
        let Some((kind, args, attempt)) = row else { return Ok(None) };
        self.history(tx, w.child_id, JobState::Deleted, attempt, &reason, now).await?;
        Ok(Some(Transition { id: w.child_id, kind, args, state: JobState::Deleted, detail: Some(reason) }))
    }

    /// Enqueues a waiting job (continuation or completion job) now. Like
    /// [`Store::decide`] it also takes a job waiting the pre-1060 way
    /// (`scheduled` at [`AWAITING`]): during a rolling deploy an older process
    /// may still insert one after the migration ran.
    async fn release_waiting(&self, tx: &mut Tx, id: i64, reason: &str, now: Micros) -> Result<(), StorageError> {
        let attempt: Option<i32> = query(
            "UPDATE jobs SET state = 'enqueued', run_at = $1, updated_at = $1
             WHERE id = $2 AND (state = 'awaiting' OR (state = 'scheduled' AND run_at = $3)) RETURNING attempt",
        )
        .bind(now)
        .bind(id)
        .bind(AWAITING)
        .scalar_optional(&mut *tx)
        .await?;
        let Some(attempt) = attempt else { return Ok(()) };
        self.history(tx, id, JobState::Enqueued, attempt, reason, now).await?;
        let wake = self.wake.clone();
        tx.after_commit(move || wake.notify_waiters());
        Ok(())
    }

    async fn history(
        &self,
        tx: &mut Tx,
        id: i64,
        state: JobState,
        attempt: i32,
        reason: &str,
        now: Micros,
    ) -> Result<(), StorageError> {
        query("INSERT INTO job_history (job_id, state, at, attempt, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(state.as_str())
            .bind(now)
            .bind(attempt)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
