//! Portable queries: SQL both backends accept, written once, run on either.
//!
//! ```ignore
//! let t: Option<Tenant> = query("SELECT * FROM tenants WHERE id = $1").bind(id).fetch_optional(db.read()).await?;
//! query("UPDATE tenants SET step = $1 WHERE id = $2").bind(step).bind(id).execute(db.write()).await?;
//! let n: i64 = query("SELECT COUNT(*) FROM users").scalar(&mut tx).await?;
//! ```
//!
//! Placeholders are `$1, $2, …` (sqlx's SQLite driver maps `$N` to the N-th
//! argument, as PostgreSQL does). Arguments are the few types both backends store
//! the same way: 64-bit integers, text, floats, bytes, each possibly NULL. Rows
//! decode into any type deriving `sqlx::FromRow` whose fields decode on both
//! backends ([`FromRows`]); single values into [`Scalar`]s.

use std::borrow::Cow;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, Sqlite};

use crate::db::Conn;
use crate::error::DbError;

/// An argument both backends accept.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A 64-bit integer.
    Int(Option<i64>),
    /// Text.
    Text(Option<String>),
    /// A double.
    Float(Option<f64>),
    /// Bytes.
    Bytes(Option<Vec<u8>>),
}

macro_rules! arg_from {
    ($variant:ident: $($t:ty => $conv:expr),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Arg::$variant(Some(($conv)(v)))
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(v: Option<$t>) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Arg::$variant(v.map($conv))
            }
        }
    )*};
}

arg_from!(Int: i64 => |v| v, i32 => i64::from, u32 => i64::from);
arg_from!(Text: String => |v| v, &str => str::to_owned, &String => String::clone);
arg_from!(Float: f64 => |v| v);
arg_from!(Bytes: Vec<u8> => |v| v);

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

/// A row type both backends decode: derive `sqlx::FromRow` with fields of
/// portable types (integers, `String`, `Option`s of them).
pub trait FromRows:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'static
{
}
impl<T> FromRows for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A single value both backends decode (`i64`, `String`, `Option<…>`, …).
pub trait Scalar:
    sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Postgres>
    + Send
    + Unpin
    + 'static
{
}
impl<T> Scalar for T where
    T: sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Postgres>
        + Send
        + Unpin
        + 'static
{
}

/// A statement and its arguments. Build with [`query`] and [`Query::bind`].
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is run"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A query of `sql` (placeholders `$1, $2, …`).
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query { sql: sql.into(), args: Vec::new() }
}

/// Binds every argument of `$args` to the sqlx query `$q`.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs `$make::<Backend, ..>(sql)` with the arguments bound, then `$method` on
/// the target: the one place the backend is chosen. A PostgreSQL pool's
/// connection is taken through [`crate::reach::Reach::gate`] (fails fast while
/// the server is down).
macro_rules! dispatch {
    ($self:ident, $conn:expr, $make:ident $(<$t:ty>)?, $method:ident) => {
        match $conn {
            Conn::SqlitePool(p) => bind_args!(sqlx::$make::<Sqlite $(, $t)?>(&$self.sql), $self.args).$method(p).await,
            Conn::PgPool(p, reach) => {
                let mut c = reach.gate(|| p.acquire()).await?;
                reach.observe(bind_args!(sqlx::$make::<Postgres $(, $t)?>(&$self.sql), $self.args).$method(&mut *c).await)
            }
            Conn::Sqlite(c) => bind_args!(sqlx::$make::<Sqlite $(, $t)?>(&$self.sql), $self.args).$method(c).await,
            Conn::Pg(c) => bind_args!(sqlx::$make::<Postgres $(, $t)?>(&$self.sql), $self.args).$method(c).await,
        }
    };
}

impl Query {
    /// Adds the next argument (`$1`, then `$2`, …).
    pub fn bind(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }

    /// The SQL, for messages.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Runs a statement; returns the rows it affected.
    ///
    /// # Errors
    /// The database refused it or is unreachable.
    pub async fn execute<'c>(self, conn: impl Into<Conn<'c>>) -> Result<u64, DbError> {
        Ok(match conn.into() {
            Conn::SqlitePool(p) => {
                bind_args!(sqlx::query::<Sqlite>(&self.sql), self.args).execute(p).await?.rows_affected()
            }
            Conn::PgPool(p, reach) => {
                let mut c = reach.gate(|| p.acquire()).await?;
                reach
                    .observe(bind_args!(sqlx::query::<Postgres>(&self.sql), self.args).execute(&mut *c).await)?
                    .rows_affected()
            }
            Conn::Sqlite(c) => {
                bind_args!(sqlx::query::<Sqlite>(&self.sql), self.args).execute(c).await?.rows_affected()
            }
            Conn::Pg(c) => bind_args!(sqlx::query::<Postgres>(&self.sql), self.args).execute(c).await?.rows_affected(),
        })
    }

    /// Every row.
    ///
    /// # Errors
    /// As [`Query::execute`], or a row does not decode into `T`.
    pub async fn fetch_all<'c, T: FromRows>(self, conn: impl Into<Conn<'c>>) -> Result<Vec<T>, DbError> {
        Ok(dispatch!(self, conn.into(), query_as<T>, fetch_all)?)
    }

    /// The first row, if any.
    ///
    /// # Errors
    /// As [`Query::fetch_all`].
    pub async fn fetch_optional<'c, T: FromRows>(self, conn: impl Into<Conn<'c>>) -> Result<Option<T>, DbError> {
        Ok(dispatch!(self, conn.into(), query_as<T>, fetch_optional)?)
    }

    /// Exactly one row.
    ///
    /// # Errors
    /// As [`Query::fetch_all`], or there is no row (`sqlx::Error::RowNotFound`).
    pub async fn fetch_one<'c, T: FromRows>(self, conn: impl Into<Conn<'c>>) -> Result<T, DbError> {
        Ok(dispatch!(self, conn.into(), query_as<T>, fetch_one)?)
    }

    /// The first column of exactly one row.
    ///
    /// # Errors
    /// As [`Query::fetch_one`].
    pub async fn scalar<'c, T: Scalar>(self, conn: impl Into<Conn<'c>>) -> Result<T, DbError> {
        Ok(dispatch!(self, conn.into(), query_scalar<T>, fetch_one)?)
    }

    /// The first column of the first row, if there is a row.
    ///
    /// # Errors
    /// As [`Query::fetch_all`].
    pub async fn scalar_optional<'c, T: Scalar>(self, conn: impl Into<Conn<'c>>) -> Result<Option<T>, DbError> {
        Ok(dispatch!(self, conn.into(), query_scalar<T>, fetch_optional)?)
    }

    /// The first column of every row.
    ///
    /// # Errors
    /// As [`Query::fetch_all`].
    pub async fn scalars<'c, T: Scalar>(self, conn: impl Into<Conn<'c>>) -> Result<Vec<T>, DbError> {
        Ok(dispatch!(self, conn.into(), query_scalar<T>, fetch_all)?)
    }
}
