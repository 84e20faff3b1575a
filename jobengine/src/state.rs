//! The job lifecycle.
//!
//! ```text
//!                  enqueue (run_at <= now)            enqueue (run_at > now)
//!                        │                                    │
//!                        ▼            fetch (lease)           ▼
//!   requeue ──────► ENQUEUED ─────────────────────┐      SCHEDULED ◄───────┐
//!   trigger ──────►    ▲                          │           │            │
//!   rescue (lease      │                          ▼     fetch when due     │ failed, attempts left
//!   expired, attempts  └──────────────────── PROCESSING ◄─────┘            │ (retry at now + backoff)
//!   left) / release                               │ │ │                    │
//!                                                 │ │ └────────────────────┘
//!                                    succeeded ◄──┘ └──► DEAD (failed on the last attempt,
//!                                                            permanent error, or lease expired
//!                                                            on the last attempt)
//!   delete: any state but DELETED ──► DELETED
//!
//!   enqueue_after (continuation) / a batch's completion job
//!                        │
//!                        ▼          the parent ends (its transition's transaction):
//!                    AWAITING ───── condition holds ──► ENQUEUED
//!                        │   └───── it does not ──────► DELETED (with the reason)
//!                        └── delete (admin) ──────────► DELETED
//! ```
//!
//! An awaiting job has no due time, so no claim, index walk or "trigger now" can
//! start it early; only its parent's end (or, for a batch's completion job, the
//! batch's last member's end) moves it on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. Stored as lower-case text in the `jobs.state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to run as soon as a worker is free. In: enqueue, requeue, trigger,
    /// the rescuer (lease expired with attempts left), release at shutdown.
    /// Out: fetched by a worker (→ processing), delete.
    Enqueued,
    /// A worker holds a lease on the job and is running it. In: fetch. Out: the
    /// worker's fenced completion (→ succeeded, scheduled or dead), the rescuer when
    /// the lease expires, delete.
    Processing,
    /// Waiting until `run_at`: a delayed job or a retry after a failure. In: enqueue
    /// with a future `run_at`, a failed attempt with attempts left. Out: fetched once
    /// due, trigger (run now), delete.
    Scheduled,
    /// Waiting for another job to end: a continuation (`enqueue_after`) or a
    /// batch's completion job. In: inserted so. Out: its parent's end transition
    /// (→ enqueued, or deleted when the condition fails), delete. Not due, never
    /// claimed, never pruned; trigger and requeue refuse it (it would run before
    /// what it waits for).
    Awaiting,
    /// Ran to completion. Terminal unless an admin requeues it.
    Succeeded,
    /// The dead-letter queue: failed on its last attempt or with a permanent error.
    /// Terminal unless an admin requeues it (attempts start again from zero).
    Dead,
    /// Removed by an admin; kept for the record and never run. Requeue brings it back.
    Deleted,
}

impl JobState {
    /// `states` as an SQL list of string literals (`'a', 'b'`), to format into
    /// a statement: the names are ours, never the caller's.
    pub(crate) fn sql_list(states: impl IntoIterator<Item = JobState>) -> String {
        states.into_iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
    }

    /// Every state, in display order.
    pub const ALL: [JobState; 7] = [
        JobState::Enqueued,
        JobState::Processing,
        JobState::Scheduled,
        JobState::Awaiting,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Deleted,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Enqueued => "enqueued",
            JobState::Processing => "processing",
            JobState::Scheduled => "scheduled",
            JobState::Awaiting => "awaiting",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Deleted => "deleted",
        }
    }

    /// Whether a job in this state may still run (it holds its unique key).
    pub fn is_live(self) -> bool {
        matches!(self, JobState::Enqueued | JobState::Processing | JobState::Scheduled | JobState::Awaiting)
    }

    /// Whether a job in this state has ended (its type's end hook runs on entry).
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Dead | JobState::Deleted)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of ours (a corrupt row or a newer schema).
#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl TryFrom<String> for JobState {
    type Error = UnknownState;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        }
        assert!("running".parse::<JobState>().is_err());
    }
}
