//! The job types a worker can run, looked up by their stored `kind`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::anyhow;
use futures::future::BoxFuture;

use crate::hooks::{Bound, EndFn, Hooks, OnEnd, end_fn};
use crate::job::{Job, JobContext, JobError};

type Handler<C> = Arc<dyn Fn(&str, JobContext<C>) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// Job types by kind, all sharing the application context `C`, with the end
/// hooks of those that have one.
pub struct Registry<C> {
    handlers: HashMap<&'static str, Handler<C>>,
    ends: HashMap<&'static str, EndFn<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self { handlers: HashMap::new(), ends: HashMap::new() }
    }
}

impl<C> Clone for Registry<C> {
    fn clone(&self) -> Self {
        Self { handlers: self.handlers.clone(), ends: self.ends.clone() }
    }
}

impl<C: Send + Sync + 'static> Registry<C> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job type whose handler uses the application context.
    ///
    /// # Panics
    /// If another type already registered the same `KIND` (a programming error
    /// caught at start-up, not at run time).
    pub fn register<J: Job<Context = C>>(mut self) -> Self {
        let h: Handler<C> = Arc::new(|args, ctx| {
            let decoded = decode::<J>(args);
            Box::pin(async move { decoded?.run(ctx).await })
        });
        self.insert(J::KIND, h);
        self
    }

    /// Adds a job type that needs no application context (diagnostics).
    ///
    /// # Panics
    /// As [`Registry::register`].
    pub fn register_standalone<J: Job<Context = ()>>(mut self) -> Self {
        let h: Handler<C> = Arc::new(|args, ctx| {
            let decoded = decode::<J>(args);
            let ctx = ctx.with_app(Arc::new(()));
            Box::pin(async move { decoded?.run(ctx).await })
        });
        self.insert(J::KIND, h);
        self
    }

    /// Adds the end hook of a registered job type (see [`crate::hooks`]).
    ///
    /// # Panics
    /// If the type has no handler registered yet, or a hook already.
    pub fn on_end<J: OnEnd<Context = C>>(mut self) -> Self {
        assert!(self.handlers.contains_key(J::KIND), "register job kind {:?} before its end hook", J::KIND);
        assert!(self.ends.insert(J::KIND, end_fn::<J>).is_none(), "end hook of {:?} registered twice", J::KIND);
        self
    }

    /// The end hooks bound to the context they run with.
    pub(crate) fn bind_hooks(&self, app: Arc<C>) -> Arc<dyn Hooks> {
        Arc::new(Bound { ends: self.ends.clone(), app })
    }

    fn insert(&mut self, kind: &'static str, h: Handler<C>) {
        assert!(self.handlers.insert(kind, h).is_none(), "job kind {kind:?} registered twice");
    }

    /// The kinds registered.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Starts one attempt of a stored job. An unknown kind or arguments that do not
    /// decode fail permanently: no retry can fix them (an admin can requeue once a
    /// worker that knows the type is deployed).
    pub(crate) fn run(&self, kind: &str, args: &str, ctx: JobContext<C>) -> BoxFuture<'static, Result<(), JobError>> {
        match self.handlers.get(kind) {
            Some(h) => h(args, ctx),
            None => {
                let known: Vec<_> = {
                    let mut k: Vec<_> = self.kinds().collect();
                    k.sort_unstable();
                    k
                };
                let err = anyhow!("unknown job type {kind:?}: this worker runs {}", known.join(", "));
                Box::pin(async move { Err(JobError::permanent(err)) })
            }
        }
    }
}

fn decode<J: Job>(args: &str) -> Result<J, JobError> {
    serde_json::from_str(args).map_err(|e| {
        JobError::permanent(
            anyhow::Error::new(e).context(format!("cannot decode the arguments of a {:?} job", J::KIND)),
        )
    })
}
