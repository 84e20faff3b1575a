//! Copying tables from an SQLite database into a PostgreSQL one with the same
//! schema (both migrated by the same migrations), and checking that both ends hold
//! the same rows: the move of a growing installation from the embedded SQLite to
//! PostgreSQL (`server move-to-postgres`).
//!
//! # How
//! - **Which tables**: every table of the source except sqlx's migration ledger
//!   and SQLite's own (and FTS shadow tables, which their virtual table rebuilds),
//!   parents before children (foreign keys), so the target's constraints hold at
//!   every insert.
//! - **Which columns**: those both ends have, by name; values keep their type
//!   (integer, real, text, blob) and are cast to the target column's type in SQL.
//! - **Identity columns** are copied as they are (`OVERRIDING SYSTEM VALUE`), and
//!   their sequences are moved past the highest id afterwards, so new rows never
//!   collide with moved ones.
//! - **Batches**: the source is read by `rowid` ranges and written as multi-row
//!   `INSERT`s, so a table of millions of jobs streams through bounded memory.
//! - **Checksums**: each row's values are written in one canonical text form and
//!   hashed (SHA-256); a table's checksum is the wrapping sum of its rows' hashes,
//!   so it does not depend on row order (SQLite and PostgreSQL order text keys
//!   differently). Counts and checksums are compared on both ends after the copy.
//!
//! The caller owns atomicity: it passes a source transaction (SQLite's write
//! lock, so nothing changes during the copy) and a target transaction (all or
//! nothing on PostgreSQL).

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, PgConnection, Row, SqliteConnection, TypeInfo, ValueRef};

use crate::error::DbError;
use crate::query::Arg;

/// Source rows per read and per `INSERT` (fewer for wide tables: PostgreSQL takes
/// at most 65,535 parameters per statement).
const BATCH_ROWS: usize = 1000;

/// One table's rows and checksum on one end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    /// Rows in the table.
    pub rows: u64,
    /// The order-independent checksum of its rows (hex).
    pub checksum: String,
}

/// The order-independent sum of row hashes.
#[derive(Default)]
struct Summer {
    rows: u64,
    sum: u128,
}

impl Summer {
    fn add(&mut self, values: &[Arg]) {
        let mut h = Sha256::new();
        for v in values {
            // One canonical form per value: its type and its text, so 1 and '1'
            // differ, and a field boundary cannot be forged by content.
            let text = match v {
                Arg::Int(Some(i)) => format!("i{i}"),
                Arg::Float(Some(f)) => format!("f{f:?}"),
                Arg::Text(Some(s)) => format!("t{}:{s}", s.len()),
                Arg::Bytes(Some(b)) => {
                    format!("b{}:{}", b.len(), b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                }
                _ => "n".to_owned(),
            };
            h.update(text.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    fn finish(self) -> TableSum {
        TableSum { rows: self.rows, checksum: format!("{:032x}", self.sum) }
    }
}

fn quoted(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The source's tables, parents before children.
///
/// # Errors
/// The source cannot be read.
pub async fn sqlite_tables(conn: &mut SqliteConnection) -> Result<Vec<String>, DbError> {
    let all: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    // FTS5 virtual tables and their shadow tables are rebuilt from their content
    // tables by the target's own migrations/triggers: never copied.
    let virtuals: Vec<&str> = all
        .iter()
        .filter(|(_, sql)| sql.as_deref().is_some_and(|s| s.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE")))
        .map(|(n, _)| n.as_str())
        .collect();
    let tables: Vec<String> = all
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !virtuals.iter().any(|v| n.as_str() == *v || n.starts_with(&format!("{v}_"))))
        .cloned()
        .collect();
    let mut parents: Vec<(String, Vec<String>)> = Vec::new();
    for t in &tables {
        let refs: Vec<String> =
            sqlx::query_scalar(&format!("SELECT \"table\" FROM pragma_foreign_key_list({})", sql_str(t)))
                .fetch_all(&mut *conn)
                .await?;
        parents.push((t.clone(), refs));
    }
    // Parents first; a table naming itself (a tree) does not wait on itself.
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < parents.len() {
        let before = ordered.len();
        for (t, refs) in &parents {
            if !ordered.contains(t) && refs.iter().all(|r| r == t || ordered.contains(r) || !tables.contains(r)) {
                ordered.push(t.clone());
            }
        }
        if ordered.len() == before {
            return Err(DbError::Io(std::io::Error::other("foreign keys form a cycle between tables")));
        }
    }
    Ok(ordered)
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A source column's value as a portable argument.
fn sqlite_value(row: &SqliteRow, i: usize) -> Result<Arg, DbError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Arg::Text(None));
    }
    // SQLite's storage class of this value (columns are typed loosely).
    let class = raw.type_info().name().to_ascii_uppercase();
    Ok(match class.as_str() {
        "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => Arg::Int(Some(row.try_get::<i64, _>(i)?)),
        "REAL" | "FLOAT" | "DOUBLE" => Arg::Float(Some(row.try_get::<f64, _>(i)?)),
        "BLOB" => Arg::Bytes(Some(row.try_get::<Vec<u8>, _>(i)?)),
        _ => Arg::Text(Some(row.try_get::<String, _>(i)?)),
    })
}

/// A target column's value as a portable argument.
fn pg_value(row: &PgRow, i: usize) -> Result<Arg, DbError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Arg::Text(None));
    }
    Ok(match row.column(i).type_info().name() {
        "INT2" => Arg::Int(Some(i64::from(row.try_get::<i16, _>(i)?))),
        "INT4" => Arg::Int(Some(i64::from(row.try_get::<i32, _>(i)?))),
        "INT8" => Arg::Int(Some(row.try_get::<i64, _>(i)?)),
        "BOOL" => Arg::Int(Some(i64::from(row.try_get::<bool, _>(i)?))),
        "FLOAT4" => Arg::Float(Some(f64::from(row.try_get::<f32, _>(i)?))),
        "FLOAT8" => Arg::Float(Some(row.try_get::<f64, _>(i)?)),
        "BYTEA" => Arg::Bytes(Some(row.try_get::<Vec<u8>, _>(i)?)),
        _ => Arg::Text(Some(row.try_get::<String, _>(i)?)),
    })
}

/// The target's columns of `table` with their SQL types, in table order.
async fn pg_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<(String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT column_name::text, format_type(a.atttypid, a.atttypmod) \
         FROM information_schema.columns c \
         JOIN pg_attribute a ON a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass \
                            AND a.attname = c.column_name \
         WHERE c.table_schema = current_schema() AND c.table_name = $1 ORDER BY c.ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// The source's columns of `table`, in table order.
async fn sqlite_columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info({})", sql_str(table)))
        .fetch_all(&mut *conn)
        .await?)
}

/// The columns both ends have, with the target's type: what is copied.
async fn shared_columns(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, String)>, DbError> {
    let source = sqlite_columns(from, table).await?;
    let target = pg_columns(to, table).await?;
    if target.is_empty() {
        return Err(DbError::Io(std::io::Error::other(format!("the target has no table {table}: is it migrated?"))));
    }
    Ok(target.into_iter().filter(|(c, _)| source.contains(c)).collect())
}

/// Copies every row of `table` and returns the source's count and checksum (of
/// the shared columns). The target table must be empty.
///
/// # Errors
/// Either end refused a statement (the target's constraints included).
pub async fn copy_table(from: &mut SqliteConnection, to: &mut PgConnection, table: &str) -> Result<TableSum, DbError> {
    let cols = shared_columns(from, to, table).await?;
    let names = cols.iter().map(|(c, _)| quoted(c)).collect::<Vec<_>>().join(", ");
    let per_insert = BATCH_ROWS.min(60_000 / cols.len().max(1)).max(1);
    let mut sum = Summer::default();
    let mut after = i64::MIN;
    loop {
        let rows: Vec<SqliteRow> = sqlx::query(&format!(
            "SELECT rowid, {names} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT {per_insert}",
            quoted(table)
        ))
        .bind(after)
        .fetch_all(&mut *from)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get::<i64, _>(0)?;
        let mut values: Vec<Arg> = Vec::with_capacity(rows.len() * cols.len());
        for row in &rows {
            let start = values.len();
            for i in 0..cols.len() {
                values.push(sqlite_value(row, i + 1)?);
            }
            sum.add(&values[start..]);
        }
        let mut tuples = Vec::with_capacity(rows.len());
        let mut n = 0;
        for _ in &rows {
            let slots: Vec<String> = cols
                .iter()
                .map(|(_, ty)| {
                    n += 1;
                    // SQLite keeps booleans as 0/1, and PostgreSQL casts only int4 to boolean.
                    if ty == "boolean" { format!("(${n}::int4)::boolean") } else { format!("${n}::{ty}") }
                })
                .collect();
            tuples.push(format!("({})", slots.join(", ")));
        }
        let sql =
            format!("INSERT INTO {} ({names}) OVERRIDING SYSTEM VALUE VALUES {}", quoted(table), tuples.join(", "));
        let mut q = sqlx::query::<sqlx::Postgres>(&sql);
        for v in values {
            q = match v {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q.execute(&mut *to).await?;
    }
    // Identity and serial columns: new rows start past the moved ones.
    for (c, _) in &cols {
        let seq: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
            .bind(quoted(table))
            .bind(c)
            .fetch_one(&mut *to)
            .await?;
        if let Some(seq) = seq {
            sqlx::query(&format!(
                "SELECT setval($1, COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quoted(c),
                quoted(table)
            ))
            .bind(seq)
            .execute(&mut *to)
            .await?;
        }
    }
    Ok(sum.finish())
}

/// The count and checksum of `table` on the target, over `columns` (from
/// [`copied_columns`], so both ends sum the same columns in the same order).
///
/// # Errors
/// The target cannot be read.
pub async fn pg_sum(to: &mut PgConnection, table: &str, columns: &[String]) -> Result<TableSum, DbError> {
    let names = columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
    let mut sum = Summer::default();
    let sql = format!("SELECT {names} FROM {}", quoted(table));
    let mut rows = sqlx::query(&sql).fetch(&mut *to);
    while let Some(row) = rows.try_next().await? {
        let values = (0..columns.len()).map(|i| pg_value(&row, i)).collect::<Result<Vec<_>, _>>()?;
        sum.add(&values);
    }
    Ok(sum.finish())
}

/// The columns of `table` that both ends have, in the target's order: what
/// [`copy_table`] copies and [`pg_sum`] sums.
///
/// # Errors
/// Either end cannot be read.
pub async fn copied_columns(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, DbError> {
    Ok(shared_columns(from, to, table).await?.into_iter().map(|(c, _)| c).collect())
}

/// Rows in `table` on the target (to check it is empty before a copy).
///
/// # Errors
/// The target cannot be read.
pub async fn pg_count(to: &mut PgConnection, table: &str) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quoted(table))).fetch_one(&mut *to).await?)
}
