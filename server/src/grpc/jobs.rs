//! `jobs.v1.JobService`: the job engine's admin operations over gRPC, for the
//! `/hangfire` dashboard and for scripts.
//!
//! Every call first requires a super admin ([`Caller::require_super_admin`]); the
//! engine's errors answer from the shared table in [`crate::boundary`] (not found,
//! wrong state → `FAILED_PRECONDITION`, unique key taken → `ALREADY_EXISTS`, the
//! database away → `UNAVAILABLE`; other failures are logged and answered with a
//! bare `INTERNAL`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use jobengine::Job;
use jobengine::builtin::{Fail, Noop, Sleep};
use jobengine::{
    BatchRow, ContinueOn, HistoryRow, JobRow, JobState, Jobs, ListQuery, RecurringRow, StateCounts, Wait, WorkerRow,
};
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_server::JobService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::boundary::invalid_field;
use crate::caller::Caller;
use crate::grpc::counts_feed::CountsFeed;
use crate::grpc::status::storage_status as status;

/// Largest page `ListJobs` returns.
const MAX_PAGE: u32 = 500;
/// `ListJobs` page size when the request gives none.
const DEFAULT_PAGE: u32 = 50;
/// A worker counts as live while its last heartbeat is this recent (the same
/// window `/metrics` counts with).
pub use jobengine::metrics::LIVE_WINDOW;
/// `WatchCounts` sends a copy at least this often, even when nothing changed, so
/// idle streams survive proxies that close silent connections.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The service.
pub struct JobsGrpc {
    jobs: Jobs,
    shutdown: CancellationToken,
    /// The one counts reader every `WatchCounts` stream shares.
    feed: Arc<CountsFeed>,
}

impl JobsGrpc {
    /// Serves `jobs` to super admins; streams end at `shutdown`.
    pub fn new(jobs: Jobs, shutdown: CancellationToken) -> Self {
        let feed = Arc::new(CountsFeed::new(jobs.clone(), shutdown.clone()));
        Self { jobs, shutdown, feed }
    }
}

fn pb_state(s: JobState) -> pb::JobState {
    match s {
        JobState::Enqueued => pb::JobState::Enqueued,
        JobState::Processing => pb::JobState::Processing,
        JobState::Scheduled => pb::JobState::Scheduled,
        JobState::Awaiting => pb::JobState::Awaiting,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Dead => pb::JobState::Dead,
        JobState::Deleted => pb::JobState::Deleted,
    }
}

fn engine_state(s: i32) -> Result<JobState, Status> {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Enqueued) => Ok(JobState::Enqueued),
        Ok(pb::JobState::Processing) => Ok(JobState::Processing),
        Ok(pb::JobState::Scheduled) => Ok(JobState::Scheduled),
        Ok(pb::JobState::Awaiting) => Ok(JobState::Awaiting),
        Ok(pb::JobState::Succeeded) => Ok(JobState::Succeeded),
        Ok(pb::JobState::Dead) => Ok(JobState::Dead),
        Ok(pb::JobState::Deleted) => Ok(JobState::Deleted),
        Ok(pb::JobState::Unspecified) => Err(invalid_field("state", "required (e.g. JOB_STATE_DEAD)")),
        Err(_) => Err(invalid_field("state", format!("{s} is not a JobState"))),
    }
}

/// A list request's page: its size (`page_size`, 0 for the default) and the id
/// to continue below (`page_token`, as the previous answer of `rpc` gave it).
fn page(page_size: u32, page_token: &str, rpc: &str) -> Result<(u32, Option<i64>), Status> {
    let limit = match page_size {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => return Err(invalid_field("page_size", format!("at most {MAX_PAGE}, got {n}"))),
        n => n,
    };
    let before_id = match page_token {
        "" => None,
        t => Some(
            t.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| invalid_field("page_token", format!("not a token from a previous {rpc} response")))?,
        ),
    };
    Ok((limit, before_id))
}

/// The token of the next page: the last id when the page was full, else none.
fn next_page_token(last_id: Option<i64>, rows: usize, limit: u32) -> String {
    match last_id {
        Some(id) if rows == limit as usize => id.to_string(),
        _ => String::new(),
    }
}

/// The furthest ahead a diagnostic job may be scheduled: far enough for any
/// test of the Scheduled list, and far from the engine's "waits for another
/// job" due time (9999-12-31).
const MAX_SCHEDULE_AHEAD_MS: i64 = 10 * 366 * 24 * 3600 * 1000;
/// The longest delay accepted (one year).
const MAX_DELAY_MS: u64 = 366 * 24 * 3600 * 1000;

/// When a diagnostic job runs: now (`None`), or the request's time or delay.
fn diagnostic_run_at(r: &pb::EnqueueDiagnosticRequest, now: i64) -> Result<Option<i64>, Status> {
    match (r.run_at_unix_ms, r.delay_ms) {
        (0, 0) => Ok(None),
        (_, d) if d != 0 && r.run_at_unix_ms != 0 => {
            Err(invalid_field("delay_ms", "give run_at_unix_ms or delay_ms, not both"))
        }
        (at, 0) if at < 0 => Err(invalid_field("run_at_unix_ms", "must be a Unix time in milliseconds, not negative")),
        (at, 0) if at > now / 1000 + MAX_SCHEDULE_AHEAD_MS => {
            Err(invalid_field("run_at_unix_ms", "at most 10 years ahead"))
        }
        (at, 0) => Ok(Some(at * 1000)),
        (_, d) if d > MAX_DELAY_MS => Err(invalid_field("delay_ms", format!("at most {MAX_DELAY_MS} (one year)"))),
        (_, d) => Ok(Some(now + d as i64 * 1000)),
    }
}

fn ms(micros: i64) -> i64 {
    micros / 1000
}

fn pb_counts(c: &StateCounts, at_micros: i64) -> pb::JobCounts {
    pb::JobCounts {
        enqueued: c.enqueued,
        processing: c.processing,
        scheduled: c.scheduled,
        awaiting: c.awaiting,
        succeeded: c.succeeded,
        dead: c.dead,
        deleted: c.deleted,
        at_unix_ms: ms(at_micros),
    }
}

fn pb_summary(j: &JobRow) -> pb::JobSummary {
    pb::JobSummary {
        id: j.id,
        kind: j.kind.clone(),
        queue: j.queue.clone(),
        state: pb_state(j.state).into(),
        attempt: j.attempt.max(0) as u32,
        max_attempts: j.max_attempts.max(0) as u32,
        created_at_unix_ms: ms(j.created_at),
        run_at_unix_ms: ms(j.run_at),
        last_error: j.last_error.clone().unwrap_or_default(),
        unique_key: j.unique_key.clone().unwrap_or_default(),
        progress: j.progress.clone().unwrap_or_default(),
    }
}

fn pb_history(h: &HistoryRow) -> pb::HistoryEntry {
    pb::HistoryEntry {
        state: pb_state(h.state).into(),
        at_unix_ms: ms(h.at),
        attempt: h.attempt.max(0) as u32,
        worker_id: h.worker_id.clone().unwrap_or_default(),
        reason: h.reason.clone().unwrap_or_default(),
        error_chain: h.errors(),
    }
}

fn pb_worker(w: &WorkerRow) -> pb::WorkerInfo {
    pb::WorkerInfo {
        id: w.id.clone(),
        hostname: w.hostname.clone(),
        pid: w.pid.max(0) as u32,
        concurrency: w.concurrency.max(0) as u32,
        queues: w.queues.split(',').map(str::to_owned).collect(),
        started_at_unix_ms: ms(w.started_at),
        last_heartbeat_unix_ms: ms(w.last_heartbeat),
        running: w.running.max(0) as u32,
    }
}

fn pb_recurring(r: &RecurringRow) -> pb::RecurringJob {
    let last_state = r.last_job_state.clone().and_then(|s| JobState::try_from(s).ok());
    pb::RecurringJob {
        name: r.name.clone(),
        cron: r.cron.clone(),
        time_zone: r.time_zone.clone(),
        kind: r.kind.clone(),
        args_json: r.args.clone(),
        queue: r.queue.clone(),
        missed: r.missed.clone(),
        paused: r.is_paused(),
        next_run_at_unix_ms: ms(r.next_run),
        last_run_at_unix_ms: r.last_run.map_or(0, ms),
        last_job_id: r.last_job_id.unwrap_or(0),
        last_job_state: last_state.map_or(pb::JobState::Unspecified, pb_state).into(),
    }
}

fn pb_batch(b: &BatchRow) -> pb::Batch {
    pb::Batch {
        id: b.id,
        label: b.label.clone(),
        total: b.total.max(0) as u64,
        succeeded: b.succeeded.max(0) as u64,
        dead: b.dead.max(0) as u64,
        deleted: b.deleted.max(0) as u64,
        pending: b.pending() as u64,
        completion_job_id: b.completion_job_id.unwrap_or(0),
        created_at_unix_ms: ms(b.created_at),
        finished_at_unix_ms: b.finished_at.map_or(0, ms),
    }
}

/// `w` seen from one end: `other` is the job at the far end of the link.
fn pb_link(w: &Wait, other: i64) -> pb::JobLink {
    pb::JobLink {
        job_id: other,
        on: match w.on {
            ContinueOn::Success => "success",
            ContinueOn::AnyEnd => "any",
        }
        .to_owned(),
        decided_at_unix_ms: w.decided_at.map_or(0, ms),
    }
}

/// A recurring job's name from a request: required, at most 200 characters.
fn recurring_name(name: &str) -> Result<&str, Status> {
    match name.trim() {
        "" => Err(invalid_field("name", "required: the name of a recurring job")),
        n if n.chars().count() > 200 => Err(invalid_field("name", "at most 200 characters")),
        n => Ok(n),
    }
}

/// Longest `ListJobs` filter, in bytes.
const MAX_FILTER_BYTES: usize = 200;

/// Checks a `ListJobs` filter before it reaches SQL: bounded, and without
/// control characters (PostgreSQL refuses NUL in text, which would otherwise
/// surface as INTERNAL; no kind or search term holds one).
fn filter_text(field: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_FILTER_BYTES {
        return Err(invalid_field(field, format!("at most {MAX_FILTER_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid_field(field, "must not contain control characters"));
    }
    Ok(())
}

fn job_id(id: i64) -> Result<i64, Status> {
    if id <= 0 {
        return Err(invalid_field("id", "must be a positive job id"));
    }
    Ok(id)
}

impl JobsGrpc {
    async fn detail(&self, id: i64) -> Result<Response<pb::JobDetail>, Status> {
        let d = self.jobs.get(id).await.map_err(status)?;
        let (waits_for, waited_on_by) = self.jobs.links(id).await.map_err(status)?;
        let batch_id = self.jobs.store().batch_of(id).await.map_err(status)?;
        let completes = self.jobs.store().batch_completed_by(id).await.map_err(status)?;
        Ok(Response::new(pb::JobDetail {
            job: Some(pb_summary(&d.job)),
            args_json: d.job.args.clone(),
            history: d.history.iter().map(pb_history).collect(),
            waits_for: waits_for.map(|w| pb_link(&w, w.parent_id)),
            waited_on_by: waited_on_by.iter().map(|w| pb_link(w, w.child_id)).collect(),
            batch_id: batch_id.unwrap_or(0),
            completes_batch_id: completes.map_or(0, |b| b.id),
        }))
    }
}

#[tonic::async_trait]
impl JobService for JobsGrpc {
    async fn get_counts(&self, req: Request<pb::GetCountsRequest>) -> Result<Response<pb::JobCounts>, Status> {
        Caller::of(&req).require_super_admin()?;
        let c = self.jobs.counts().await.map_err(status)?;
        Ok(Response::new(pb_counts(&c, self.jobs.clock().now())))
    }

    type WatchCountsStream = Pin<Box<dyn Stream<Item = Result<pb::JobCounts, Status>> + Send>>;

    async fn watch_counts(
        &self,
        req: Request<pb::WatchCountsRequest>,
    ) -> Result<Response<Self::WatchCountsStream>, Status> {
        Caller::of(&req).require_super_admin()?;
        let interval = match req.get_ref().interval_ms {
            0 => Duration::from_millis(1000),
            n => Duration::from_millis(u64::from(n).max(200)),
        };
        // A small bounded buffer: a slow client makes this task wait, never makes
        // the server queue without limit.
        let (tx, rx) = mpsc::channel(2);
        let feed = self.feed.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Each stream reads the shared feed (see counts_feed), never the database.
            let mut readings = feed.subscribe();
            let mut last: Option<StateCounts> = None;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                let reading = readings.borrow_and_update().clone();
                let msg = match reading {
                    Some(Ok((c, at))) if last != Some(c) || last_sent.elapsed() >= KEEPALIVE => {
                        last = Some(c);
                        Some(Ok(pb_counts(&c, at)))
                    }
                    Some(Err(e)) => Some(Err(e)),
                    Some(Ok(_)) | None => None,
                };
                if let Some(msg) = msg {
                    let failed = msg.is_err();
                    tokio::select! {
                        sent = tx.send(msg) => if sent.is_err() { return },
                        _ = shutdown.cancelled() => return,
                    }
                    last_sent = tokio::time::Instant::now();
                    if failed {
                        return;
                    }
                    // The client's pace: at most one message per interval.
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = tx.closed() => return,
                        _ = shutdown.cancelled() => return,
                    }
                }
                tokio::select! {
                    changed = readings.changed() => if changed.is_err() {
                        // The feed's task ended as this stream joined: start another.
                        readings = feed.subscribe();
                    },
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let r = req.get_ref();
        let state = engine_state(r.state)?;
        let (limit, before_id) = page(r.page_size, &r.page_token, "ListJobs")?;
        filter_text("kind", &r.kind)?;
        filter_text("text", &r.text)?;
        let kind = (!r.kind.is_empty()).then(|| r.kind.clone());
        let text = (!r.text.trim().is_empty()).then(|| r.text.trim().to_owned());
        let rows = self.jobs.list(&ListQuery { state, kind, before_id, limit, text }).await.map_err(status)?;
        let next_page_token = next_page_token(rows.last().map(|r| r.id), rows.len(), limit);
        Ok(Response::new(pb::ListJobsResponse { jobs: rows.iter().map(pb_summary).collect(), next_page_token }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::JobDetail>, Status> {
        Caller::of(&req).require_super_admin()?;
        self.detail(job_id(req.get_ref().id)?).await
    }

    async fn requeue_job(&self, req: Request<pb::JobIdRequest>) -> Result<Response<pb::JobDetail>, Status> {
        let who = Caller::of(&req).require_super_admin()?.user.email.clone();
        let id = job_id(req.get_ref().id)?;
        self.jobs.requeue(id, &who).await.map_err(status)?;
        self.detail(id).await
    }

    async fn delete_job(&self, req: Request<pb::JobIdRequest>) -> Result<Response<pb::JobDetail>, Status> {
        let who = Caller::of(&req).require_super_admin()?.user.email.clone();
        let id = job_id(req.get_ref().id)?;
        self.jobs.delete(id, &who).await.map_err(status)?;
        self.detail(id).await
    }

    async fn trigger_job(&self, req: Request<pb::JobIdRequest>) -> Result<Response<pb::JobDetail>, Status> {
        let who = Caller::of(&req).require_super_admin()?.user.email.clone();
        let id = job_id(req.get_ref().id)?;
        self.jobs.trigger(id, &who).await.map_err(status)?;
        self.detail(id).await
    }

    async fn enqueue_diagnostic(
        &self,
        req: Request<pb::EnqueueDiagnosticRequest>,
    ) -> Result<Response<pb::EnqueueDiagnosticResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let r = req.get_ref();
        let count = match r.count {
            0 => 1,
            n @ 1..=1000 => n,
            n => return Err(invalid_field("count", format!("at most 1000, got {n}"))),
        };
        let run_at = diagnostic_run_at(r, self.jobs.clock().now())?;
        let job = match r.kind.as_str() {
            k if k == Noop::KIND => self.jobs.new_job(&Noop {}, run_at),
            k if k == Sleep::KIND => {
                if r.sleep_ms > 600_000 {
                    return Err(invalid_field("sleep_ms", "at most 600000"));
                }
                self.jobs.new_job(&Sleep { ms: u64::from(r.sleep_ms) }, run_at)
            }
            k if k == Fail::KIND => {
                if r.fail_message.len() > 1000 {
                    return Err(invalid_field("fail_message", "at most 1000 bytes"));
                }
                // It becomes the job's stored error: PostgreSQL text holds no NUL.
                if r.fail_message.contains('\0') {
                    return Err(invalid_field("fail_message", "must not contain NUL"));
                }
                let message =
                    if r.fail_message.is_empty() { "diagnostic failure".into() } else { r.fail_message.clone() };
                self.jobs.new_job(&Fail { message, permanent: r.permanent }, run_at)
            }
            other => {
                return Err(invalid_field(
                    "kind",
                    format!("{other:?} is not a diagnostic job (diag.noop, diag.sleep, diag.fail)"),
                ));
            }
        }
        .map_err(status)?;
        let done = self.jobs.enqueue_many(&vec![job; count as usize]).await.map_err(status)?;
        Ok(Response::new(pb::EnqueueDiagnosticResponse { job_ids: done.iter().map(|e| e.id).collect() }))
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let rows = self.jobs.workers(LIVE_WINDOW.as_micros() as i64).await.map_err(status)?;
        Ok(Response::new(pb::ListWorkersResponse { workers: rows.iter().map(pb_worker).collect() }))
    }

    async fn list_recurring(
        &self,
        req: Request<pb::ListRecurringRequest>,
    ) -> Result<Response<pb::ListRecurringResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let rows = self.jobs.list_recurring().await.map_err(status)?;
        Ok(Response::new(pb::ListRecurringResponse { recurring: rows.iter().map(pb_recurring).collect() }))
    }

    async fn pause_recurring(
        &self,
        req: Request<pb::RecurringNameRequest>,
    ) -> Result<Response<pb::RecurringJob>, Status> {
        Caller::of(&req).require_super_admin()?;
        let row = self.jobs.pause_recurring(recurring_name(&req.get_ref().name)?).await.map_err(status)?;
        Ok(Response::new(pb_recurring(&row)))
    }

    async fn resume_recurring(
        &self,
        req: Request<pb::RecurringNameRequest>,
    ) -> Result<Response<pb::RecurringJob>, Status> {
        Caller::of(&req).require_super_admin()?;
        let row = self.jobs.resume_recurring(recurring_name(&req.get_ref().name)?).await.map_err(status)?;
        Ok(Response::new(pb_recurring(&row)))
    }

    async fn trigger_recurring(
        &self,
        req: Request<pb::RecurringNameRequest>,
    ) -> Result<Response<pb::TriggerRecurringResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let name = recurring_name(&req.get_ref().name)?;
        let (e, row) = self.jobs.trigger_recurring(name).await.map_err(status)?;
        Ok(Response::new(pb::TriggerRecurringResponse { job_id: e.id, recurring: Some(pb_recurring(&row)) }))
    }

    async fn get_batch(&self, req: Request<pb::GetBatchRequest>) -> Result<Response<pb::Batch>, Status> {
        Caller::of(&req).require_super_admin()?;
        let id = req.get_ref().id;
        if id <= 0 {
            return Err(invalid_field("id", "must be a positive batch id"));
        }
        let b = self.jobs.batch(id).await.map_err(status)?;
        Ok(Response::new(pb_batch(&b)))
    }

    async fn list_batches(
        &self,
        req: Request<pb::ListBatchesRequest>,
    ) -> Result<Response<pb::ListBatchesResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let r = req.get_ref();
        let (limit, before_id) = page(r.page_size, &r.page_token, "ListBatches")?;
        let rows = self.jobs.batches(before_id, limit).await.map_err(status)?;
        let next_page_token = next_page_token(rows.last().map(|r| r.id), rows.len(), limit);
        Ok(Response::new(pb::ListBatchesResponse { batches: rows.iter().map(pb_batch).collect(), next_page_token }))
    }

    async fn get_throughput(&self, req: Request<pb::GetThroughputRequest>) -> Result<Response<pb::Throughput>, Status> {
        Caller::of(&req).require_super_admin()?;
        let r = req.get_ref();
        let minutes = match r.minutes {
            0 => 60,
            n @ 1..=10_080 => i64::from(n),
            n => return Err(invalid_field("minutes", format!("1 to 10080, got {n}"))),
        };
        let bucket = match r.bucket_seconds {
            0 => 60,
            n @ 1..=86_400 => i64::from(n),
            n => return Err(invalid_field("bucket_seconds", format!("1 to 86400, got {n}"))),
        };
        // Buckets of whole minutes read the per-minute rows; others the per-second
        // rows, which are kept a little over a day.
        if bucket % 60 != 0 && minutes > 1440 {
            return Err(invalid_field(
                "bucket_seconds",
                format!("{bucket} s is not whole minutes: such buckets cover at most 1440 minutes, not {minutes}"),
            ));
        }
        let count = (minutes * 60 + bucket - 1) / bucket;
        if count > 1440 {
            return Err(Status::invalid_argument(format!(
                "bucket_seconds: {minutes} minutes in {bucket} s buckets is {count} buckets, at most 1440"
            )));
        }
        let width = bucket * 1_000_000;
        let now = self.jobs.clock().now();
        let first = (now / width - count + 1) * width;
        let rows = self.jobs.throughput(first, width).await.map_err(status)?;
        let buckets = (0..count)
            .map(|i| {
                let at = first + i * width;
                let (ok, dead) = rows.iter().find(|r| r.0 == at).map_or((0, 0), |r| (r.1, r.2));
                pb::ThroughputBucket { at_unix_ms: at / 1000, succeeded: ok, dead }
            })
            .collect();
        Ok(Response::new(pb::Throughput { buckets }))
    }
}
