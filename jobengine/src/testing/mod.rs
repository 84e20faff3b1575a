//! Fresh databases for tests, on both backends (feature `testing`).
//!
//! SQLite: a new file in a temporary directory. PostgreSQL: a new database on the
//! server named by `TEST_DATABASE_URL` (`cargo xtask test` starts a throw-away
//! cluster and sets it). A PostgreSQL test without that variable fails loudly: it
//! is never skipped in silence.

use std::sync::Arc;

pub use testkit::{PgCluster, Watchdog, percentile, rss_kib};

use crate::{Jobs, ManualClock, SystemClock};

pub use database::testing::Which;

/// A fresh database that lives as long as the value, with engine handles on it.
pub struct TestDb {
    /// Its `DATABASE_URL`.
    pub url: String,
    _db: database::testing::TestDb,
}

impl TestDb {
    /// A fresh, empty database on `which`.
    ///
    /// # Panics
    /// When it cannot be made (no `TEST_DATABASE_URL` for PostgreSQL, server down).
    pub async fn new(which: Which) -> Self {
        let db = database::testing::TestDb::new(which).await;
        Self { url: db.url.clone(), _db: db }
    }

    /// A new SQLite file.
    ///
    /// # Panics
    /// When no temporary folder can be made.
    pub fn sqlite() -> Self {
        let db = database::testing::TestDb::sqlite();
        Self { url: db.url.clone(), _db: db }
    }

    /// A new database on the test PostgreSQL server.
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` is unset or the server refuses.
    pub async fn postgres() -> Self {
        let db = database::testing::TestDb::postgres().await;
        Self { url: db.url.clone(), _db: db }
    }

    /// A [`Jobs`] on this database with the wall clock.
    ///
    /// # Panics
    /// When the database cannot be opened or migrated.
    pub async fn jobs(&self) -> Jobs {
        Jobs::connect(&self.url).await.expect("open test database")
    }

    /// A [`Jobs`] on this database with a manual clock.
    ///
    /// # Panics
    /// As [`TestDb::jobs`].
    pub async fn jobs_with_clock(&self, clock: ManualClock) -> Jobs {
        let db = crate::Db::connect(&self.url).await.expect("open test database");
        Jobs::open(db, Arc::new(clock)).await.expect("migrate test database")
    }
}

/// A manual clock starting at the real current time.
pub fn manual_clock() -> ManualClock {
    ManualClock::new(crate::Clock::now(&SystemClock))
}

/// Declares, for each `name`, the tests `name::sqlite` and `name::postgres`, each
/// running `async fn name(which: Which)` on a multi-threaded runtime: one suite,
/// every backend. A test still running at [`testkit::TEST_LIMIT`] aborts the
/// run with its name and stacks ([`Watchdog`]).
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let _dog = $crate::testing::Watchdog::new(concat!(module_path!(), "::sqlite"));
                super::$name($crate::testing::Which::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let _dog = $crate::testing::Watchdog::new(concat!(module_path!(), "::postgres"));
                super::$name($crate::testing::Which::Postgres).await
            }
        }
    )*};
}
