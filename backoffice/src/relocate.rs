//! Moving an installation from the embedded SQLite to PostgreSQL
//! (`server move-to-postgres`): the control plane (tenants, users, sessions, jobs
//! with their history, outbox, notifications, …) and every tenant's database.
//!
//! # Guarantees
//! - **Nothing is lost or changed on the source**: it is only read, inside one
//!   SQLite write transaction, so no process can change it during the copy.
//! - **All or nothing per database**: each target database is filled in one
//!   PostgreSQL transaction, committed only once its counts and checksums match
//!   the source's ([`database::copy`]).
//! - **Refuses to run** against a live installation (a worker or an embedded
//!   worker heartbeat within the engine's live window: stop servers and workers first), into
//!   a target that already holds data, or from a source that is not SQLite.
//! - **Re-runnable**: if it stops half-way, the control plane either moved whole
//!   or not at all, and a tenant database left behind is empty or complete; run it
//!   again into a fresh database.
//!
//! Not copied: the worker registry (`job_workers`, rebuilt by the workers that
//! start on PostgreSQL). Jobs that were running when the source stopped move as
//! `processing` and are taken back by the rescuer when their lease expires.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use database::copy::{self, TableSum};
use database::{Db, Dialect, query};

use crate::tenant_db::TenantDbs;

/// Tables that describe running processes, not data, and the dashboard's
/// figures the target's triggers rebuild as the jobs arrive (copying them too
/// would count every job twice): never moved.
const NOT_MOVED: &[&str] =
    &["job_workers", "job_counts", "job_count_deltas", "job_throughput", "job_throughput_deltas"];

/// One table of one database, on both ends.
#[derive(Debug, Clone)]
pub struct MovedTable {
    /// `control` or the tenant database's name.
    pub database: String,
    /// The table.
    pub table: String,
    /// Rows and checksum read from SQLite.
    pub source: TableSum,
    /// Rows and checksum read back from PostgreSQL before committing.
    pub target: TableSum,
}

/// What a move did.
#[derive(Debug, Clone, Default)]
pub struct MoveReport {
    /// Every table moved, with its counts and checksums on both ends.
    pub tables: Vec<MovedTable>,
    /// Tenants whose database file was missing on the source (nothing to move),
    /// with their status.
    pub missing_tenant_files: Vec<(String, String)>,
}

/// Moves the SQLite installation at `source_url` (tenant files under
/// `data_dir/tenants`) into the empty PostgreSQL database `target_url`, telling
/// `progress` what it does.
///
/// # Errors
/// A refusal (live installation, non-empty target, wrong backends), an unreadable
/// source, an unreachable target, or a checksum mismatch (nothing committed for
/// that database).
pub async fn move_to_postgres(
    source_url: &str,
    data_dir: &Path,
    target_url: &str,
    progress: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<MoveReport> {
    let source = Db::open_existing(source_url).await.context("opening the source database (DATABASE_URL)")?;
    ensure!(
        source.dialect() == Dialect::Sqlite,
        "the source (DATABASE_URL) must be an SQLite database; it is already PostgreSQL"
    );
    let target = Db::connect(target_url).await.context("opening the target PostgreSQL database")?;
    ensure!(target.dialect() == Dialect::Postgres, "the target must be a postgres:// URL");
    // Both ends at this build's schema, so the columns line up.
    for db in [&source, &target] {
        db.migrate(jobengine::storage::migrations()).await.context("migrating the job tables")?;
        db.migrate(crate::db::migrations()).await.context("migrating the control plane")?;
    }
    refuse_if_live(&source).await?;
    // PostgreSQL's `jobs` is partitioned by id: the moved ids need partitions.
    let top: i64 =
        query("SELECT COALESCE(MAX(id), 0) FROM jobs").scalar(source.read()).await.context("reading job ids")?;
    jobengine::storage::reserve_ids(&target, top).await.context("making partitions of jobs for the moved ids")?;

    let mut report = MoveReport::default();
    // The source's write lock for the whole move: nothing changes under us.
    let mut from = source.begin().await.context("locking the source for the move")?;
    let tenants: Vec<(String, String)> = query("SELECT db_name, status FROM tenants ORDER BY created_at")
        .fetch_all(&mut from)
        .await
        .context("listing tenants")?;
    {
        let from_conn = from.sqlite().context("source transaction")?;
        copy_database("control", from_conn, &target, &mut report, progress).await?;
    }

    let source_tenants = TenantDbs::new(&source, data_dir.to_path_buf());
    let target_tenants = TenantDbs::new(&target, data_dir.to_path_buf());
    for (db_name, status) in tenants {
        if !source_tenants.exists(&db_name).await? {
            progress(format!("tenant database {db_name} ({status}): no file on the source, nothing to move"));
            report.missing_tenant_files.push((db_name, status));
            continue;
        }
        let tenant_source = source_tenants.open(&db_name).await?;
        target_tenants.create(&db_name).await?;
        let tenant_target = target_tenants.open(&db_name).await?;
        target_tenants.migrate(&tenant_target).await?;
        let mut tf = tenant_source.begin().await.with_context(|| format!("reading tenant database {db_name}"))?;
        let conn = tf.sqlite().context("tenant source transaction")?;
        let result = copy_database(&db_name, conn, &tenant_target, &mut report, progress).await;
        tf.rollback().await.ok();
        tenant_source.close().await;
        tenant_target.close().await;
        result?;
    }
    // Only read: give the lock back untouched.
    from.rollback().await.context("releasing the source")?;
    Ok(report)
}

/// Fails when a worker (or a server's embedded worker) beat within the engine's
/// live window, as the dashboard counts live workers.
async fn refuse_if_live(source: &Db) -> anyhow::Result<()> {
    let jobs = jobengine::Jobs::new(jobengine::Store::open(source.clone()).await?, Arc::new(jobengine::SystemClock));
    let window = i64::try_from(jobengine::metrics::LIVE_WINDOW.as_micros()).unwrap_or(i64::MAX);
    let live = jobs.workers(window).await.context("reading the worker registry")?;
    if !live.is_empty() {
        let ids: Vec<&str> = live.iter().map(|w| w.id.as_str()).collect();
        bail!(
            "the installation is live: worker(s) {} beat within the last {} s. Stop every server and worker \
             using this database, then run the move again",
            ids.join(", "),
            jobengine::metrics::LIVE_WINDOW.as_secs()
        );
    }
    Ok(())
}

/// Copies every table of one database in one target transaction, committed only
/// when counts and checksums match.
async fn copy_database(
    name: &str,
    from: &mut database::sqlx::SqliteConnection,
    target: &Db,
    report: &mut MoveReport,
    progress: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<()> {
    let tables: Vec<String> = copy::sqlite_tables(from)
        .await
        .with_context(|| format!("{name}: listing tables"))?
        .into_iter()
        .filter(|t| !NOT_MOVED.contains(&t.as_str()))
        .collect();
    let mut to = target.begin().await.with_context(|| format!("{name}: opening a transaction on the target"))?;
    let to_conn = to.postgres().context("target transaction")?;
    for table in &tables {
        let rows =
            copy::pg_count(to_conn, table).await.with_context(|| format!("{name}.{table}: counting the target"))?;
        ensure!(
            rows == 0,
            "the target already holds data ({name}: {rows} rows in {table}); move into an empty database"
        );
    }
    let mut moved = Vec::new();
    for table in &tables {
        let source =
            copy::copy_table(from, to_conn, table).await.with_context(|| format!("{name}.{table}: copying"))?;
        progress(format!("{name}.{table}: {} rows", source.rows));
        moved.push((table.clone(), source));
    }
    for (table, source) in moved {
        let columns = copy::copied_columns(from, to_conn, &table).await?;
        let target_sum =
            copy::pg_sum(to_conn, &table, &columns).await.with_context(|| format!("{name}.{table}: reading back"))?;
        ensure!(
            target_sum == source,
            "{name}.{table}: the copy differs from the source ({} rows, checksum {} vs {} rows, checksum {}); \
             nothing of {name} was committed",
            source.rows,
            source.checksum,
            target_sum.rows,
            target_sum.checksum
        );
        report.tables.push(MovedTable { database: name.to_owned(), table, source, target: target_sum });
    }
    to.commit().await.with_context(|| format!("{name}: committing on the target"))?;
    Ok(())
}
