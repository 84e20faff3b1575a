//! End hooks: a job type's reaction to its own end, inside the transition.
//!
//! Like Hangfire's state filters, a hook runs in the transaction that moves the
//! job to succeeded, dead or deleted, so what it writes (a tenant marked failed, a
//! notification) commits exactly when the job's new state does: a crash between
//! the two is impossible, and no sweep has to reconcile them later. Every path
//! that ends a job runs it: a worker's completion (succeeded, failed on the last
//! attempt, permanent error), the rescuer (interrupted too often), and an admin's
//! delete.
//!
//! A hook must be idempotent and quick (it holds the transition's transaction;
//! on SQLite, the one write lock) and must only use the transaction it is given.
//! When it fails, the transition does not happen: the completion is retried (and,
//! should the hook keep failing, the job runs again once its lease expires), the
//! rescuer tries again on its next pass, a delete answers with the error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use database::Tx;
use futures::future::BoxFuture;

use crate::clock::Micros;
use crate::job::Job;
use crate::state::JobState;
use crate::storage::Transition;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Its last attempt succeeded.
    Succeeded,
    /// Dead-lettered: failed on its last attempt, failed permanently, or was
    /// interrupted too often.
    Dead {
        /// The failure's outermost message.
        error: String,
    },
    /// Deleted by an admin (a running attempt is told to stop).
    Deleted {
        /// The history's reason, naming who deleted it ("deleted by …").
        reason: String,
    },
}

/// What an end hook gets besides the job's arguments.
pub struct EndContext<'a, C> {
    /// The application's context.
    pub app: &'a C,
    /// The transition's transaction: write here, nowhere else.
    pub tx: &'a mut Tx,
    /// The job.
    pub job_id: i64,
    /// How it ended.
    pub ended: Ended,
    /// The transition's time.
    pub now: Micros,
}

/// A job type that reacts to its own end (register it with
/// [`Registry::on_end`](crate::Registry::on_end)).
pub trait OnEnd: Job {
    /// Runs inside the transaction that ends the job (see the module docs).
    fn on_end(self, end: EndContext<'_, Self::Context>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A type's hook, type-erased: decodes the arguments and runs [`OnEnd::on_end`].
pub(crate) type EndFn<C> = for<'a> fn(&'a str, EndContext<'a, C>) -> BoxFuture<'a, anyhow::Result<()>>;

/// The [`EndFn`] of `J`.
pub(crate) fn end_fn<'a, J: OnEnd>(
    args: &'a str,
    end: EndContext<'a, J::Context>,
) -> BoxFuture<'a, anyhow::Result<()>> {
    let decoded = serde_json::from_str::<J>(args)
        .with_context(|| format!("cannot decode the arguments of a {:?} job for its end hook", J::KIND));
    Box::pin(async move { decoded?.on_end(end).await })
}

/// The hooks the store runs, with their application context.
#[async_trait]
pub(crate) trait Hooks: Send + Sync + 'static {
    /// Whether jobs of `kind` have a hook (others skip the call).
    fn wants(&self, kind: &str) -> bool;
    /// Runs the hook of the job that made transition `t`.
    async fn run(&self, tx: &mut Tx, t: &Transition, now: Micros) -> anyhow::Result<()>;
}

/// A registry's hooks bound to the context they run with.
pub(crate) struct Bound<C> {
    pub(crate) ends: HashMap<&'static str, EndFn<C>>,
    pub(crate) app: Arc<C>,
}

#[async_trait]
impl<C: Send + Sync + 'static> Hooks for Bound<C> {
    fn wants(&self, kind: &str) -> bool {
        self.ends.contains_key(kind)
    }

    async fn run(&self, tx: &mut Tx, t: &Transition, now: Micros) -> anyhow::Result<()> {
        let Some(f) = self.ends.get(t.kind.as_str()) else { return Ok(()) };
        let detail = t.detail.clone().unwrap_or_default();
        let ended = match t.state {
            JobState::Succeeded => Ended::Succeeded,
            JobState::Dead => Ended::Dead { error: detail },
            JobState::Deleted => Ended::Deleted { reason: detail },
            _ => return Ok(()),
        };
        f(&t.args, EndContext { app: &self.app, tx, job_id: t.id, ended, now })
            .await
            .with_context(|| format!("the end hook of {:?} job {}", t.kind, t.id))
    }
}
