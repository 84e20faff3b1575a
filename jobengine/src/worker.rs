//! The worker: fetches due jobs, runs up to `concurrency` at once, keeps their
//! leases alive, records outcomes, rescues jobs of dead workers, and shuts down
//! gracefully.
//!
//! # Tasks of one worker
//! - the **fetch loop** (in [`Worker::run`]): waits for room, claims up to as
//!   many jobs as there is room for and hands them to the starter; when a claim
//!   finds fewer than it asked for (nothing more is due) it sleeps until woken
//!   (an enqueue in this process, `NOTIFY` on PostgreSQL, a commit to the file
//!   on SQLite, a rescue), until the next
//!   scheduled job falls due, or until the poll interval passes. The room is the
//!   free slots **plus a small prefetch buffer** ([`WorkerConfig::prefetch`], by
//!   default twice `concurrency`): a job claimed ahead waits in the
//!   worker for a slot, so a freed slot starts the next job at once instead of
//!   after a claim's round trip, and the next claim runs while the buffered jobs
//!   do. Without it a busy worker was bound by round trips: at concurrency 10
//!   each slot waited about 3 ms (one claim) per job, about 3,000 jobs/s whatever
//!   the database could do (and a claim sent as the previous one returned
//!   found only the room that one's jobs had left, about half). Buffered jobs are `processing` with a lease like
//!   running ones (the dashboard counts them as processing; `attempted_at` is
//!   their claim), so the heartbeat renews them, the rescuer takes them back from
//!   a dead worker and the fence refuses a stale completion as for any attempt.
//!   The buffer is filled in priority order and emptied first in, first out, and
//!   it is small, so a higher-priority job enqueued later waits behind at most
//!   `prefetch` jobs that are about to start. A capped queue's buffered job holds
//!   its queue slot already, so it never waits on its cap. The buffer is used
//!   only while the worker's attempts are short ([`PREFETCH_BELOW`] on
//!   average): with long jobs a worker claims for its free slots only, so work
//!   is not held by a busy worker while another is idle;
//! - the **starter** ([`Starter::dispatch`]): starts claimed jobs in claim order
//!   as slots free, one task per job;
//! - the **heartbeat** ([`heartbeat_loop`]): every `heartbeat`, renews the leases
//!   of the jobs it holds in one statement (running, buffered, and finished ones
//!   whose outcomes have waited half a heartbeat for the completer's next batch); a job whose lease was lost (rescued after
//!   a long pause, deleted by an admin) is cancelled here, since someone else owns it
//!   now; also refreshes the worker's registry row;
//! - the **completer** ([`crate::completer`]): writes outcomes in batches, so a
//!   busy worker spends one transaction per batch instead of one per job;
//! - the **rescuer** ([`crate::rescuer`]): takes back jobs whose lease expired;
//! - the **scheduler** ([`crate::recurring`]): enqueues due recurring jobs;
//! - the **canceller** ([`crate::cancel`]): cancels attempts of jobs an admin
//!   deleted while they ran.
//!
//! # Shutdown
//! When `shutdown` fires: stop fetching; release the buffered jobs (claimed ahead,
//! not started) to the queue at once, in their place (`run_at` kept) and with no
//! attempt counted; give running jobs `grace` to finish; then cancel the rest and
//! release them to the queue (their attempt not counted); flush the completer;
//! remove the registry row.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cancel::cancel_loop;
use crate::client::Jobs;
use crate::clock::{Clock, micros};
use crate::completer::{MAX_UNRECORDED, Pending, completer_loop};
use crate::config::WorkerConfig;
use crate::error::StorageError;
use crate::job::{JobContext, JobError};
use crate::liveness::Alive;
use crate::metrics::Metrics;
use crate::recurring::{Recurring, scheduler_loop};
use crate::registry::Registry;
use crate::rescuer::rescuer_loop;
use crate::retry::Backoff;
use crate::storage::{Completion, JobRow, Outcome, Release, Store, WorkerRow};

/// What a claimed job holds from its claim to the end of its attempt: a place in
/// the worker's room (slots plus prefetch buffer) and, in a capped queue, one of
/// that queue's slots; both are given back when the attempt ends. (The slot it
/// runs in is taken when it starts.)
struct Slots {
    /// Held, never read: dropping it gives the place back.
    _room: OwnedSemaphorePermit,
    queue: Option<OwnedSemaphorePermit>,
}

/// Where a fetch looks: each capped queue on its own, within its free slots, then
/// the uncapped queues together (one claim, as without caps).
struct FetchPlan {
    capped: Vec<(String, Arc<Semaphore>)>,
    shared: Vec<String>,
    /// Signalled when a capped queue's slot is given back, so a worker waiting
    /// only on a full queue fetches again at once rather than at the next poll.
    freed: Arc<Notify>,
}

impl FetchPlan {
    fn new(cfg: &WorkerConfig) -> Self {
        let cap = |q: &String| cfg.queue_limits.iter().find(|(name, _)| name == q).map(|(_, n)| (*n).max(1));
        let capped = cfg
            .queues
            .iter()
            .filter_map(|q| cap(q).filter(|n| *n < cfg.concurrency).map(|n| (q.clone(), Arc::new(Semaphore::new(n)))))
            .collect::<Vec<_>>();
        let shared = cfg.queues.iter().filter(|q| !capped.iter().any(|(c, _)| c == *q)).cloned().collect();
        Self { capped, shared, freed: Arc::new(Notify::new()) }
    }

    /// The queues as the registry shows them: a capped one with its cap.
    fn describe(&self, queues: &[String]) -> String {
        let shown: Vec<String> = queues
            .iter()
            .map(|q| match self.capped.iter().find(|(c, _)| c == q) {
                Some((_, sem)) => format!("{q} (max {})", sem.available_permits()),
                None => q.clone(),
            })
            .collect();
        shown.join(",")
    }
}

/// A job this worker holds: running, or claimed ahead and waiting for a slot.
pub(crate) struct Running {
    /// The fence it was claimed with.
    pub(crate) lease_seq: i64,
    /// Whether its handler started; until then it is in the prefetch buffer and
    /// shutdown releases it at once rather than after the grace.
    pub(crate) started: bool,
    /// Asks the handler to stop.
    pub(crate) cancel: CancellationToken,
    /// Stops the task outright.
    pub(crate) abort: Option<AbortHandle>,
}

pub(crate) type RunningMap = Arc<Mutex<HashMap<i64, Running>>>;

/// Below this mean attempt time the worker claims ahead; at or above it, only
/// for its free slots. A buffered job waits for a slot: for jobs of a few
/// milliseconds that wait is shorter than the claim's round trip it saves, but a
/// buffer of long jobs (a tenant's provisioning takes seconds) would hold work
/// in one worker while another sits idle.
const PREFETCH_BELOW: Duration = Duration::from_millis(20);

/// How long this worker's attempts take lately, and a signal at each end.
struct Pace {
    /// Mean attempt time in microseconds (exponentially weighted, 1/8 per
    /// attempt); 0 until the first attempt ends, so a fresh worker claims ahead.
    mean_us: AtomicU64,
    /// Notified when an attempt ends (a slot frees).
    ended: Notify,
}

impl Pace {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.mean_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
            Some(if m == 0 { us.max(1) } else { m - m / 8 + us / 8 })
        });
        self.ended.notify_waiters();
    }

    /// Whether jobs end fast enough for a buffer to pay.
    fn short(&self) -> bool {
        self.mean_us.load(Ordering::Relaxed) < PREFETCH_BELOW.as_micros() as u64
    }
}

/// A claimed job on its way to the starter.
struct Claimed {
    job: JobRow,
    held: Slots,
    cancel: CancellationToken,
}

/// A job runner, embeddable in any process.
pub struct Worker<C> {
    id: Arc<str>,
    config: WorkerConfig,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry<C>>,
    app: Arc<C>,
}

/// A unique id for this worker: host, process, and a random suffix so two
/// workers in one process (or a restarted process reusing a pid) differ.
fn new_worker_id() -> String {
    let host = hostname();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

/// The machine's name (portable, unlike reading `/proc`), for worker ids.
pub(crate) fn hostname() -> String {
    ::hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl<C: Send + Sync + 'static> Worker<C> {
    /// A worker running the jobs in `registry` against `jobs`'s storage. Also
    /// installs the registry's end hooks on `jobs` (see [`Jobs::install_end_hooks`]).
    pub fn new(jobs: &Jobs, registry: Registry<C>, app: Arc<C>, config: WorkerConfig) -> Self {
        jobs.install_end_hooks(&registry, app.clone());
        Self {
            id: new_worker_id().into(),
            config,
            store: jobs.store().clone(),
            clock: jobs.clock().clone(),
            metrics: jobs.metrics().clone(),
            registry: Arc::new(registry),
            app,
        }
    }

    /// How long an idle worker sleeps when nothing wakes it: until the next
    /// scheduled job falls due, or `poll`, whichever is sooner (a due time is
    /// met within a millisecond or two rather than up to a poll late).
    async fn idle_wait(&self, poll: Duration) -> Duration {
        let now = self.clock.now();
        match self.store.next_due(&self.config.queues, now).await {
            Ok(Some(due)) => poll.min(Duration::from_micros(u64::try_from(due - now).unwrap_or(0))),
            Ok(None) => poll,
            Err(e) => {
                tracing::debug!(worker = %self.id, error = %e, "reading the next due time failed; polling");
                poll
            }
        }
    }

    /// This worker's id, as recorded in job history.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` fires, then shuts down gracefully.
    ///
    /// # Errors
    /// A recurring definition is invalid, or the database refused the worker's
    /// registration for a reason a retry cannot mend. While the database is out
    /// of reach (a restart during the start, say) the start is retried with
    /// backoff; later database errors are logged and retried, never fatal.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StorageError> {
        let cfg = &self.config;
        let plan = FetchPlan::new(cfg);
        let mut declared = cfg.recurring.clone();
        if let Some(retention) = &cfg.retention {
            declared.push(retention.recurring()?);
        }
        let mut delays = database::backoff::retry_delays(cfg.poll);
        let alive = loop {
            match self.start(&plan, &declared).await {
                Ok(alive) => break alive,
                Err(e) if e.is_unavailable() => {
                    retry_warn!(e, worker = %self.id, "the database is out of reach; starting again");
                    tokio::select! {
                        () = tokio::time::sleep(delays.next().unwrap_or(database::backoff::MAX_DELAY)) => {}
                        () = shutdown.cancelled() => {
                            // Registered perhaps, never claimed: nothing to hand back.
                            let _ = self.store.deregister_worker(&self.id).await;
                            return Ok(());
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(worker = %self.id, concurrency = cfg.concurrency, queues = ?cfg.queues, "worker started");

        let running: RunningMap = Arc::default();
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
        let unrecorded = Arc::new(Semaphore::new(MAX_UNRECORDED));
        let pending: Pending = Arc::default();
        let completer = tokio::spawn(completer_loop(
            self.store.clone(),
            self.clock.clone(),
            done_rx,
            self.metrics.clone(),
            unrecorded.clone(),
            pending.clone(),
        ));
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.id.clone(),
            self.store.clone(),
            self.clock.clone(),
            Held { running: running.clone(), pending: pending.clone() },
            cfg.clone(),
            background.clone(),
        ));
        let rescuer = tokio::spawn(rescuer_loop(
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            cfg.clone(),
            background.clone(),
        ));

        let canceller = tokio::spawn(cancel_loop(
            self.id.clone(),
            self.store.clone(),
            running.clone(),
            cfg.poll,
            background.clone(),
        ));
        let scheduler = tokio::spawn(scheduler_loop(
            self.store.clone(),
            self.clock.clone(),
            cfg.schedule_every,
            background.clone(),
        ));

        let concurrency = cfg.concurrency.max(1);
        let room = Arc::new(Semaphore::new(concurrency + cfg.prefetch.unwrap_or(2 * concurrency)));
        let run_slots = Arc::new(Semaphore::new(concurrency));
        let pace = Arc::new(Pace { mean_us: AtomicU64::new(0), ended: Notify::new() });
        let stopping = CancellationToken::new();
        let (claimed_tx, claimed_rx) = mpsc::unbounded_channel::<Claimed>();
        let starter = Starter {
            worker: self.id.clone(),
            registry: self.registry.clone(),
            app: self.app.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            backoff: cfg.backoff,
            running: running.clone(),
            tracker: tracker.clone(),
            done: done_tx.clone(),
            unrecorded,
            pending,
            freed: plan.freed.clone(),
            slots: run_slots.clone(),
            pace: pace.clone(),
        };
        let dispatcher = tokio::spawn(starter.dispatch(claimed_rx, stopping.clone()));
        let wake = self.store.wakeups();
        let mut fetch_delays = database::backoff::retry_delays(cfg.poll);
        'fetch: loop {
            let first = tokio::select! {
                p = room.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            while let Ok(p) = room.clone().try_acquire_owned() {
                permits.push(p);
            }
            if !pace.short() {
                // Long jobs: no buffer, claim only for the slots free now (less
                // the jobs already waiting for one), and else wait for an end.
                let ended = pace.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                let waiting = running.lock().map(|m| m.values().filter(|r| !r.started).count()).unwrap_or(0);
                let allowed = run_slots.available_permits().saturating_sub(waiting);
                if allowed == 0 {
                    drop(permits);
                    tokio::select! {
                        _ = ended => {}
                        _ = tokio::time::sleep(cfg.poll) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue 'fetch;
                }
                permits.truncate(allowed);
            }
            // Register for wake-ups before looking, so an enqueue that lands between
            // an empty fetch and the wait is not missed (and so for a capped queue's
            // slot given back).
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let freed = plan.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let now = self.clock.now();
            let lease_until = now + micros(cfg.lease);
            let asked = permits.len();
            let (jobs, failed) = self.claim(&plan, asked, now, lease_until).await;
            // Fewer than asked for: every due job this worker may take was
            // taken (or another claim holds it, or its queue's cap is reached). Claiming again at once would
            // find nothing, a statement the database would run beside the jobs
            // just started, on their cores; wait for a wake-up as when idle
            // (registered before this claim, so an enqueue since is not missed).
            let idle = jobs.len() < asked;
            for (job, queue) in jobs {
                let Some(place) = permits.pop() else { break };
                let cancel = CancellationToken::new();
                if let Ok(mut m) = running.lock() {
                    m.insert(
                        job.id,
                        Running { lease_seq: job.lease_seq, started: false, cancel: cancel.clone(), abort: None },
                    );
                }
                let _ = claimed_tx.send(Claimed { job, held: Slots { _room: place, queue }, cancel });
            }
            drop(permits);
            if let Some(e) = failed {
                retry_warn!(e, worker = %self.id, "fetching jobs failed; retrying");
                let wait = fetch_delays.next().unwrap_or(database::backoff::MAX_DELAY);
                // A wake-up (the listener connected again: the database is back)
                // ends the wait early.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue 'fetch,
                    _ = notified => continue 'fetch,
                    _ = shutdown.cancelled() => break 'fetch,
                }
            }
            fetch_delays = database::backoff::retry_delays(cfg.poll);
            if idle {
                let wait = self.idle_wait(cfg.poll).await;
                tokio::select! {
                    _ = notified => {}
                    _ = freed => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }

        // Graceful shutdown. First the buffer: jobs claimed ahead that have not
        // started go back at once, in their place, so another worker runs them now
        // rather than after this one's grace (a job the starter started before it
        // was marked started under the same lock, and runs on).
        stopping.cancel();
        drop(claimed_tx);
        let _ = dispatcher.await;
        let unstarted: Vec<(i64, i64)> = {
            let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<i64> = map.iter().filter(|(_, r)| !r.started).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| map.remove(&id).map(|r| (id, r.lease_seq))).collect()
        };
        if !unstarted.is_empty() {
            match self.store.release(&self.id, &unstarted, Release::Unstarted, self.clock.now()).await {
                Ok(n) => tracing::info!(worker = %self.id, released = n, "released prefetched jobs to the queue"),
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "could not release prefetched jobs; the rescuer will take them back when their leases expire")
                }
            }
        }
        tracker.close();
        let in_flight = running.lock().map(|m| m.len()).unwrap_or(0);
        tracing::info!(worker = %self.id, in_flight, grace = ?cfg.grace, "worker stopping: no new jobs");
        if tokio::time::timeout(cfg.grace, tracker.wait()).await.is_err() {
            let held: Vec<(i64, i64)> = {
                let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                map.drain()
                    .map(|(id, r)| {
                        r.cancel.cancel();
                        if let Some(a) = r.abort {
                            a.abort();
                        }
                        (id, r.lease_seq)
                    })
                    .collect()
            };
            tracker.wait().await;
            match self.store.release(&self.id, &held, Release::Unfinished, self.clock.now()).await {
                Ok(n) => tracing::info!(worker = %self.id, released = n, "released unfinished jobs to the queue"),
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "could not release jobs; the rescuer will take them back when their leases expire")
                }
            }
        }
        drop(done_tx);
        let _ = completer.await;
        background.cancel();
        let _ = heartbeat.await;
        let _ = rescuer.await;
        let _ = scheduler.await;
        let _ = canceller.await;
        if let Err(e) = self.store.deregister_worker(&self.id).await {
            tracing::warn!(worker = %self.id, error = %e, "could not deregister worker");
        }
        alive.release().await;
        tracing::info!(worker = %self.id, "worker stopped");
        Ok(())
    }

    /// Registers this worker, makes it knowable as alive (before its first
    /// claim: from then on a rescuer can tell this process died) and declares
    /// its recurring jobs. Each step can be done again, so a failed start is
    /// retried whole.
    async fn start(&self, plan: &FetchPlan, declared: &[Recurring]) -> Result<Alive, StorageError> {
        let now = self.clock.now();
        self.store
            .register_worker(&WorkerRow {
                id: self.id.to_string(),
                hostname: hostname(),
                pid: i64::from(std::process::id()),
                concurrency: self.config.concurrency as i32,
                queues: plan.describe(&self.config.queues),
                started_at: now,
                last_heartbeat: now,
                running: 0,
            })
            .await?;
        let alive = self.store.hold_alive(&self.id).await?;
        if !declared.is_empty()
            && let Err(e) = Jobs::new(self.store.clone(), self.clock.clone()).declare_recurring(declared).await
        {
            // Given up before a retry takes it again.
            alive.release().await;
            return Err(e);
        }
        Ok(alive)
    }

    /// Claims up to `room` jobs along `plan`, each capped queue within its free
    /// slots, and the queue slots that go with them. Jobs claimed before an error
    /// are returned with it, so they run rather than wait for their lease.
    async fn claim(
        &self,
        plan: &FetchPlan,
        room: usize,
        now: crate::clock::Micros,
        lease_until: crate::clock::Micros,
    ) -> (Vec<(JobRow, Option<OwnedSemaphorePermit>)>, Option<StorageError>) {
        let mut claimed = Vec::new();
        for (queue, slots) in &plan.capped {
            let left = room - claimed.len();
            let mut held = Vec::new();
            while held.len() < left {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            if held.is_empty() {
                continue;
            }
            match self.store.fetch(&self.id, std::slice::from_ref(queue), held.len() as u32, now, lease_until).await {
                Ok(jobs) => claimed.extend(jobs.into_iter().map(|j| (j, held.pop()))),
                Err(e) => return (claimed, Some(e)),
            }
        }
        let left = room - claimed.len();
        if left > 0 && !plan.shared.is_empty() {
            match self.store.fetch(&self.id, &plan.shared, left as u32, now, lease_until).await {
                Ok(jobs) => claimed.extend(jobs.into_iter().map(|j| (j, None))),
                Err(e) => return (claimed, Some(e)),
            }
        }
        (claimed, None)
    }
}

/// Starts claimed jobs as the worker's slots free: the worker's parts a job's
/// task needs.
struct Starter<C> {
    worker: Arc<str>,
    registry: Arc<Registry<C>>,
    app: Arc<C>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    running: RunningMap,
    tracker: TaskTracker,
    done: mpsc::UnboundedSender<Completion>,
    /// Room among the outcomes not yet written ([`MAX_UNRECORDED`]).
    unrecorded: Arc<Semaphore>,
    /// Outcomes handed over and not yet in a batch, whose leases the heartbeat renews.
    pending: Pending,
    freed: Arc<Notify>,
    /// The worker's `concurrency` slots: one per running job.
    slots: Arc<Semaphore>,
    /// Attempt times, which decide whether the fetch loop claims ahead.
    pace: Arc<Pace>,
}

impl<C: Send + Sync + 'static> Starter<C> {
    /// Starts the jobs from `claimed` one at a time, in the order they were
    /// claimed (so by priority), each once a slot is free; a job taken away while
    /// it waited (lease lost, deleted: its entry is gone) is dropped. Returns
    /// when the worker is `stopping` or the fetch loop is gone; the jobs still
    /// waiting are then released by [`Worker::run`].
    async fn dispatch(self, mut claimed: mpsc::UnboundedReceiver<Claimed>, stopping: CancellationToken) {
        loop {
            let next = tokio::select! {
                biased;
                _ = stopping.cancelled() => return,
                next = claimed.recv() => next,
            };
            let Some(Claimed { job, held, cancel }) = next else { return };
            let slot = tokio::select! {
                biased;
                _ = stopping.cancelled() => return,
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let ours = self
                .running
                .lock()
                .map(|mut m| m.get_mut(&job.id).map(|r| r.started = true).is_some())
                .unwrap_or(false);
            if ours {
                self.spawn_job(job, held, slot, cancel);
            }
        }
    }

    /// Runs `job`'s handler in a task of its own holding `slot`, and hands the
    /// outcome to the completer.
    fn spawn_job(&self, job: JobRow, held: Slots, slot: OwnedSemaphorePermit, cancel: CancellationToken) {
        let ctx = JobContext {
            app: self.app.clone(),
            job_id: job.id,
            attempt: job.attempt.max(0) as u32,
            max_attempts: job.max_attempts.max(1) as u32,
            worker_id: self.worker.clone(),
            cancel,
            lease_seq: job.lease_seq,
            store: self.store.clone(),
            clock: self.clock.clone(),
        };
        let wait = job.attempted_at.unwrap_or(job.run_at) - job.run_at;
        self.metrics.wait.observe(Duration::from_micros(wait.max(0) as u64));
        let fut = self.registry.run(&job.kind, &job.args, ctx);
        let (running2, done, unrecorded, pending, clock, metrics, backoff, freed, pace) = (
            self.running.clone(),
            self.done.clone(),
            self.unrecorded.clone(),
            self.pending.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.backoff,
            self.freed.clone(),
            self.pace.clone(),
        );
        let worker = self.worker.clone();
        let job_id = job.id;
        let handle = self.tracker.spawn(async move {
            let started = Instant::now();
            let result = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(r) => r,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic payload".to_owned());
                    Err(JobError::retry(anyhow!("the job panicked: {msg}")))
                }
            };
            let took = started.elapsed();
            metrics.run_duration.observe(took);
            let now = clock.now();
            let outcome = match result {
                Ok(()) => Outcome::Succeeded,
                Err(e) => {
                    let errors = e.chain();
                    tracing::warn!(worker = %worker, job = job.id, kind = %job.kind, attempt = job.attempt,
                        permanent = e.permanent, error = %errors.join(": "), "job attempt failed");
                    if e.permanent || job.attempt >= job.max_attempts {
                        Outcome::Dead { errors }
                    } else {
                        let delay = backoff.delay(job.attempt.max(1) as u32, &mut rand::rng());
                        Outcome::Retry { at: now + micros(delay), errors }
                    }
                }
            };
            // The entry is this attempt's claim on reporting: shutdown (releasing the
            // job) and the heartbeat (lease lost) take it away first, and then the
            // outcome is not ours to record. Taken, it moves to the outcomes
            // pending, whose leases the heartbeat goes on renewing.
            let still_ours = running2.lock().map(|mut m| m.remove(&job.id).is_some()).unwrap_or(false);
            if still_ours {
                if let Ok(mut p) = pending.lock() {
                    p.insert(job.id, (job.lease_seq, Instant::now()));
                }
                // While the completer is a batch behind, this job keeps its slot,
                // so the worker claims no more (completer module docs). The
                // completer gives the permit back once the outcome is written.
                if let Ok(room) = unrecorded.acquire().await {
                    room.forget();
                }
                if done.send(Completion { job_id: job.id, lease_seq: job.lease_seq, at: now, outcome }).is_err() {
                    // No completer (it failed): no lease to keep for an outcome
                    // nobody will write; the rescuer takes the job back.
                    if let Ok(mut p) = pending.lock() {
                        p.remove(&job.id);
                    }
                }
            } else {
                tracing::info!(worker = %worker, job = job.id, "attempt ended after losing the job; outcome discarded");
            }
            let capped = held.queue.is_some();
            drop(slot);
            drop(held);
            pace.record(took);
            if capped {
                freed.notify_waiters();
            }
        });
        if let Ok(mut m) = self.running.lock()
            && let Some(r) = m.get_mut(&job_id)
        {
            r.abort = Some(handle.abort_handle());
        }
    }
}

/// The jobs whose leases the heartbeat renews.
struct Held {
    /// Running and buffered jobs.
    running: RunningMap,
    /// Finished jobs whose outcomes wait for the completer's next batch.
    pending: Pending,
}

/// Renews the leases of held jobs and the worker's registry row; cancels jobs
/// whose lease was lost.
async fn heartbeat_loop(
    id: Arc<str>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    held: Held,
    cfg: WorkerConfig,
    stop: CancellationToken,
) {
    let Held { running, pending } = held;
    let mut tick = tokio::time::interval(cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Buffered jobs too: they are claimed, and their leases must hold until
        // they run; and finished ones until their outcomes are written.
        let (mut held, started): (Vec<(i64, i64)>, usize) = match running.lock() {
            Ok(m) => (m.iter().map(|(id, r)| (*id, r.lease_seq)).collect(), m.values().filter(|r| r.started).count()),
            Err(_) => continue,
        };
        // Waiting outcomes once they have waited (completer module docs).
        if let Ok(p) = pending.lock() {
            let waited = cfg.heartbeat / 2;
            held.extend(p.iter().filter(|(_, (_, since))| since.elapsed() >= waited).map(|(id, (seq, _))| (*id, *seq)));
        }
        let now = clock.now();
        match store.extend_leases(&held, now + micros(cfg.lease)).await {
            Ok(lost) => {
                for job in lost {
                    let gone = running.lock().ok().and_then(|mut m| m.remove(&job));
                    if let Some(r) = gone {
                        tracing::warn!(worker = %id, job, "lease lost (rescued, deleted or claimed elsewhere); cancelling this attempt");
                        crate::cancel::stop_attempt(r);
                    } else if pending.lock().ok().and_then(|mut p| p.remove(&job)).is_some() {
                        tracing::warn!(worker = %id, job, "lease lost while the outcome waited to be written; it will be refused");
                    }
                }
            }
            Err(e) => retry_warn!(e, worker = %id, "renewing leases failed; will retry"),
        }
        if let Err(e) = store.worker_heartbeat(&id, now, started as u32).await {
            retry_warn!(e, worker = %id, "worker heartbeat failed");
        }
    }
}
