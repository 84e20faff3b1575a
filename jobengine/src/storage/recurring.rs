//! The `job_recurring` table's SQL, both backends (see [`crate::recurring`] for
//! the design: the compare-and-set on `next_run` that makes each fire time one
//! job).

use database::{Tx, query};

use super::{Enqueued, NewJob, Store};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::recurring::{Recurring, RecurringRow, Schedule, fire_key, plan};

/// The columns of a [`RecurringRow`], with its last job's state.
const SELECT: &str = "SELECT r.name, r.cron, r.time_zone, r.kind, r.args, r.queue, r.max_attempts, r.missed, r.paused,
        r.next_run, r.last_run, r.last_job_id, j.state AS last_job_state
     FROM job_recurring r LEFT JOIN jobs j ON j.id = r.last_job_id";

/// Due schedules one pass handles at most (the rest wait for the next pass).
const DUE_PER_PASS: i64 = 500;

impl Store {
    /// Upserts declared schedules, each with the first fire time after now
    /// (`(definition, next_run, max_attempts)`), in one transaction. An existing
    /// row keeps its `next_run` (and so its place in time) unless its cron or zone
    /// changed, and keeps its paused flag.
    pub(crate) async fn declare_recurring(
        &self,
        defs: &[(&Recurring, Micros, u32)],
        now: Micros,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin().await?;
        for (d, next, attempts) in defs {
            query(
                "INSERT INTO job_recurring (name, cron, time_zone, kind, args, queue, max_attempts, missed, paused,
                                            next_run, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10)
                 ON CONFLICT (name) DO UPDATE SET
                     next_run = CASE WHEN job_recurring.cron = excluded.cron
                                      AND job_recurring.time_zone = excluded.time_zone
                                     THEN job_recurring.next_run ELSE excluded.next_run END,
                     cron = excluded.cron, time_zone = excluded.time_zone, kind = excluded.kind,
                     args = excluded.args, queue = excluded.queue, max_attempts = excluded.max_attempts,
                     missed = excluded.missed, updated_at = excluded.updated_at",
            )
            .bind(&d.name)
            .bind(&d.cron)
            .bind(&d.time_zone)
            .bind(&d.kind)
            .bind(d.args.to_string())
            .bind(&d.queue)
            .bind(*attempts)
            .bind(d.missed.as_str())
            .bind(*next)
            .bind(now)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every schedule, by name.
    pub(crate) async fn list_recurring(&self) -> Result<Vec<RecurringRow>, StorageError> {
        Ok(query(format!("{SELECT} ORDER BY r.name")).fetch_all(self.db.read()).await?)
    }

    async fn recurring_in(&self, tx: &mut Tx, name: &str) -> Result<RecurringRow, StorageError> {
        query(format!("{SELECT} WHERE r.name = $1"))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StorageError::RecurringNotFound(name.to_owned()))
    }

    pub(crate) async fn pause_recurring(&self, name: &str, now: Micros) -> Result<RecurringRow, StorageError> {
        let mut tx = self.db.begin().await?;
        query("UPDATE job_recurring SET paused = 1, updated_at = $1 WHERE name = $2")
            .bind(now)
            .bind(name)
            .execute(&mut tx)
            .await?;
        let row = self.recurring_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub(crate) async fn resume_recurring(&self, name: &str, now: Micros) -> Result<RecurringRow, StorageError> {
        let mut tx = self.db.begin().await?;
        let row = self.recurring_in(&mut tx, name).await?;
        if row.is_paused() {
            let next = Schedule::parse(&row.cron, &row.time_zone)?.next_after(now).unwrap_or(row.next_run);
            query("UPDATE job_recurring SET paused = 0, next_run = $1, updated_at = $2 WHERE name = $3")
                .bind(next)
                .bind(now)
                .bind(name)
                .execute(&mut tx)
                .await?;
        }
        let row = self.recurring_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub(crate) async fn trigger_recurring(
        &self,
        name: &str,
        now: Micros,
    ) -> Result<(Enqueued, RecurringRow), StorageError> {
        let mut tx = self.db.begin().await?;
        let row = self.recurring_in(&mut tx, name).await?;
        let job = new_job(&row, format!("recurring:{name}:manual:{now}"), now)?;
        let e = self.enqueue_in(&mut tx, &job, now).await?;
        query("UPDATE job_recurring SET last_run = $1, last_job_id = $2, updated_at = $1 WHERE name = $3")
            .bind(now)
            .bind(e.id)
            .bind(name)
            .execute(&mut tx)
            .await?;
        let row = self.recurring_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok((e, row))
    }

    pub(crate) async fn remove_recurring(&self, name: &str) -> Result<(), StorageError> {
        let n = query("DELETE FROM job_recurring WHERE name = $1").bind(name).execute(self.db.write()).await?;
        if n == 0 {
            return Err(StorageError::RecurringNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// One scheduler pass at `now`; returns the jobs enqueued.
    ///
    /// # Errors
    /// The database failed.
    pub async fn fire_due(&self, now: Micros) -> Result<usize, StorageError> {
        // A read first: most passes find nothing due, and on SQLite a write
        // transaction takes the database's one write lock.
        let due: Vec<RecurringRow> =
            query(format!("{SELECT} WHERE r.paused = 0 AND r.next_run <= $1 ORDER BY r.next_run LIMIT {DUE_PER_PASS}"))
                .bind(now)
                .fetch_all(self.db.read())
                .await?;
        let mut fired = 0;
        for row in due {
            let schedule = match Schedule::parse(&row.cron, &row.time_zone) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(schedule = %row.name, error = %e, "skipping a recurring job this version cannot read");
                    continue;
                }
            };
            let Some((fires, next)) = plan(&schedule, row.missed_runs(), row.next_run, now) else {
                tracing::warn!(schedule = %row.name, cron = %row.cron, "recurring job never fires again");
                continue;
            };
            fired += self.fire(&row, &fires, next, now).await?;
        }
        Ok(fired)
    }

    /// Advances `row` from its `next_run` to `next` and enqueues `fires`, in one
    /// transaction, if no other scheduler advanced it first (then does nothing).
    async fn fire(
        &self,
        row: &RecurringRow,
        fires: &[Micros],
        next: Micros,
        now: Micros,
    ) -> Result<usize, StorageError> {
        let Some(&last) = fires.last() else { return Ok(0) };
        let mut tx = self.db.begin().await?;
        // The compare-and-set: only the scheduler that moves next_run from the
        // value it read may enqueue (see crate::recurring).
        let won = query(
            "UPDATE job_recurring SET next_run = $1, last_run = $2, updated_at = $3
             WHERE name = $4 AND next_run = $5 AND paused = 0",
        )
        .bind(next)
        .bind(last)
        .bind(now)
        .bind(&row.name)
        .bind(row.next_run)
        .execute(&mut tx)
        .await?;
        if won == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut last_id = None;
        let mut n = 0;
        for &fire in fires {
            let mut job = new_job(row, fire_key(&row.name, fire), now)?;
            job.run_at = Some(fire);
            let e = self.enqueue_in(&mut tx, &job, now).await?;
            if !e.existing {
                n += 1;
            }
            last_id = Some(e.id);
        }
        query("UPDATE job_recurring SET last_job_id = $1 WHERE name = $2")
            .bind(last_id)
            .bind(&row.name)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// The job a schedule enqueues, with `key` as its unique key.
fn new_job(row: &RecurringRow, key: String, now: Micros) -> Result<NewJob, StorageError> {
    Ok(NewJob {
        kind: row.kind.clone(),
        args: serde_json::from_str(&row.args)?,
        queue: row.queue.clone(),
        max_attempts: u32::try_from(row.max_attempts).unwrap_or(1).max(1),
        unique_key: Some(key),
        run_at: Some(now),
        // A schedule stores its job's kind, not its type, so the type's own
        // priority is not known here: the default.
        priority: 0,
    })
}
