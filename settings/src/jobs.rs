//! How a worker runs jobs (`WORKER_*`, `JOB_*`) and the provisioning fault
//! injection the tests use.

use std::time::Duration;

use backoffice::env::Fault;
use clap::Args;
use jobengine::WorkerConfig;
use jobengine::builtin::Noop;
use jobengine::config::{DEFAULT_LEASE, DEFAULT_MAX_INTERRUPTIONS};
use jobengine::retention::Retention;
use jobengine::{MissedRuns, Recurring};

/// The name of the diagnostic schedule `DIAG_RECURRING_CRON` declares.
pub const DIAG_RECURRING: &str = "diag.recurring";

use crate::Show;

/// A worker's settings; [`WorkerArgs::worker_config`] makes the engine's value.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Jobs")]
pub struct WorkerArgs {
    /// Jobs a worker runs at once.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub worker_concurrency: u64,

    /// Jobs a worker claims ahead of its free slots while its jobs are short
    /// (under 20 ms on average), so a freed slot starts the next job without a
    /// round trip [default: twice WORKER_CONCURRENCY]. With longer jobs it claims
    /// only for free slots, so a busy worker never holds work another could
    /// start. 0 never claims ahead.
    #[arg(long, env = "WORKER_PREFETCH", value_parser = clap::value_parser!(u64), hide_env_values = true)]
    pub worker_prefetch: Option<u64>,

    /// Comma-separated queues a worker fetches from.
    #[arg(long, env = "WORKER_QUEUES", default_value = "default", value_parser = parse_queues, hide_env_values = true)]
    pub worker_queues: Queues,

    /// Caps on jobs run at once per queue, below WORKER_CONCURRENCY, as
    /// `queue=n` pairs separated by commas (e.g. `mail=4`): a burst in one queue
    /// cannot take every slot. Queues this worker does not fetch are ignored.
    #[arg(long, env = "WORKER_QUEUE_LIMITS", default_value = "", value_parser = parse_queue_limits, hide_env_values = true)]
    pub worker_queue_limits: QueueLimits,

    /// A claim's lease, in milliseconds: a dead worker's job runs again about this
    /// long after its last renewal.
    #[arg(long, env = "JOB_LEASE_MS", default_value_t = DEFAULT_LEASE.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_lease_ms: u64,

    /// Lease renewal interval, in milliseconds [default: a third of JOB_LEASE_MS].
    #[arg(long, env = "JOB_HEARTBEAT_MS", value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_heartbeat_ms: Option<u64>,

    /// How often each worker looks for expired leases and dead workers, in milliseconds.
    #[arg(long, env = "JOB_RESCUE_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_rescue_ms: u64,

    /// Idle fetch interval, in milliseconds (PostgreSQL workers are also woken by
    /// NOTIFY).
    #[arg(long, env = "JOB_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_poll_ms: u64,

    /// On SIGTERM/SIGINT, how long running jobs may finish before they are
    /// released, in milliseconds.
    #[arg(long, env = "JOB_GRACE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_grace_ms: u64,

    /// Times a job may be cut short by a dead or frozen worker before it is
    /// dead-lettered; such interrupted attempts do not use up its retries.
    #[arg(long, env = "JOB_MAX_INTERRUPTIONS", default_value_t = DEFAULT_MAX_INTERRUPTIONS,
          value_parser = clap::value_parser!(u32).range(1..), hide_env_values = true)]
    pub job_max_interruptions: u32,

    /// First retry delay, in milliseconds; doubles per attempt, ±25 % jitter,
    /// capped at 1 h.
    #[arg(long, env = "JOB_BACKOFF_BASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_backoff_base_ms: u64,

    /// Seconds succeeded and deleted jobs (with their history) are kept before
    /// the retention sweep, a recurring job every minute, removes them; 0 keeps
    /// them forever.
    #[arg(long, env = "JOB_RETENTION_SECS", default_value_t = 24 * 3600, hide_env_values = true)]
    pub job_retention_secs: u64,

    /// Seconds dead jobs are kept; 0 keeps them forever (with both 0, no sweep
    /// is declared at all).
    #[arg(long, env = "JOB_DEAD_RETENTION_SECS", default_value_t = 7 * 24 * 3600, hide_env_values = true)]
    pub job_dead_retention_secs: u64,

    /// How often each worker's scheduler enqueues due recurring jobs, in
    /// milliseconds.
    #[arg(long, env = "JOB_SCHEDULE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), hide_env_values = true)]
    pub job_schedule_ms: u64,

    /// Tests and drills: a cron expression (six fields for seconds, e.g.
    /// `* * * * * *`) at which the recurring `diag.recurring` schedule enqueues a
    /// `diag.noop`, every fire time (missed ones backfilled). Unset: none.
    #[arg(long, env = "DIAG_RECURRING_CRON", value_parser = parse_cron, hide_env_values = true)]
    pub diag_recurring_cron: Option<String>,
}

/// A cron expression the engine accepts (UTC).
fn parse_cron(s: &str) -> Result<String, String> {
    jobengine::recurring::Schedule::parse(s, "UTC").map_err(|e| e.to_string())?;
    Ok(s.trim().to_owned())
}

/// A non-empty list of queue names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues(pub Vec<String>);

impl std::fmt::Display for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// `mail, default` → `["mail", "default"]`; blanks between commas are dropped.
fn parse_queues(s: &str) -> Result<Queues, String> {
    let queues: Vec<String> = s.split(',').map(str::trim).filter(|q| !q.is_empty()).map(str::to_owned).collect();
    if queues.is_empty() {
        return Err("name at least one queue".to_owned());
    }
    Ok(Queues(queues))
}

/// Per-queue caps, `mail=4,reports=1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueLimits(pub Vec<(String, usize)>);

impl std::fmt::Display for QueueLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(q, n)| format!("{q}={n}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// `mail=4, reports=1` → `[("mail", 4), ("reports", 1)]`; empty is no caps.
fn parse_queue_limits(s: &str) -> Result<QueueLimits, String> {
    let mut limits: Vec<(String, usize)> = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (queue, n) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: write queue=n, e.g. mail=4"))?;
        let queue = queue.trim();
        if queue.is_empty() {
            return Err(format!("{pair:?}: the queue name is missing"));
        }
        let n: usize = n.trim().parse().map_err(|_| format!("{pair:?}: the cap must be a whole number"))?;
        if n == 0 {
            return Err(format!("{pair:?}: the cap must be at least 1 (remove the queue from WORKER_QUEUES instead)"));
        }
        if limits.iter().any(|(q, _)| q == queue) {
            return Err(format!("{queue:?} is capped twice"));
        }
        limits.push((queue.to_owned(), n));
    }
    Ok(QueueLimits(limits))
}

impl WorkerArgs {
    /// The engine's configuration.
    pub fn worker_config(&self) -> WorkerConfig {
        let ms = Duration::from_millis;
        let mut c = WorkerConfig::default().with_lease(ms(self.job_lease_ms));
        c.concurrency = usize::try_from(self.worker_concurrency).unwrap_or(usize::MAX);
        c.prefetch = self.worker_prefetch.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        c.queues = self.worker_queues.0.clone();
        c.queue_limits = self.worker_queue_limits.0.clone();
        if let Some(h) = self.job_heartbeat_ms {
            c.heartbeat = ms(h);
        }
        c.rescue_every = ms(self.job_rescue_ms);
        c.poll = ms(self.job_poll_ms);
        c.grace = ms(self.job_grace_ms);
        c.max_interruptions = self.job_max_interruptions;
        c.backoff.base = ms(self.job_backoff_base_ms);
        let keep = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        let retention = Retention { finished: keep(self.job_retention_secs), dead: keep(self.job_dead_retention_secs) };
        // Both kept forever: no sweep is declared (one declared before stays until
        // removed through the recurring jobs' admin operations).
        c.retention = (retention.finished.is_some() || retention.dead.is_some()).then_some(retention);
        c.schedule_every = ms(self.job_schedule_ms);
        if let Some(cron) = &self.diag_recurring_cron {
            // Checked when parsed, so this cannot fail.
            if let Ok(r) = Recurring::new(DIAG_RECURRING, cron, &Noop {}) {
                c.recurring.push(r.missed(MissedRuns::All));
            }
        }
        c
    }
}

impl Show for WorkerArgs {
    fn show(&self, out: &mut Vec<(&'static str, String)>) {
        // The effective heartbeat, so `config` answers "what will it do".
        let c = self.worker_config();
        out.push(("WORKER_CONCURRENCY", self.worker_concurrency.to_string()));
        out.push(("WORKER_PREFETCH", c.prefetch.unwrap_or(2 * c.concurrency).to_string()));
        out.push(("WORKER_QUEUES", self.worker_queues.to_string()));
        out.push(("WORKER_QUEUE_LIMITS", self.worker_queue_limits.to_string()));
        out.push(("JOB_LEASE_MS", self.job_lease_ms.to_string()));
        out.push(("JOB_HEARTBEAT_MS", c.heartbeat.as_millis().to_string()));
        out.push(("JOB_RESCUE_MS", self.job_rescue_ms.to_string()));
        out.push(("JOB_POLL_MS", self.job_poll_ms.to_string()));
        out.push(("JOB_GRACE_MS", self.job_grace_ms.to_string()));
        out.push(("JOB_MAX_INTERRUPTIONS", self.job_max_interruptions.to_string()));
        out.push(("JOB_BACKOFF_BASE_MS", self.job_backoff_base_ms.to_string()));
        out.push(("JOB_RETENTION_SECS", self.job_retention_secs.to_string()));
        out.push(("JOB_DEAD_RETENTION_SECS", self.job_dead_retention_secs.to_string()));
        out.push(("JOB_SCHEDULE_MS", self.job_schedule_ms.to_string()));
        out.push(("DIAG_RECURRING_CRON", self.diag_recurring_cron.clone().unwrap_or_default()));
    }
}

/// Fault injection for provisioning, in every process that runs jobs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Testing")]
pub struct ProvisionArgs {
    /// Tests only: `slow:<ms>` slows each provisioning step, `fail` fails them,
    /// `fail:<text>` fails tenants whose name contains `<text>`. Unset (or empty):
    /// off.
    #[arg(long, env = "PROVISION_FAULT", value_parser = parse_fault, hide_env_values = true)]
    pub provision_fault: Option<MaybeFault>,
}

/// A parsed `PROVISION_FAULT`, where an empty value means none (an exported but
/// empty variable always meant "off").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaybeFault {
    /// The fault, if any.
    pub fault: Option<Fault>,
    /// As given, for `config`.
    pub raw: String,
}

fn parse_fault(s: &str) -> Result<MaybeFault, String> {
    let fault = if s.trim().is_empty() { None } else { Some(Fault::parse(s).map_err(|e| format!("{e:#}"))?) };
    Ok(MaybeFault { fault, raw: s.trim().to_owned() })
}

impl ProvisionArgs {
    /// The fault to inject, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.provision_fault.as_ref().and_then(|f| f.fault.clone())
    }
}

impl Show for ProvisionArgs {
    fn show(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("PROVISION_FAULT", self.provision_fault.as_ref().map(|f| f.raw.clone()).unwrap_or_default()));
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{DatabaseArgs, MailArgs};

    /// Every group, as a binary would flatten them.
    #[derive(Debug, Parser)]
    struct All {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        mail: MailArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        provision: ProvisionArgs,
    }

    impl All {
        fn shown(&self) -> Vec<(&'static str, String)> {
            let mut out = Vec::new();
            self.database.show(&mut out);
            self.mail.show(&mut out);
            self.worker.show(&mut out);
            self.provision.show(&mut out);
            out
        }
    }

    #[test]
    fn every_setting_is_shown_under_its_variable() {
        let all = All::try_parse_from(["test"]).expect("defaults parse");
        let shown: Vec<&str> = all.shown().iter().map(|(k, _)| *k).collect();
        let declared: Vec<String> = All::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(declared.len(), shown.len(), "{declared:?} vs {shown:?}");
        for name in &declared {
            assert!(shown.contains(&name.as_str()), "{name} is not shown");
        }
        // Each flag is the variable's name in kebab case.
        for a in All::command().get_arguments().filter(|a| a.get_env().is_some()) {
            let env = a.get_env().map(|e| e.to_string_lossy().to_lowercase().replace('_', "-"));
            assert_eq!(a.get_long().map(str::to_owned), env, "{:?}", a.get_id());
        }
    }

    #[test]
    fn converts_to_the_engines_values_and_rejects_nonsense() {
        let all = All::try_parse_from([
            "test",
            "--worker-concurrency",
            "4",
            "--job-lease-ms",
            "3000",
            "--worker-queues",
            "mail, default",
            "--worker-queue-limits",
            "mail=2",
            "--worker-prefetch",
            "0",
            "--provision-fault",
            "slow:5",
        ])
        .expect("valid settings");
        let c = all.worker.worker_config();
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.lease, Duration::from_secs(3));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(c.queues, ["mail", "default"]);
        assert_eq!(c.queue_limits, [("mail".to_owned(), 2)]);
        assert_eq!(c.prefetch, Some(0));
        assert_eq!(All::try_parse_from(["test"]).expect("defaults").worker.worker_config().prefetch, None);
        assert!(All::try_parse_from(["test"]).expect("defaults").worker.worker_config().queue_limits.is_empty());
        assert_eq!(all.provision.fault(), Some(Fault::Slow(Duration::from_millis(5))));
        for bad in [
            ["--worker-concurrency", "zero"],
            ["--worker-concurrency", "0"],
            ["--worker-queues", " , "],
            ["--worker-prefetch", "some"],
            ["--worker-queue-limits", "mail"],
            ["--worker-queue-limits", "mail=0"],
            ["--worker-queue-limits", "mail=two"],
            ["--worker-queue-limits", "mail=1,mail=2"],
            ["--provision-fault", "sometimes"],
        ] {
            let e = All::try_parse_from(["test", bad[0], bad[1]]).expect_err("rejected");
            assert!(e.to_string().contains(bad[0]), "{e}");
        }
        let empty = All::try_parse_from(["test", "--provision-fault", ""]).expect("empty is off");
        assert_eq!(empty.provision.fault(), None);
    }
}
