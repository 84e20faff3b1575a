//! The in-process hub that fans notifications out to open streams.
//!
//! Each `Subscribe` stream registers here under its user and session. The hub
//! never carries notifications themselves, only wake-ups: a woken stream reads
//! its user's rows after the last one it sent. So a stream holds no queue (a slow
//! client costs one pending wake-up, not a growing buffer), and a wake-up that is
//! lost (listener down) delays a toast but never loses it, since every reconnect
//! wakes every stream.
//!
//! Wake-ups come from [`run_sources`]:
//! - PostgreSQL: `LISTEN notifications` (payload `<id>:<user_id>`) and `LISTEN
//!   sessions_revoked` (payload the token's hash), through a listener that
//!   reconnects by itself and wakes everyone after each reconnect;
//! - SQLite: a look at the notifications after the last one seen and at the
//!   sessions revoked since the last look, after every commit to the file by any
//!   process (a worker here or in another process; see `database::changes`),
//!   and every [`POLL`] as the fallback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backoffice::notify::Notifications;
use database::Db;
use database::listen::ListenEvent;
use jobengine::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// How often SQLite is polled when no file event came.
pub const POLL: Duration = Duration::from_millis(200);

struct Entry {
    id: u64,
    token_hash: String,
    wake: Arc<Notify>,
    end: CancellationToken,
}

/// Open streams by user.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, Vec<Entry>>>,
    next: AtomicU64,
    open: AtomicU64,
}

/// One stream's place in the hub; leaves it when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    user_id: String,
    id: u64,
    /// Fired when the user has something new (or the hub lost track).
    pub wake: Arc<Notify>,
    /// Fired when the stream's session is revoked.
    pub end: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut users = self.hub.lock();
        if let Some(list) = users.get_mut(&self.user_id) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                users.remove(&self.user_id);
            }
        }
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a stream of `user_id` on the session whose token hashes to
    /// `token_hash`.
    pub fn register(self: &Arc<Self>, user_id: &str, token_hash: &str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let end = CancellationToken::new();
        let entry = Entry { id, token_hash: token_hash.to_owned(), wake: wake.clone(), end: end.clone() };
        self.lock().entry(user_id.to_owned()).or_default().push(entry);
        self.open.fetch_add(1, Ordering::Relaxed);
        Registration { hub: self.clone(), user_id: user_id.to_owned(), id, wake, end }
    }

    /// Wakes every stream of `user_id`.
    pub fn wake_user(&self, user_id: &str) {
        if let Some(list) = self.lock().get(user_id) {
            // `notify_one` keeps a permit when nobody waits: no wake-up is lost.
            list.iter().for_each(|e| e.wake.notify_one());
        }
    }

    /// Wakes every stream (after a gap in what the hub heard).
    pub fn wake_all(&self) {
        self.lock().values().flatten().for_each(|e| e.wake.notify_one());
    }

    /// Ends every stream of the session whose token hashes to `token_hash`.
    pub fn end_session(&self, token_hash: &str) {
        self.lock().values().flatten().filter(|e| e.token_hash == token_hash).for_each(|e| e.end.cancel());
    }

    /// Streams open now.
    pub fn open_streams(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// Feeds the hub until `stop` fires (see the module docs).
pub async fn run_sources(hub: Arc<Hub>, db: Db, clock: Arc<dyn Clock>, stop: CancellationToken) {
    let listen = db.listen(&["notifications", "sessions_revoked"], "notification listener", |event| match event {
        ListenEvent::Connected => hub.wake_all(),
        ListenEvent::Message { channel: "sessions_revoked", payload } => hub.end_session(payload),
        ListenEvent::Message { payload, .. } => {
            if let Some((_, user)) = payload.split_once(':') {
                hub.wake_user(user);
            }
        }
    });
    match listen {
        Some(listen) => {
            tokio::select! {
                () = listen => {}
                () = stop.cancelled() => {}
            }
        }
        // SQLite has no NOTIFY: poll.
        None => poll(hub.clone(), db.changes(), Notifications::new(db), clock, stop).await,
    }
}

async fn poll(
    hub: Arc<Hub>,
    changes: Option<database::changes::Changes>,
    notes: Notifications,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut delays = database::backoff::retry_delays(POLL);
    let mut last = loop {
        match notes.last_id().await {
            Ok(id) => break id,
            Err(e) => tracing::warn!(error = %e, "notification poller cannot start; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delays.next().unwrap_or(database::backoff::MAX_DELAY)) => {}
            () = stop.cancelled() => return,
        }
    };
    let mut revoked_since = clock.now();
    // Any commit to the file (a worker in this process or another writing a
    // notification) looks at once; the poll stays for what file events miss.
    let changed = Arc::new(Notify::new());
    let _feed = changes.map(|changes| {
        let (c, h) = (changed.clone(), hub.clone());
        // Only while someone listens: with no stream open a commit has no one
        // to wake (and a new stream reads its backlog itself).
        AbortOnDropHandle::new(tokio::spawn(changes.each(move || {
            if h.open_streams() > 0 {
                c.notify_one();
            }
        })))
    });
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = changed.notified() => {}
            () = stop.cancelled() => return,
        }
        match notes.recipients_after(last).await {
            Ok(rows) => {
                for (id, user) in rows {
                    last = last.max(id);
                    hub.wake_user(&user);
                }
            }
            Err(e) => tracing::warn!(error = %e, "polling notifications"),
        }
        // Look back one poll further than needed: a revocation committed just
        // as the last look ran is not missed (ending a stream twice is harmless).
        let now = clock.now();
        match notes.revoked_since(revoked_since - POLL.as_micros() as i64).await {
            Ok(hashes) => {
                hashes.iter().for_each(|h| hub.end_session(h));
                revoked_since = now;
            }
            Err(e) => tracing::warn!(error = %e, "polling revoked sessions"),
        }
    }
}
