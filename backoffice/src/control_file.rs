//! The SQLite control database's file (`app.db`), which holds every tenant's
//! name, admin and password: a start without it next to tenant files is refused,
//! and a server whose file is deleted while it runs stops loudly.
//!
//! Why: SQLite creates a missing file on open, so a deleted `app.db` used to
//! give an empty control plane at the next start with every tenant orphaned;
//! and a running process keeps writing to the deleted file's inode, work that
//! no restart will see. PostgreSQL keeps the control plane and the tenants on
//! one server: nothing to check there.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often a running server looks at its control database's file.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The SQLite file `database_url` names, unless it is PostgreSQL or in memory.
fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    if !database_url.starts_with("sqlite:") {
        return None;
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(database_url).ok()?;
    let path = opts.get_filename();
    (path.as_os_str() != ":memory:").then(|| path.to_path_buf())
}

/// Refuses to start on SQLite when the control database named by
/// `database_url` does not exist but `data_dir/tenants` holds tenant databases:
/// the control database was deleted or moved, and opening would create an empty
/// one, orphaning every tenant (their names, admins and passwords live in the
/// control database). PostgreSQL keeps both on one server; nothing to check.
///
/// # Errors
/// The situation above, with what to do.
pub fn refuse_orphaned_tenants(database_url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let Some(control) = sqlite_file(database_url) else { return Ok(()) };
    if control.exists() {
        return Ok(());
    }
    let dir = data_dir.join("tenants");
    let tenants = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.ends_with(".db") && crate::tenant_db::is_tenant_db_name(&n[..n.len() - 3]))
                })
                .count()
        })
        .unwrap_or(0);
    if tenants > 0 {
        anyhow::bail!(
            "refusing to start: the control database {control} does not exist, but {dir} holds {tenants} tenant \
             database(s). It was deleted or moved, and starting would create an empty one and orphan every \
             tenant. Restore {control} from a backup (or point DATABASE_URL at it); to really start over, move \
             {dir} away first.",
            control = control.display(),
            dir = dir.display(),
        );
    }
    Ok(())
}

/// Watches the SQLite control database's file every [`CHECK_EVERY`] until
/// `stop` fires. When the file is deleted or replaced by another, logs an error,
/// fires `stop` (the server shuts down) and returns what happened, for the
/// process to exit with. Returns `None` at once on PostgreSQL, and when `stop`
/// fires for another reason.
pub async fn watch(database_url: String, stop: CancellationToken) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let path = sqlite_file(&database_url)?;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    // The file was opened (and made, if new) before this is called: missing now
    // means deleted already.
    let first = std::fs::metadata(&path).ok().map(id);
    let mut now = first;
    loop {
        if now.is_none() || now != first {
            let what = if now.is_none() { "was deleted" } else { "was replaced by another file" };
            let why = format!(
                "the control database {} {what} while the server ran: what is written now would be lost. Stopping; \
                 restore the file from a backup before starting again",
                path.display()
            );
            tracing::error!("{why}");
            stop.cancel();
            return Some(why);
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        now = std::fs::metadata(&path).ok().map(id);
    }
}
