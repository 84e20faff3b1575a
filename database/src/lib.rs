//! The database the job engine and the domain both stand on: one handle ([`Db`])
//! on an SQLite file or a PostgreSQL server, its transactions ([`Tx`]),
//! portable queries written once ([`query`]), migrations, `LISTEN` with
//! reconnect, and sibling databases (one per tenant).
//!
//! # Why one layer
//! Both backends are first-class. Most SQL is the same on both (`$1`
//! placeholders, TEXT and 64-bit integers, `ON CONFLICT`, `RETURNING`), so it is
//! written once and [`Query`] runs it on whichever backend the handle is on: the
//! backend is matched in exactly one place, this crate. What the dialects force to
//! differ (the job engine's claim, completion and rescue statements) is written
//! per backend against [`Db::sqlite`] / [`Db::postgres`] and [`Tx::sqlite`] /
//! [`Tx::postgres`]. sqlx's `Any` driver was rejected: it cannot express SQLite's
//! single-writer discipline (`BEGIN IMMEDIATE` on one connection) nor PostgreSQL's
//! arrays, which the engine's batch statements use.
//!
//! # SQLite discipline
//! SQLite allows one writer at a time. Two pools keep that cheap: writes go through
//! a pool of one connection, so writers in this process queue on an async pool
//! (fair, no sleeping) instead of on the file lock, and every transaction starts
//! with `BEGIN IMMEDIATE`, taking the lock before reading so it cannot fail to
//! upgrade later; reads use a pool of several connections that WAL runs beside the
//! writer. Other processes on the same file wait on the busy timeout.
//!
//! # Layout
//! - [`db`]: the handle, connecting, the read and write targets;
//! - [`backoff`]: the one retry schedule of every reconnect loop;
//! - [`copy`]: tables from SQLite into PostgreSQL, with checksums on both ends
//!   (the move to PostgreSQL);
//! - [`query`]: portable queries and their arguments;
//! - [`tx`]: transactions, after-commit actions, transaction-scoped locks;
//! - [`migrate`]: migrations for both backends;
//! - [`listen`]: a PostgreSQL `LISTEN` that reconnects by itself;
//! - [`reach`]: whether the PostgreSQL server answers, so that requests fail
//!   fast during an outage;
//! - [`changes`]: commits to an SQLite file by any process, from file events;
//! - [`siblings`]: databases beside the main one (SQLite files in a folder, or
//!   databases on the same PostgreSQL server);
//! - [`error`]: what can fail ([`DbError`]);
//! - `testing` (feature): fresh databases on both backends for tests.

pub mod backoff;
pub mod changes;
pub mod copy;
pub mod db;
pub mod error;
#[cfg(test)]
mod forward;
pub mod listen;
pub mod migrate;
pub mod query;
pub mod reach;
pub mod siblings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;

pub use db::{Conn, Db, Dialect, PG_ACQUIRE_TIMEOUT};
pub use error::DbError;
pub use migrate::Migrations;
pub use query::{Arg, FromRows, Query, Scalar, query};
pub use siblings::Siblings;
/// sqlx, for `#[derive(sqlx::FromRow)]` and dialect-specific code.
pub use sqlx;
pub use tx::Tx;
