//! Recurring (cron) jobs, like Hangfire's `RecurringJob.AddOrUpdate`, with no
//! leader.
//!
//! # Declaring
//! An application declares its schedules in code at start
//! ([`Jobs::declare_recurring`]): a name, a cron expression (five fields, or six
//! with seconds first; parsed by `croner`), an IANA time zone (`jiff`, with the
//! time-zone database bundled), the job (kind and arguments), its queue, and the
//! missed-run policy. Declaring upserts the `job_recurring` row
//! (`migrations/*/jobs/1010_recurring.sql`): a new schedule waits for its first
//! fire time after now; a changed cron or zone restarts from now; otherwise
//! `next_run` is kept, so a restart neither skips nor repeats a fire time.
//!
//! # The table
//! `job_recurring(name, cron, time_zone, kind, args, queue, max_attempts, missed,
//! paused, next_run, last_run, last_job_id, …)`. The last job's state is read
//! through `last_job_id` from `jobs` when listing, never copied, so it cannot go
//! stale (it is empty once retention removed that job).
//!
//! # Exactly one job per fire time, without a leader
//! Every worker runs a scheduler ([`scheduler_loop`], about once a second, on the
//! engine's [`Clock`]). A pass reads the due schedules and, for each, in one
//! transaction: moves `next_run` forward with a compare-and-set on the value it
//! read (`UPDATE … WHERE name = $1 AND next_run = $old AND paused = 0`), and only
//! if that changed the row, enqueues the fire's job. Two schedulers that read the
//! same `next_run` race on that one row: PostgreSQL makes the second `UPDATE` wait
//! for the first to commit and then re-checks its `WHERE`, which no longer holds;
//! SQLite runs one writer at a time, so the second sees the new value. Either way
//! the loser changes nothing and enqueues nothing, and since the winner's enqueue
//! commits with its advance, a fire time is never advanced past without its job.
//! The job also carries the unique key `recurring:<name>:<fire time>` as a second
//! fence (a live duplicate would be refused).
//!
//! # Missed runs
//! After downtime (no scheduler ran when a fire time passed), [`MissedRuns::Once`],
//! the default, enqueues one job for the latest fire time that passed and moves
//! on to the first one in the future: a schedule that missed 180 ticks runs once,
//! not 180 times. [`MissedRuns::All`] backfills each missed fire time (at most
//! [`MAX_BACKFILL`] per pass, the rest in the next passes), for schedules whose
//! every run matters (graphile-worker's backfill).
//!
//! # Daylight-saving time
//! Fire times are computed in the schedule's zone by `croner`: a wall time that
//! does not exist (02:30 on the night clocks go forward) fires at the first instant
//! after the gap; a wall time that happens twice (02:30 when they go back) fires
//! once, at the first.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use croner::parser::CronParser;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::client::Jobs;
use crate::clock::{Clock, Micros};
use crate::error::StorageError;
use crate::job::Job;
use crate::storage::{Enqueued, Store};

/// Missed fire times one pass enqueues at most for a [`MissedRuns::All`] schedule.
pub const MAX_BACKFILL: usize = 100;

/// How often a worker's scheduler looks for due schedules by default.
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(1);

/// What a schedule does about fire times that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum MissedRuns {
    /// One job for the latest missed fire time, then on to the next one (default).
    #[default]
    Once,
    /// One job per missed fire time (backfill).
    All,
}

impl MissedRuns {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedRuns::Once => "once",
            MissedRuns::All => "all",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "once" => Some(MissedRuns::Once),
            "all" => Some(MissedRuns::All),
            _ => None,
        }
    }
}

/// A cron expression in a time zone: the fire times of a schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `cron` (five fields, or six with seconds first) in the IANA zone
    /// `time_zone`.
    ///
    /// # Errors
    /// [`StorageError::InvalidRecurring`] naming the field (`cron` or `time_zone`).
    pub fn parse(cron: &str, time_zone: &str) -> Result<Self, StorageError> {
        let parsed = CronParser::new().parse(cron.trim()).map_err(|e| StorageError::InvalidRecurring {
            field: "cron",
            message: format!("{cron:?} is not a cron expression: {e}"),
        })?;
        let tz = TimeZone::get(time_zone.trim()).map_err(|e| StorageError::InvalidRecurring {
            field: "time_zone",
            message: format!("{time_zone:?} is not a known time zone: {e}"),
        })?;
        Ok(Self { cron: parsed, tz })
    }

    /// The first fire time strictly after `at`; `None` when there is none (a
    /// pattern that never matches again).
    pub fn next_after(&self, at: Micros) -> Option<Micros> {
        let z = Timestamp::from_microsecond(at).ok()?.to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&z, false).ok()?;
        Some(next.timestamp().as_microsecond())
    }

    /// The latest fire time at or before `at`.
    pub fn latest_at_or_before(&self, at: Micros) -> Option<Micros> {
        let z = Timestamp::from_microsecond(at).ok()?.to_zoned(self.tz.clone());
        let prev = self.cron.find_previous_occurrence(&z, true).ok()?;
        Some(prev.timestamp().as_microsecond())
    }
}

/// A recurring job as declared in code.
#[derive(Debug, Clone)]
pub struct Recurring {
    /// Unique name (also in the jobs' unique keys).
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub time_zone: String,
    /// The job type.
    pub kind: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its queue.
    pub queue: String,
    /// Attempts per fired job (`None`: the job type's, else the engine's default).
    pub max_attempts: Option<u32>,
    /// What to do about fire times missed during downtime.
    pub missed: MissedRuns,
}

impl Recurring {
    /// A schedule named `name` enqueueing `job` at each fire time of `cron`, in UTC
    /// until [`Recurring::time_zone`] says otherwise.
    ///
    /// # Errors
    /// [`StorageError::InvalidRecurring`] for an empty name or a bad expression;
    /// [`StorageError::Serialize`] when the arguments do not serialize.
    pub fn new<J: Job>(name: &str, cron: &str, job: &J) -> Result<Self, StorageError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(StorageError::InvalidRecurring {
                field: "name",
                message: "a recurring job needs a name of 1 to 200 characters".into(),
            });
        }
        Schedule::parse(cron, "UTC")?;
        Ok(Self {
            name: name.to_owned(),
            cron: cron.trim().to_owned(),
            time_zone: "UTC".to_owned(),
            kind: J::KIND.to_owned(),
            args: serde_json::to_value(job)?,
            queue: J::QUEUE.to_owned(),
            max_attempts: J::MAX_ATTEMPTS,
            missed: MissedRuns::Once,
        })
    }

    /// Reads the expression in the IANA zone `tz` (`Europe/Berlin`).
    ///
    /// # Errors
    /// [`StorageError::InvalidRecurring`] (`time_zone`) for an unknown zone.
    pub fn time_zone(mut self, tz: &str) -> Result<Self, StorageError> {
        Schedule::parse(&self.cron, tz)?;
        self.time_zone = tz.trim().to_owned();
        Ok(self)
    }

    /// Fires into `queue` instead of the job type's.
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = queue.to_owned();
        self
    }

    /// Sets the missed-run policy.
    pub fn missed(mut self, missed: MissedRuns) -> Self {
        self.missed = missed;
        self
    }

    /// Its fire times.
    ///
    /// # Errors
    /// As [`Schedule::parse`].
    pub fn schedule(&self) -> Result<Schedule, StorageError> {
        Schedule::parse(&self.cron, &self.time_zone)
    }
}

/// A stored schedule, for the dashboard and `jobs.v1`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RecurringRow {
    /// Its name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The job type.
    pub kind: String,
    /// The arguments, as JSON text.
    pub args: String,
    /// The queue.
    pub queue: String,
    /// Attempts per fired job.
    pub max_attempts: i32,
    /// The missed-run policy (`once`, `all`).
    pub missed: String,
    /// 1 while paused.
    pub paused: i32,
    /// The next fire time.
    pub next_run: Micros,
    /// The last fire time (or manual trigger) that enqueued a job.
    pub last_run: Option<Micros>,
    /// The job it enqueued.
    pub last_job_id: Option<i64>,
    /// That job's state now (`None` once it was removed by retention).
    pub last_job_state: Option<String>,
}

impl RecurringRow {
    /// Whether the schedule is paused.
    pub fn is_paused(&self) -> bool {
        self.paused != 0
    }

    /// The missed-run policy.
    pub fn missed_runs(&self) -> MissedRuns {
        MissedRuns::parse(&self.missed).unwrap_or_default()
    }
}

/// The unique key of the job fired for `name` at `fire`.
pub fn fire_key(name: &str, fire: Micros) -> String {
    format!("recurring:{name}:{fire}")
}

/// What one schedule does at `now` when its `next_run` is due: the fire times to
/// enqueue (oldest first) and the next `next_run`. `None` when the pattern never
/// fires again (the schedule then stays as it is, logged).
pub(crate) fn plan(
    schedule: &Schedule,
    missed: MissedRuns,
    next_run: Micros,
    now: Micros,
) -> Option<(Vec<Micros>, Micros)> {
    match missed {
        MissedRuns::Once => {
            // The latest fire time that passed; never before next_run (a row's
            // next_run is itself a fire time unless the cron changed under it).
            let fire = schedule.latest_at_or_before(now).unwrap_or(next_run).max(next_run);
            Some((vec![fire], schedule.next_after(now)?))
        }
        MissedRuns::All => {
            let mut fires = vec![next_run];
            let mut next = schedule.next_after(next_run)?;
            while next <= now && fires.len() < MAX_BACKFILL {
                fires.push(next);
                next = schedule.next_after(next)?;
            }
            Some((fires, next))
        }
    }
}

impl Jobs {
    /// Declares recurring jobs (upserts their rows, see the module docs). Call at
    /// start in every process that declares them; schedules not declared are left
    /// alone (remove them with [`Jobs::remove_recurring`]).
    ///
    /// # Errors
    /// A definition is invalid (nothing is written then) or the database failed.
    pub async fn declare_recurring(&self, defs: &[Recurring]) -> Result<(), StorageError> {
        let now = self.clock().now();
        let mut rows = Vec::with_capacity(defs.len());
        for d in defs {
            let schedule = d.schedule()?;
            let next = schedule.next_after(now).ok_or_else(|| StorageError::InvalidRecurring {
                field: "cron",
                message: format!("{:?} never fires after now", d.cron),
            })?;
            let attempts = d.max_attempts.unwrap_or(self.default_max_attempts()).max(1);
            rows.push((d, next, attempts));
        }
        self.store().declare_recurring(&rows, now).await
    }

    /// Every stored schedule, by name.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_recurring(&self) -> Result<Vec<RecurringRow>, StorageError> {
        self.store().list_recurring().await
    }

    /// Stops a schedule from firing until [`Jobs::resume_recurring`].
    ///
    /// # Errors
    /// [`StorageError::RecurringNotFound`] or a database failure.
    pub async fn pause_recurring(&self, name: &str) -> Result<RecurringRow, StorageError> {
        self.store().pause_recurring(name, self.clock().now()).await
    }

    /// Lets a paused schedule fire again, from its first fire time after now (what
    /// passed while it was paused is not made up for).
    ///
    /// # Errors
    /// [`StorageError::RecurringNotFound`] or a database failure.
    pub async fn resume_recurring(&self, name: &str) -> Result<RecurringRow, StorageError> {
        self.store().resume_recurring(name, self.clock().now()).await
    }

    /// Enqueues one job of the schedule now, leaving its next fire time as it is;
    /// returns the job and the schedule as it is afterwards.
    ///
    /// # Errors
    /// [`StorageError::RecurringNotFound`] or a database failure.
    pub async fn trigger_recurring(&self, name: &str) -> Result<(Enqueued, RecurringRow), StorageError> {
        self.store().trigger_recurring(name, self.clock().now()).await
    }

    /// Deletes a schedule (its jobs stay). Declaring it again brings it back.
    ///
    /// # Errors
    /// [`StorageError::RecurringNotFound`] or a database failure.
    pub async fn remove_recurring(&self, name: &str) -> Result<(), StorageError> {
        self.store().remove_recurring(name).await
    }

    /// One scheduler pass at the clock's now: enqueues the jobs of every due
    /// schedule; returns how many. Workers run this on a tick; tests call it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn fire_due_recurring(&self) -> Result<usize, StorageError> {
        self.store().fire_due(self.clock().now()).await
    }
}

/// A worker's scheduler: a pass every `every` (±20 % so many workers do not move
/// in lockstep), each at the clock's now.
pub(crate) async fn scheduler_loop(store: Arc<Store>, clock: Arc<dyn Clock>, every: Duration, stop: CancellationToken) {
    loop {
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(every.mul_f64(jitter)) => {}
            _ = stop.cancelled() => return,
        }
        match store.fire_due(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(fired = n, "recurring jobs enqueued"),
            Err(e) => retry_warn!(e, "scheduler pass failed; retrying on the next tick"),
        }
    }
}

impl FromStr for MissedRuns {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MissedRuns::parse(s.trim()).ok_or_else(|| StorageError::InvalidRecurring {
            field: "missed",
            message: format!("{s:?} is not a missed-run policy (once, all)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        s.parse::<Timestamp>().expect("timestamp").as_microsecond()
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        assert!(matches!(
            Schedule::parse("not cron", "UTC"),
            Err(StorageError::InvalidRecurring { field: "cron", .. })
        ));
        assert!(matches!(
            Schedule::parse("0 * * * *", "Mars/Olympus"),
            Err(StorageError::InvalidRecurring { field: "time_zone", .. })
        ));
    }

    #[test]
    fn once_fires_the_latest_missed_time_and_moves_past_now() {
        let s = Schedule::parse("*/5 * * * *", "UTC").expect("parse");
        let (fires, next) =
            plan(&s, MissedRuns::Once, at("2026-01-01T00:05:00Z"), at("2026-01-01T03:07:00Z")).expect("plan");
        assert_eq!(fires, [at("2026-01-01T03:05:00Z")]);
        assert_eq!(next, at("2026-01-01T03:10:00Z"));
        let (fires, next) =
            plan(&s, MissedRuns::All, at("2026-01-01T00:05:00Z"), at("2026-01-01T00:20:00Z")).expect("plan");
        assert_eq!(fires.len(), 4);
        assert_eq!(next, at("2026-01-01T00:25:00Z"));
    }
}
