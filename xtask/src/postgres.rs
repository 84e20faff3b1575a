//! A throw-away PostgreSQL cluster for the tests.
//!
//! The storage tests create a database per test on the server named by
//! `TEST_DATABASE_URL`. When the caller already set it we use theirs; otherwise we
//! start a [`PgCluster`] (fsync off: the data is thrown away), export its URL for
//! the child processes, and stop and delete it when the guard drops.

use anyhow::Context;
use testkit::PgCluster;

/// The PostgreSQL server the tests use.
pub struct TestDatabase {
    /// For `TEST_DATABASE_URL`: the server's admin database, as superuser.
    pub url: String,
    /// The cluster we started, if we did; stopped when this drops.
    _cluster: Option<PgCluster>,
}

/// Makes sure there is a PostgreSQL server for `TEST_DATABASE_URL`, starting a
/// throw-away one unless the environment already names one. Keep the returned
/// value alive while tests run.
pub fn ensure_postgres() -> anyhow::Result<TestDatabase> {
    if from_environment()
        && let Ok(url) = std::env::var("TEST_DATABASE_URL")
    {
        eprintln!("xtask: using TEST_DATABASE_URL from the environment");
        return Ok(TestDatabase { url, _cluster: None });
    }
    let pg = PgCluster::start(false).context("starting a throw-away PostgreSQL cluster")?;
    eprintln!("xtask: PostgreSQL running, TEST_DATABASE_URL={}", pg.url);
    Ok(TestDatabase { url: pg.url.clone(), _cluster: Some(pg) })
}

/// Whether the caller names a server in `TEST_DATABASE_URL` (then no cluster is
/// started and PostgreSQL's binaries are not needed).
pub fn from_environment() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty())
}
