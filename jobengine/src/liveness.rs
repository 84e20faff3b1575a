//! Knowing that a worker died within a second, not a lease later.
//!
//! A lease catches every way a worker can stop (killed, frozen, cut off from the
//! database, on another host), but only once it expires. A dead process can be
//! known sooner, and its jobs taken back by the next rescuer pass:
//!
//! - **PostgreSQL**: each worker holds a session-level advisory lock named for it
//!   (`(LOCK_CLASS, hashtext(worker id))`) on a connection of its own for as long
//!   as it runs. The server drops the lock the moment that session ends, which a
//!   killed process's closed socket ends at once. The rescuer tries the lock of each
//!   worker that holds processing jobs with `pg_try_advisory_xact_lock` in a
//!   statement of its own (so it is released again at once): when it gets it, the
//!   owner is gone. A hash collision can only make a dead worker look alive (its
//!   jobs then wait for the lease), never the reverse.
//! - **SQLite**: the workers share the machine (one database file), so a worker
//!   records its boot, pid namespace and process start time (from `/proc`, so a
//!   reused pid is not taken for it); a rescuer on the same host, boot and
//!   namespace sees whether that process still exists.
//!
//! A process never judges its own workers dead: while the database restarts, a
//! worker's lock is gone until its connection is made again, and its own
//! rescuer would otherwise take back the jobs it is still running (and keep
//! taking each one it claims next) until then. Other processes may, which the
//! fence makes safe; the lock's connection is checked every [`PING_EVERY`] so
//! that gap stays short.
//!
//! A frozen process (SIGSTOP) keeps its socket, lock and pid: it is left to the
//! lease, and its late completion to the `lease_seq` fence. Workers that record
//! nothing (older versions, systems without `/proc`) are left to the lease too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use database::{Dialect as Backend, query};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::StorageError;
use crate::storage::Store;

/// The first key of the workers' advisory locks ("jobs"), so they cannot collide
/// with the application's own advisory locks.
pub const LOCK_CLASS: i32 = 0x6A6F_6273;
/// `job_workers.liveness` of a worker holding its advisory lock.
const PG_LOCK: &str = "pg-advisory-lock";
/// How often the lock's connection is checked (and re-made, lock and all, when
/// lost): after a database restart, other processes may take this worker's jobs
/// until then.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Ids of the workers this process runs (see the module docs).
pub(crate) type LocalWorkers = Arc<Mutex<HashSet<String>>>;

/// Held by a running worker: while it lives, other workers can tell this
/// process is alive. Dropping it gives the lock up.
pub struct Alive {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    local: LocalWorkers,
    worker: String,
}

impl Alive {
    /// Gives the lock up and waits for its connection to close.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(mut local) = self.local.lock() {
            local.remove(&self.worker);
        }
    }
}

impl Store {
    /// Makes worker `worker` (registered already) knowable as alive or dead; see
    /// the module documentation. Call before its first claim.
    ///
    /// # Errors
    /// A database failure.
    pub async fn hold_alive(&self, worker: &str) -> Result<Alive, StorageError> {
        let stop = CancellationToken::new();
        if let Ok(mut local) = self.local_workers.lock() {
            local.insert(worker.to_owned());
        }
        let alive = |stop, task| Alive { stop, task, local: self.local_workers.clone(), worker: worker.to_owned() };
        let Some(pool) = self.db().postgres().cloned() else {
            if let Some(token) = proc_token(std::process::id()) {
                query("UPDATE job_workers SET liveness = $1 WHERE id = $2")
                    .bind(token)
                    .bind(worker)
                    .execute(self.db().write())
                    .await?;
            }
            return Ok(alive(stop, None));
        };
        let Some(mut conn) = lock(&pool, worker).await? else {
            // Its jobs are left to the lease, as an older worker's are.
            tracing::warn!(worker, "another session holds this worker's liveness lock key; relying on leases");
            return Ok(alive(stop, None));
        };
        query("UPDATE job_workers SET liveness = $1 WHERE id = $2")
            .bind(PG_LOCK)
            .bind(worker)
            .execute(self.db().write())
            .await?;
        let (s, worker) = (stop.clone(), worker.to_owned());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = s.cancelled() => break,
                    () = tokio::time::sleep(PING_EVERY) => {}
                }
                if conn.ping().await.is_ok() {
                    continue;
                }
                // The session (and with it the lock) is gone: until it is back,
                // rescuers may take this worker's jobs, and the fence refuses its
                // late results.
                tracing::warn!(worker = %worker, "lost the liveness lock's connection; taking the lock again");
                let mut delays = database::backoff::retry_delays(Duration::from_millis(100));
                conn = loop {
                    match lock(&pool, &worker).await {
                        Ok(Some(c)) => break c,
                        Ok(None) => tracing::warn!(worker = %worker, "the liveness lock is held elsewhere; retrying"),
                        Err(e) => {
                            tracing::warn!(worker = %worker, error = %e, "taking the liveness lock failed; retrying");
                        }
                    }
                    tokio::select! {
                        () = s.cancelled() => return,
                        () = tokio::time::sleep(delays.next().unwrap_or(database::backoff::MAX_DELAY)) => {}
                    }
                };
            }
            let _ = conn.close().await;
        });
        Ok(alive(stop, Some(task)))
    }

    /// Workers known dead that still hold processing jobs (never one of this
    /// process's own).
    ///
    /// # Errors
    /// A database failure.
    pub async fn gone_workers(&self) -> Result<Vec<String>, StorageError> {
        let mut gone = self.workers_without_life().await?;
        if let Ok(local) = self.local_workers.lock() {
            gone.retain(|w| !local.contains(w));
        }
        Ok(gone)
    }

    async fn workers_without_life(&self) -> Result<Vec<String>, StorageError> {
        match self.db().dialect() {
            Backend::Postgres => Ok(query(
                "SELECT w.id FROM job_workers w
                 WHERE w.liveness = $1
                   AND EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'processing' AND j.worker_id = w.id)
                   AND pg_try_advisory_xact_lock(CAST($2 AS INTEGER), hashtext(w.id))",
            )
            .bind(PG_LOCK)
            .bind(LOCK_CLASS)
            .scalars(self.db().read())
            .await?),
            Backend::Sqlite => {
                let Some(mine) = proc_token(std::process::id()) else { return Ok(Vec::new()) };
                let Some((space, _)) = mine.rsplit_once(':') else { return Ok(Vec::new()) };
                let rows: Vec<(String, i64, String)> = query(
                    "SELECT w.id, w.pid, w.liveness FROM job_workers w
                     WHERE w.hostname = $1 AND w.liveness LIKE 'proc:%'
                       AND EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'processing' AND j.worker_id = w.id)",
                )
                .bind(crate::worker::hostname())
                .fetch_all(self.db().read())
                .await?;
                Ok(rows
                    .into_iter()
                    .filter(|(_, pid, token)| {
                        // Only processes in our own pid space can be judged.
                        token.rsplit_once(':').is_some_and(|(s, _)| s == space)
                            && u32::try_from(*pid).map_or(true, |pid| proc_token(pid).as_deref() != Some(token))
                    })
                    .map(|(id, _, _)| id)
                    .collect())
            }
        }
    }
}

/// A dedicated connection (out of the pool, so no one else uses the session)
/// holding `worker`'s advisory lock; `None` when another live session holds that
/// key (a hash collision: never waited for, or this worker could not start).
async fn lock(pool: &sqlx::PgPool, worker: &str) -> Result<Option<sqlx::PgConnection>, StorageError> {
    let mut conn = pool.acquire().await?.detach();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(LOCK_CLASS)
        .bind(worker)
        .fetch_one(&mut conn)
        .await?;
    Ok(held.then_some(conn))
}

/// `proc:<boot id>:<pid namespace>:<start time>` of a live process `pid`, or
/// `None` when it does not exist (or is a zombie) or `/proc` cannot tell. The
/// start time (clock ticks after boot, `/proc/<pid>/stat` field 22) tells a
/// reused pid apart; boot and namespace say whose pids these are.
fn proc_token(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after
    // the last ')' start with the state (field 3).
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(rest.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    let start = rest.get(19)?;
    Some(format!("proc:{}:{}:{start}", boot.trim(), ns.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_has_a_token_and_a_missing_one_none() {
        let me = proc_token(std::process::id()).expect("this process, on Linux");
        assert!(me.starts_with("proc:"), "{me}");
        assert_eq!(proc_token(std::process::id()).as_deref(), Some(me.as_str()), "stable");
        // Above the kernel's maximum pid: never a process.
        assert_eq!(proc_token(u32::MAX - 1), None);
    }
}
