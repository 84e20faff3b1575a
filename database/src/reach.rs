//! [`Reach`]: whether the PostgreSQL server answers right now, so that requests
//! during an outage fail within seconds instead of each waiting out the pool.
//!
//! sqlx's pool takes a refused connection for a server starting up and retries
//! it until the acquire timeout ([`crate::PG_ACQUIRE_TIMEOUT`], 30 s): with the
//! server stopped, every request waited 30 s before answering "unavailable",
//! and a `/metrics` scrape, two queries, 60 s. The timeout itself cannot be
//! shorter: under load a query may rightly queue for a connection. So the
//! handle keeps its own view of the server, one per server (a handle's sibling
//! databases share it):
//!
//! - **suspect**: a connection wanted for [`PROBE_AFTER`] and not yet had, a
//!   failure that looks like a lost server, or a `LISTEN` connection that
//!   dropped starts one probe: a fresh connection of its own, given
//!   [`PROBE_TIMEOUT`]. Requests keep waiting meanwhile.
//! - **down**: the probe could not connect. Requests that arrive in the first
//!   [`OUTAGE_GRACE`] of the outage wait for the rest of it (a restart of a
//!   second or two stays invisible to them); after it, every request, waiting
//!   or new, fails at once with [`DbError::Down`], which transports answer as
//!   UNAVAILABLE / 503. The probe runs again every [`PROBE_EVERY`].
//! - **up**: the first probe that connects ends the outage. A probe that
//!   connects while the pool is merely busy changes nothing; the request goes
//!   on waiting as before, and no other probe starts for [`PROBE_QUIET`].
//!
//! Only taking a connection for a request is gated (queries on the handle's
//! pool, [`crate::Db::begin`]); a query already running is never cut short.
//! Background loops that use the pool directly (claims, the completer,
//! listeners) are not gated: they retry by themselves.
//!
//! Written here rather than taken from a circuit-breaker crate: those count
//! failed calls, and the trouble is that each call takes 30 s to fail; the
//! decision here comes from a probe beside the waiting calls.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{DbError, sqlx_unavailable};

/// How long a request waits for a connection before the server is probed.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long a probe's connection may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the probe runs again while the server is down.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long requests that arrive during an outage still wait for its end.
pub const OUTAGE_GRACE: Duration = Duration::from_secs(5);
/// After a probe that connected, how long before another may start.
pub const PROBE_QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum State {
    /// Answering as far as we know; `probed`: when a probe last connected (for
    /// [`PROBE_QUIET`]).
    Up {
        probed: Option<Instant>,
    },
    /// A probe is running.
    Suspect,
    Down {
        since: Instant,
        reason: Arc<str>,
    },
}

/// What one handle (and its siblings) knows about its PostgreSQL server. See
/// the module's documentation.
pub struct Reach {
    opts: PgConnectOptions,
    server: String,
    state: watch::Sender<State>,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach").field("server", &self.server).field("state", &*self.state.borrow()).finish()
    }
}

impl Reach {
    /// The view of the server `opts` connects to; up until shown otherwise.
    pub(crate) fn new(opts: PgConnectOptions) -> Arc<Self> {
        let server = crate::db::server_of(&opts);
        Arc::new(Self { opts, server, state: watch::Sender::new(State::Up { probed: None }) })
    }

    /// The options connections to the server are made with.
    pub(crate) fn options(&self) -> &PgConnectOptions {
        &self.opts
    }

    /// Runs `take()` (a pool acquire, or a `BEGIN` on a pooled connection),
    /// unless the server has been down longer than [`OUTAGE_GRACE`]; probes the
    /// server if it is still waiting after [`PROBE_AFTER`], and gives up on it
    /// once the outage is older than the grace. When an outage ends while it
    /// waits, `take()` starts again: the pool's own retry of a refused
    /// connection backs off exponentially (2.56 s steps after 5 s), and would
    /// keep the request waiting after the server is back. Dropping a `take()`
    /// half-way is safe: it has written nothing.
    pub(crate) async fn gate<T, F>(self: &Arc<Self>, take: impl Fn() -> F) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut state = self.state.subscribe();
        let mut give_up = self.give_up_at(&state.borrow_and_update());
        if give_up.is_some_and(|at| at <= Instant::now()) {
            return Err(self.down_error());
        }
        let taking = take();
        tokio::pin!(taking);
        let probe_at = tokio::time::sleep(PROBE_AFTER);
        tokio::pin!(probe_at);
        let mut probed = false;
        loop {
            let deadline = async {
                match give_up {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = &mut taking => return Ok(self.observe(got)?),
                () = &mut probe_at, if !probed => {
                    probed = true;
                    self.suspect();
                }
                changed = state.changed() => {
                    // The sender lives in `self`, which outlives this loop.
                    if changed.is_ok() {
                        let was_down = give_up.is_some();
                        give_up = self.give_up_at(&state.borrow_and_update());
                        if was_down && matches!(*state.borrow(), State::Up { .. }) {
                            taking.set(take());
                        }
                    }
                }
                () = deadline => return Err(self.down_error()),
            }
        }
    }

    /// Passes `result` on; an error that looks like a lost server (a reset
    /// connection, one closed by a shutdown) starts a probe.
    pub(crate) fn observe<T>(self: &Arc<Self>, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.as_ref().is_err_and(sqlx_unavailable) {
            self.suspect();
        }
        result
    }

    /// When a request waiting now should give up: the end of the outage's grace.
    fn give_up_at(&self, state: &State) -> Option<Instant> {
        match state {
            State::Down { since, .. } => Some(*since + OUTAGE_GRACE),
            State::Up { .. } | State::Suspect => None,
        }
    }

    /// [`DbError::Down`] for the outage under way (or a generic one if it
    /// ended a moment ago).
    fn down_error(&self) -> DbError {
        let (lasted, reason) = match &*self.state.borrow() {
            State::Down { since, reason } => (since.elapsed(), reason.to_string()),
            State::Up { .. } | State::Suspect => (Duration::ZERO, "it stopped answering".to_owned()),
        };
        DbError::Down { server: self.server.clone(), lasted: Duration::from_secs(lasted.as_secs()), reason }
    }

    /// Starts a probe, unless one is running, the server is known down (its
    /// probe runs already), or a probe connected less than [`PROBE_QUIET`] ago.
    pub(crate) fn suspect(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let start = self.state.send_if_modified(|s| match s {
            State::Up { probed } if !probed.is_some_and(|at| at.elapsed() < PROBE_QUIET) => {
                *s = State::Suspect;
                true
            }
            _ => false,
        });
        if start {
            runtime.spawn(probe_until_up(Arc::downgrade(self)));
        }
    }
}

/// Probes until the server answers; stops early when the last handle on it
/// is gone.
async fn probe_until_up(reach: Weak<Reach>) {
    loop {
        let Some(me) = reach.upgrade() else { return };
        let answer = probe(&me.opts).await;
        match answer {
            Ok(()) => {
                let was = me.state.send_replace(State::Up { probed: Some(Instant::now()) });
                if let State::Down { since, .. } = was {
                    tracing::info!(server = %me.server, down_for = ?since.elapsed(), "PostgreSQL answers again");
                }
                return;
            }
            Err(reason) => {
                me.state.send_if_modified(|s| match s {
                    State::Down { .. } => false,
                    _ => {
                        tracing::warn!(server = %me.server, error = %reason,
                            "PostgreSQL does not answer; requests fail after {OUTAGE_GRACE:?} until it does");
                        *s = State::Down { since: Instant::now(), reason: reason.into() };
                        true
                    }
                });
            }
        }
        drop(me);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// One connection attempt: `Err` with the cause when the server could not be
/// reached (refused, reset, no answer in time, shutting down or starting up);
/// `Ok` when it answered, even with a refusal of its own (too many clients, a
/// wrong password): it is there, and the pool reports such errors itself.
async fn probe(opts: &PgConnectOptions) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(opts)).await {
        Err(_) => Err(format!("no answer to a connection within {PROBE_TIMEOUT:?}")),
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Ok(())
        }
        Ok(Err(e)) if sqlx_unavailable(&e) => Err(e.to_string()),
        Ok(Err(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use super::*;
    use crate::db::{Db, Pools};
    use crate::forward::Forwarder;
    use crate::query::query;

    async fn select_one(db: &Db) -> Result<i64, DbError> {
        query("SELECT CAST(1 AS BIGINT)").scalar::<i64>(db.read()).await
    }

    fn reach_of(db: &Db) -> Arc<Reach> {
        match &db.pools {
            Pools::Postgres(_, reach) => reach.clone(),
            Pools::Sqlite { .. } => panic!("a PostgreSQL handle"),
        }
    }

    #[tokio::test]
    async fn an_outage_fails_requests_after_its_grace_and_ends_when_the_server_answers() {
        let forwarder = Forwarder::new().await;
        forwarder.restore().await;
        let db = Db::connect(&forwarder.url()).await.expect("open through the forwarder");
        assert_eq!(select_one(&db).await.expect("the server answers"), 1);

        forwarder.cut();
        // (The cut is done once the forwarder's tasks have run to their end.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The pool retries the refused connection for 30 s; the probe started
        // after PROBE_AFTER finds the server gone, and the request gives up at
        // the end of the outage's grace.
        let started = StdInstant::now();
        let err = select_one(&db).await.expect_err("the server is gone");
        let took = started.elapsed();
        assert!(matches!(err, DbError::Down { .. }) && err.is_unavailable(), "{err:?}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{}", forwarder.port())), "{err}");
        let most = PROBE_AFTER + OUTAGE_GRACE + Duration::from_secs(2);
        assert!(took >= OUTAGE_GRACE && took < most, "the first request waited {took:?}");

        // Past the grace, requests and transactions fail at once.
        let started = StdInstant::now();
        assert!(matches!(select_one(&db).await, Err(DbError::Down { .. })));
        assert!(matches!(db.begin().await.err(), Some(DbError::Down { .. })));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(200), "failed in {took:?}");

        // The probe finds the server back within a PROBE_EVERY or two.
        forwarder.restore().await;
        let back = StdInstant::now();
        loop {
            match select_one(&db).await {
                Ok(1) => break,
                other => assert!(back.elapsed() < Duration::from_secs(10), "still {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back.elapsed() < PROBE_EVERY * 3, "back after {:?}", back.elapsed());
        db.close().await;
    }

    #[tokio::test]
    async fn an_outage_shorter_than_the_grace_only_delays_requests() {
        let forwarder = std::sync::Arc::new(Forwarder::new().await);
        forwarder.restore().await;
        let db = Db::connect(&forwarder.url()).await.expect("open through the forwarder");
        assert_eq!(select_one(&db).await.expect("the server answers"), 1);

        forwarder.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Back 2.7 s in: the pool's own retries of the refused connection come
        // at 2.55 s and then 5.11 s; the probe, every second from PROBE_AFTER,
        // sees the server at about 3 s, and the request starts over at once.
        let back = forwarder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2700)).await;
            back.restore().await;
        });
        let started = StdInstant::now();
        assert_eq!(select_one(&db).await.expect("answered once the server is back"), 1);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(2600), "it waited for the server: {took:?}");
        assert!(took < PROBE_AFTER + PROBE_EVERY * 2 + Duration::from_millis(700), "answered after {took:?}");
        db.close().await;
    }

    #[tokio::test]
    async fn a_busy_pool_is_not_an_outage() {
        let db = Db::connect(&crate::forward::test_url()).await.expect("open the test server");
        let pool = db.postgres().expect("PostgreSQL").clone();
        // Every connection of the pool held for longer than PROBE_AFTER.
        let mut held = Vec::new();
        for _ in 0..crate::db::PG_POOL_SIZE {
            held.push(pool.acquire().await.expect("a connection"));
        }
        let release = tokio::spawn(async move {
            tokio::time::sleep(PROBE_AFTER * 2 + Duration::from_millis(500)).await;
            drop(held);
        });
        let started = StdInstant::now();
        assert_eq!(select_one(&db).await.expect("answered once a connection is free"), 1);
        assert!(started.elapsed() >= PROBE_AFTER * 2, "it waited for a connection");
        assert!(matches!(*reach_of(&db).state.borrow(), State::Up { .. }), "the probe found the server there");
        release.await.expect("released");
        db.close().await;
    }

    #[tokio::test]
    async fn a_dropped_listener_finds_the_outage_before_any_request() {
        let forwarder = Forwarder::new().await;
        forwarder.restore().await;
        let db = Db::connect(&forwarder.url()).await.expect("open through the forwarder");
        let (connected, mut listening) = tokio::sync::mpsc::unbounded_channel();
        let listen = db
            .listen(&["nothing"], "test listener", move |_| {
                let _ = connected.send(());
            })
            .expect("PostgreSQL listens");
        let listener = tokio::spawn(listen);
        listening.recv().await.expect("listening");

        forwarder.cut();
        let reach = reach_of(&db);
        let started = StdInstant::now();
        while !matches!(*reach.state.borrow(), State::Down { .. }) {
            assert!(started.elapsed() < Duration::from_secs(3), "not found down: {reach:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        listener.abort();
        db.close().await;
    }
}
