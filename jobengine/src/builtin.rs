//! Diagnostic job types every worker runs: for smoke tests, benchmarks and crash
//! drills. They need no application context.

use std::time::Duration;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use crate::job::{Job, JobContext, JobError};

/// Does nothing: measures the engine's own overhead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "diag.noop";
    type Context = ();
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

/// Sends `seq` as one UDP datagram to `127.0.0.1:port` the moment it starts: lets a
/// benchmark time enqueue-to-start from the caller's side (the moment the
/// handler's first line runs), the same way for every job queue it compares.
/// Only the loopback address, so a ping cannot be aimed at another host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    /// The UDP port on 127.0.0.1 the benchmark listens on.
    pub port: u16,
    /// The sample's number, sent back as decimal text.
    pub seq: u64,
}

impl Job for Ping {
    const KIND: &'static str = "diag.ping";
    type Context = ();
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(JobError::permanent)?;
        socket.send_to(self.seq.to_string().as_bytes(), ("127.0.0.1", self.port)).await.map_err(JobError::permanent)?;
        Ok(())
    }
}

/// Sleeps, reporting progress: a slow job to kill a worker under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sleep {
    /// How long, in milliseconds.
    pub ms: u64,
}

impl Job for Sleep {
    const KIND: &'static str = "diag.sleep";
    type Context = ();
    async fn run(self, ctx: JobContext<()>) -> Result<(), JobError> {
        ctx.progress(&format!("sleeping {} ms", self.ms)).await.map_err(JobError::retry)?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => Ok(()),
            _ = ctx.cancel.cancelled() => Err(JobError::retry(anyhow!("cancelled while sleeping"))),
        }
    }
}

/// Sends `start <seq>` to `127.0.0.1:port` when it starts, then waits until its
/// attempt is cancelled (the job deleted while it runs) or `ms` pass, and sends
/// `stop <seq>` when it sees the cancellation: lets a benchmark time a delete to
/// the attempt stopping from the caller's side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    /// The UDP port on 127.0.0.1 the benchmark listens on.
    pub port: u16,
    /// The sample's number.
    pub seq: u64,
    /// The longest it waits, in milliseconds.
    pub ms: u64,
}

impl Job for Hold {
    const KIND: &'static str = "diag.hold";
    type Context = ();
    async fn run(self, ctx: JobContext<()>) -> Result<(), JobError> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(JobError::permanent)?;
        let to = ("127.0.0.1", self.port);
        socket.send_to(format!("start {}", self.seq).as_bytes(), to).await.map_err(JobError::permanent)?;
        tokio::select! {
            () = ctx.cancelled() => {
                socket.send_to(format!("stop {}", self.seq).as_bytes(), to).await.map_err(JobError::permanent)?;
                Err(JobError::permanent(anyhow!("cancelled")))
            }
            () = tokio::time::sleep(Duration::from_millis(self.ms)) => Ok(()),
        }
    }
}

/// Always fails with `message`: exercises retries and the dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fail {
    /// The error message.
    pub message: String,
    /// Fail permanently (dead at once) instead of retrying.
    #[serde(default)]
    pub permanent: bool,
}

impl Job for Fail {
    const KIND: &'static str = "diag.fail";
    type Context = ();
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        let err = anyhow!("{}", self.message).context("diag.fail was asked to fail");
        Err(if self.permanent { JobError::permanent(err) } else { JobError::retry(err) })
    }
}
