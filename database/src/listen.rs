//! A PostgreSQL `LISTEN` that never gives up: it reconnects after any failure
//! (with backoff up to 5 s) and tells its owner about every (re)connect, so the
//! owner can catch up on what it may have missed while the connection was down.
//! The job engine wakes its workers with it; the server fans notifications out
//! with it. SQLite has nothing to listen to: [`Db::listen`] is `None` there and
//! callers poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::db::{Db, Pools};
use crate::reach::Reach;

/// What the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenEvent<'a> {
    /// Listening (again): anything sent while it was not is unknown, so catch up.
    Connected,
    /// A `NOTIFY` on `channel`.
    Message {
        /// The channel.
        channel: &'a str,
        /// The payload.
        payload: &'a str,
    },
}

/// Listens on `channels` for as long as the process runs, calling `on` for each
/// event. `name` labels log lines. A dropped connection makes `reach` probe
/// the server (an outage is then known before any request waits on it).
async fn listen_forever(
    pool: PgPool,
    reach: Arc<Reach>,
    channels: &[&str],
    name: &'static str,
    mut on: impl FnMut(ListenEvent<'_>) + Send,
) {
    let mut delays = crate::backoff::retry_delays(Duration::from_millis(100));
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "{name} cannot connect; retrying (polling covers the gap)");
                tokio::time::sleep(delays.next().unwrap_or(crate::backoff::MAX_DELAY)).await;
                continue;
            }
        };
        // Told of a lost connection at once (below), not after sqlx has
        // reconnected inside `try_recv`, which waits out the pool during an
        // outage.
        listener.eager_reconnect(false);
        if let Err(e) = listener.listen_all(channels.iter().copied()).await {
            tracing::warn!(error = %e, "{name}: LISTEN failed; retrying");
            tokio::time::sleep(delays.next().unwrap_or(crate::backoff::MAX_DELAY)).await;
            continue;
        }
        delays = crate::backoff::retry_delays(Duration::from_millis(100));
        on(ListenEvent::Connected);
        loop {
            // `try_recv` returns Ok(None) when the connection dropped. sqlx would
            // reconnect by itself on the next call, but without saying when; a
            // fresh listener does, so `Connected` comes only once LISTEN is in
            // place again and a catch-up then cannot miss anything. A drop may
            // be the server going away: `reach` finds out.
            match listener.try_recv().await {
                Ok(Some(n)) => on(ListenEvent::Message { channel: n.channel(), payload: n.payload() }),
                Ok(None) => {
                    tracing::warn!("{name}: connection lost; reconnecting");
                    reach.suspect();
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{name} failed; reconnecting");
                    reach.suspect();
                    break;
                }
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(crate::backoff::MAX_DELAY)).await;
    }
}

impl Db {
    /// On PostgreSQL, a future that listens on `channels` for as long as it is
    /// polled (see [`listen_forever`]); `None` on SQLite, which has no `NOTIFY`.
    pub fn listen<'a>(
        &self,
        channels: &'a [&'a str],
        name: &'static str,
        on: impl FnMut(ListenEvent<'_>) + Send + 'a,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'a> {
        match &self.pools {
            Pools::Postgres(pool, reach) => Some(listen_forever(pool.clone(), reach.clone(), channels, name, on)),
            Pools::Sqlite { .. } => None,
        }
    }
}
