//! The engine's SQL that both backends accept, written once.

use database::{Tx, query};

use super::{AdminOp, Enqueued, HistoryRow, JobRow, NewJob, Store, Transition, WorkerRow};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

impl Store {
    /// Opens a transaction for the caller's own writes plus [`Store::enqueue_in`].
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin(&self) -> Result<Tx, StorageError> {
        Ok(self.db.begin().await?)
    }

    /// Inserts a job in the caller's transaction (or returns the live job holding
    /// its unique key); this process's workers are woken once `tx` commits.
    ///
    /// # Errors
    /// A database failure.
    pub async fn enqueue_in(&self, tx: &mut Tx, job: &NewJob, now: Micros) -> Result<Enqueued, StorageError> {
        let mut out = self.enqueue_many_in(tx, std::slice::from_ref(job), now).await?;
        out.pop().ok_or_else(|| StorageError::Corrupt("an insert of one job returned nothing".into()))
    }

    /// Inserts `jobs` in the caller's transaction, in one statement per batch
    /// (PostgreSQL: one; SQLite: one per chunk under its variable limit), their
    /// history rows likewise; per job, in order, its id or the live job holding
    /// its unique key. This process's workers are woken once, when `tx` commits.
    ///
    /// # Errors
    /// A database failure.
    pub async fn enqueue_many_in(
        &self,
        tx: &mut Tx,
        jobs: &[NewJob],
        now: Micros,
    ) -> Result<Vec<Enqueued>, StorageError> {
        let ids = self.dialect.insert(tx, jobs, now).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for (job, id) in jobs.iter().zip(ids) {
            if let Some(id) = id {
                out.push(Enqueued { id, existing: false });
                continue;
            }
            // Rare: a live job held the key (perhaps one earlier in this batch).
            let key = job.unique_key.clone().unwrap_or_default();
            let id: Option<i64> =
                query("SELECT id FROM jobs WHERE unique_key = $1 AND state IN ('enqueued', 'scheduled', 'processing', 'awaiting')")
                    .bind(&key)
                    .scalar_optional(&mut *tx)
                    .await?;
            out.push(id.map(|id| Enqueued { id, existing: true }).ok_or(StorageError::UniqueKeyTaken(key))?);
        }
        if out.iter().any(|e| !e.existing) {
            let wake = self.wake.clone();
            tx.after_commit(move || wake.notify_waiters());
        }
        Ok(out)
    }

    /// Inserts `jobs` as [`Store::enqueue_many_in`] does, in a transaction of
    /// their own; on PostgreSQL a batch without unique keys is one statement with
    /// no `BEGIN` and `COMMIT` around it (two round trips fewer between an
    /// enqueue and its job starting).
    ///
    /// # Errors
    /// A database failure (then none is enqueued).
    pub async fn enqueue_many(&self, jobs: &[NewJob], now: Micros) -> Result<Vec<Enqueued>, StorageError> {
        if let Some(ids) = self.dialect.insert_alone(jobs, now).await? {
            if !ids.is_empty() {
                self.wake.notify_waiters();
            }
            return Ok(ids.into_iter().map(|id| Enqueued { id, existing: false }).collect());
        }
        let mut tx = self.begin().await?;
        let out = self.enqueue_many_in(&mut tx, jobs, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Records the step a running job reached; false if the lease is no longer held.
    ///
    /// # Errors
    /// A database failure.
    pub async fn set_progress(&self, id: i64, lease_seq: i64, step: &str, now: Micros) -> Result<bool, StorageError> {
        let n = query(
            "UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3 AND lease_seq = $4 AND state = 'processing'",
        )
        .bind(step)
        .bind(now)
        .bind(id)
        .bind(lease_seq)
        .execute(self.db.write())
        .await?;
        Ok(n == 1)
    }

    /// One job and its history, oldest transition first, from one snapshot.
    ///
    /// # Errors
    /// A database failure.
    pub async fn get(&self, id: i64) -> Result<Option<(JobRow, Vec<HistoryRow>)>, StorageError> {
        // One snapshot, so the job's state and its history always agree.
        let mut tx = self.db.begin_read().await?;
        let Some(job) = query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional::<JobRow>(&mut tx).await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let history =
            query("SELECT * FROM job_history WHERE job_id = $1 ORDER BY id").bind(id).fetch_all(&mut tx).await?;
        tx.rollback().await?;
        let history = HistoryRow::complete(&job, history);
        Ok(Some((job, history)))
    }

    /// Applies an admin operation, recording `reason` in the history; a delete
    /// runs the job type's end hook in the same transaction.
    ///
    /// # Errors
    /// Not found, in a state the operation does not apply to, its unique key
    /// taken by a live job, a failing hook, or a database failure.
    pub async fn admin(&self, id: i64, op: AdminOp, reason: &str, now: Micros) -> Result<JobRow, StorageError> {
        let states = JobState::sql_list(op.allowed_from().iter().copied());
        let set = match op {
            AdminOp::Requeue => {
                "state = 'enqueued', attempt = 0, run_at = $1, updated_at = $1, finished_at = NULL,
                 lease_expires_at = NULL, progress = NULL"
            }
            AdminOp::Trigger => "state = 'enqueued', run_at = $1, updated_at = $1",
            AdminOp::Delete => "state = 'deleted', updated_at = $1, lease_expires_at = NULL",
        };
        let mut tx = self.db.begin().await?;
        let updated: Option<JobRow> =
            match query(format!("UPDATE jobs SET {set} WHERE id = $2 AND state IN ({states}) RETURNING *"))
                .bind(now)
                .bind(id)
                .fetch_optional(&mut tx)
                .await
            {
                Ok(row) => row,
                Err(e) if e.is_unique_violation() => {
                    let key: Option<String> = query("SELECT unique_key FROM jobs WHERE id = $1")
                        .bind(id)
                        .scalar_optional::<Option<String>>(&mut tx)
                        .await
                        .ok()
                        .flatten()
                        .flatten();
                    return Err(StorageError::UniqueKeyTaken(key.unwrap_or_default()));
                }
                Err(e) => return Err(e.into()),
            };
        let Some(updated) = updated else {
            let state: Option<String> =
                query("SELECT state FROM jobs WHERE id = $1").bind(id).scalar_optional(&mut tx).await?;
            tx.rollback().await?;
            return match state {
                None => Err(StorageError::NotFound(id)),
                Some(s) => Err(StorageError::WrongState {
                    id,
                    op: op.verb(),
                    state: JobState::try_from(s).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                }),
            };
        };
        query("INSERT INTO job_history (job_id, state, at, attempt, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(op.target().as_str())
            .bind(now)
            .bind(updated.attempt)
            .bind(reason)
            .execute(&mut tx)
            .await?;
        if op == AdminOp::Delete {
            let t = Transition {
                id,
                kind: updated.kind.clone(),
                args: updated.args.clone(),
                state: JobState::Deleted,
                detail: Some(reason.to_owned()),
            };
            self.run_hooks(&mut tx, std::slice::from_ref(&t), now).await?;
            // Workers in this process cancel the attempt at once (see crate::cancel).
            let cancels = self.cancels.clone();
            tx.after_commit(move || {
                let _ = cancels.send(id);
            });
        }
        if op.target() == JobState::Enqueued {
            let wake = self.wake.clone();
            tx.after_commit(move || wake.notify_waiters());
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Inserts or refreshes a worker's registry row.
    ///
    /// # Errors
    /// A database failure.
    pub async fn register_worker(&self, w: &WorkerRow) -> Result<(), StorageError> {
        query(
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
        .execute(self.db.write())
        .await?;
        Ok(())
    }

    /// Records a worker's heartbeat.
    ///
    /// # Errors
    /// A database failure.
    pub async fn worker_heartbeat(&self, id: &str, now: Micros, running: u32) -> Result<(), StorageError> {
        query("UPDATE job_workers SET last_heartbeat = $1, running = $2 WHERE id = $3")
            .bind(now)
            .bind(running)
            .bind(id)
            .execute(self.db.write())
            .await?;
        Ok(())
    }

    /// Removes a worker's registry row (clean shutdown).
    ///
    /// # Errors
    /// A database failure.
    pub async fn deregister_worker(&self, id: &str) -> Result<(), StorageError> {
        query("DELETE FROM job_workers WHERE id = $1").bind(id).execute(self.db.write()).await?;
        Ok(())
    }

    /// Workers whose last heartbeat is at or after `since`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn workers(&self, since: Micros) -> Result<Vec<WorkerRow>, StorageError> {
        Ok(query("SELECT * FROM job_workers WHERE last_heartbeat >= $1 ORDER BY started_at")
            .bind(since)
            .fetch_all(self.db.read())
            .await?)
    }

    /// Removes registry rows of workers silent since before `before`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn prune_workers(&self, before: Micros) -> Result<u64, StorageError> {
        Ok(query("DELETE FROM job_workers WHERE last_heartbeat < $1").bind(before).execute(self.db.write()).await?)
    }
}
