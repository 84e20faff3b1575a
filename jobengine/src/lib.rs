//! A durable SQL job engine: our Hangfire.
//!
//! Jobs are rows in SQLite or PostgreSQL; they survive restarts, are retried with
//! exponential backoff, end in a dead-letter queue when their attempts run out, and
//! run again within seconds when the process running them dies. The engine knows
//! nothing of tenants or any other domain: applications define job types
//! ([`Job`]), register them ([`Registry`]), enqueue them ([`Jobs`]) — inside their
//! own transaction when the job must exist exactly when their write does — and run
//! a [`Worker`], in a process of its own or embedded in a server.
//!
//! Delivery is at least once: a job can run twice when its worker dies after the
//! work but before recording it, so handlers must be idempotent. Completions are
//! fenced on the claim (`lease_seq`), so a worker that lost its lease can never
//! overwrite the outcome of the attempt that replaced it.
//!
//! # Layout
//! - [`state`]: the lifecycle, one enum, with the state diagram;
//! - [`job`]: the [`Job`] trait, [`JobContext`] and [`JobError`];
//! - [`registry`]: job types by kind; unknown kinds and bad arguments fail cleanly;
//! - [`hooks`]: a job type's end hook, run inside the transition that ends it;
//! - [`client`]: [`Jobs`], to enqueue and to administer (counts, list, get,
//!   requeue, delete, trigger, workers);
//! - [`storage`]: the [`Store`] on the `database` handle: SQL both backends
//!   accept written once, a dialect per backend for the claim, completion and
//!   rescue (`migrations/{sqlite,postgres}/jobs`);
//! - [`worker`]: the fetch loop, heartbeats and graceful shutdown;
//!   [`completer`] batches outcomes; [`rescuer`] takes back expired leases and
//!   the jobs of workers [`liveness`] knows dead;
//! - [`retry`]: backoff; [`clock`]: time, injectable for tests; [`config`]:
//!   worker settings; [`metrics`]: Prometheus text; [`signals`]: SIGTERM/SIGINT
//!   as a cancellation token;
//! - [`builtin`]: diagnostic jobs (`diag.noop`, `diag.sleep`, `diag.fail`,
//!   `diag.ping`);
//! - [`recurring`]: cron schedules, one job per fire time with no leader;
//!   [`retention`]: the recurring sweep that removes finished jobs;
//!   [`cancel`]: how a running job learns it was deleted.

/// A failure of a loop that retries on its next tick: a warning, except while
/// the database is known down, when it is a debug line (the outage itself is
/// logged once when it begins and once when it ends; a warning from every loop
/// at every tick would bury that). `retry_warn!(e, worker = %id, "what failed")`.
macro_rules! retry_warn {
    ($e:expr, $($rest:tt)+) => {
        if $e.is_outage() {
            tracing::debug!(error = %$e, $($rest)+)
        } else {
            tracing::warn!(error = %$e, $($rest)+)
        }
    };
}

pub mod builtin;
pub mod cancel;
pub mod client;
pub mod clock;
pub mod completer;
pub mod config;
pub mod error;
pub mod hooks;
pub mod job;
pub mod liveness;
pub mod metrics;
pub mod recurring;
pub mod registry;
pub mod rescuer;
pub mod retention;
pub mod retry;
pub mod signals;
pub mod state;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use client::{DEFAULT_MAX_ATTEMPTS, JobDetail, Jobs};
pub use clock::{Clock, ManualClock, Micros, SystemClock};
pub use config::WorkerConfig;
pub use database::{Db, Tx};
pub use error::StorageError;
pub use hooks::{EndContext, Ended, OnEnd};
pub use job::{Job, JobContext, JobError};
pub use recurring::{MissedRuns, Recurring, RecurringRow};
pub use registry::Registry;
pub use state::JobState;
pub use storage::{
    BatchEnqueued, BatchRow, ContinueOn, Enqueued, HistoryRow, JobRow, ListQuery, NewJob, StateCounts, Store, Wait,
    WorkerRow,
};
pub use worker::Worker;

/// A registry with the diagnostic jobs every worker runs.
pub fn registry_with_builtins<C: Send + Sync + 'static>() -> Registry<C> {
    Registry::new()
        .register_standalone::<builtin::Noop>()
        .register_standalone::<builtin::Sleep>()
        .register_standalone::<builtin::Fail>()
        .register_standalone::<builtin::Ping>()
        .register_standalone::<builtin::Hold>()
        .register_standalone::<retention::Sweep>()
}
