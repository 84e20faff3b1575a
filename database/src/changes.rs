//! Commits to an SQLite file by any process, as they happen: SQLite's answer to
//! PostgreSQL's `NOTIFY`.
//!
//! SQLite has no way to tell another connection that something changed, so a
//! worker in another process used to see a new job only at its next poll. But in
//! WAL mode every commit, whoever makes it, is a write to the `-wal` file beside
//! the database, and the kernel reports writes to files (inotify on Linux, through
//! the `notify` crate). So a process watches the database's folder and treats a
//! write to the WAL (or to the database file itself, when a checkpoint or a
//! non-WAL connection writes it) as "something was committed; look again".
//!
//! It says *that* something changed, not *what*: listeners re-run their cheap
//! catch-up read (the worker's idle fetch, the notification hub's look after the
//! last id it saw), and keep their poll as the fallback for what a file event
//! cannot see (a file system without notifications, another machine on a
//! network share, a watch that failed to start).
//!
//! One watch per [`Db`] handle (shared by its clones), started by the first
//! [`Db::changes`] call; every caller gets its own [`Changes`] receiver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::db::Db;

/// The WAL write that makes a commit durable comes a few microseconds before
/// the wal-index update that makes it visible to readers, so a reader woken by
/// the write can look too early. Listeners are told again this much later.
const SETTLE: Duration = Duration::from_millis(2);

/// The file watch of one SQLite database, started on first use.
pub(crate) struct Feed {
    file: PathBuf,
    started: OnceLock<Option<Started>>,
}

struct Started {
    tx: watch::Sender<u64>,
    /// Dropping the watcher ends the watch; kept for the handle's life.
    _watcher: Mutex<notify::RecommendedWatcher>,
}

impl Feed {
    pub(crate) fn new(file: PathBuf) -> Arc<Self> {
        Arc::new(Self { file, started: OnceLock::new() })
    }

    fn start(&self) -> Option<&Started> {
        self.started
            .get_or_init(|| match watch_file(&self.file) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(file = %self.file.display(), error = %e,
                        "cannot watch the database for other processes' commits; polling only");
                    None
                }
            })
            .as_ref()
    }
}

/// Watches the folder of `file` for writes to `file` and its `-wal`.
fn watch_file(file: &Path) -> notify::Result<Started> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let mut wal = name.clone();
    wal.push("-wal");
    let (tx, _) = watch::channel(0u64);
    let sender = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_)) {
            return;
        }
        let ours = event.paths.iter().any(|p| p.file_name().is_some_and(|n| n == name || n == wal));
        if ours {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(Started { tx, _watcher: Mutex::new(watcher) })
}

/// One listener's view of the commits to an SQLite database (see the module
/// docs).
pub struct Changes {
    rx: watch::Receiver<u64>,
}

impl Changes {
    /// Calls `on_change` after every commit (several close together may count
    /// as one), and once more [`SETTLE`] later; returns when the handle's watch
    /// ends. Run it as a task beside the listener's poll.
    pub async fn each(mut self, mut on_change: impl FnMut() + Send) {
        while self.rx.changed().await.is_ok() {
            on_change();
            tokio::time::sleep(SETTLE).await;
            self.rx.borrow_and_update();
            on_change();
        }
    }
}

impl Db {
    /// On an SQLite file, a feed of commits by any process (see
    /// [`crate::changes`]); `None` on PostgreSQL (use [`Db::listen`]), for an
    /// in-memory database, or when the file cannot be watched (callers poll).
    pub fn changes(&self) -> Option<Changes> {
        let started = self.feed.as_ref()?.start()?;
        Some(Changes { rx: started.tx.subscribe() })
    }
}
