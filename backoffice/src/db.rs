//! The control-plane database: the job engine's pools, the control-plane
//! migrations, and a macro that runs one query on whichever backend is configured.
//!
//! The domain's SQL is portable: `$1`-style placeholders (sqlx's SQLite driver
//! accepts them too), plain types (TEXT, 64-bit integers), no dialect functions. So
//! each query is written once and [`on_pool!`] / [`on_tx!`] compile it for both
//! backends. The job engine, whose SQL differs per dialect, keeps its own
//! implementations.

use jobengine::Pools;

use crate::error::Error;

/// Expands `$body` once per backend with `$p` bound to the pool: `write` for
/// statements that write (SQLite's single writer), `read` for queries.
#[macro_export]
macro_rules! on_pool {
    ($pools:expr, write, $p:ident => $body:expr) => {
        match $pools {
            jobengine::Pools::Sqlite { write: $p, .. } => $body,
            jobengine::Pools::Postgres($p) => $body,
        }
    };
    ($pools:expr, read, $p:ident => $body:expr) => {
        match $pools {
            jobengine::Pools::Sqlite { read: $p, .. } => $body,
            jobengine::Pools::Postgres($p) => $body,
        }
    };
}

/// Expands `$body` once per backend with `$c` bound to the transaction's connection.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match &mut $tx.tx {
            jobengine::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            jobengine::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// Runs the control-plane migrations (`migrations/{sqlite,postgres}/control`).
///
/// # Errors
/// A migration failed.
pub async fn migrate(pools: &Pools) -> Result<(), Error> {
    match pools {
        Pools::Sqlite { write, .. } => {
            let mut m = sqlx::migrate!("../migrations/sqlite/control");
            m.set_ignore_missing(true);
            m.run(write).await?;
        }
        Pools::Postgres(pool) => {
            let mut m = sqlx::migrate!("../migrations/postgres/control");
            m.set_ignore_missing(true);
            m.run(pool).await?;
        }
    }
    Ok(())
}
