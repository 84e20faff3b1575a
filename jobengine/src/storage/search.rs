//! The dashboard's job list, with its text search through an index (migration
//! 1041): SQLite's FTS5 trigram table `job_search`, PostgreSQL's pg_trgm GIN
//! index on `job_search.body`. Both hold, per job, `kind || ' ' || args || ' '
//! || last_error` and answer a case-insensitive substring test, as the scan they
//! replace did.

use database::{Dialect as Backend, Query, query};

use super::{JobRow, ListQuery, Store};
use crate::error::StorageError;

/// The trigram tokenizer indexes three characters at a time: shorter text has no
/// trigram to look up, so it is searched by a scan as before.
const MIN_INDEXED_CHARS: usize = 3;

impl Store {
    /// A page of jobs in one state, newest first.
    ///
    /// # Errors
    /// A database failure.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError> {
        Ok(self.list_query(q, "").fetch_all(self.db.read()).await?)
    }

    /// The plan of [`Store::list`]'s statement for `q`, as the backend prints it
    /// (PostgreSQL: `EXPLAIN` text; SQLite: `EXPLAIN QUERY PLAN` details), to
    /// check that a search walks the index.
    ///
    /// # Errors
    /// A database failure.
    pub async fn explain_list(&self, q: &ListQuery) -> Result<String, StorageError> {
        let lines: Vec<String> = match self.db.dialect() {
            Backend::Postgres => self.list_query(q, "EXPLAIN ").scalars(self.db.read()).await?,
            Backend::Sqlite => {
                let rows: Vec<(i64, i64, i64, String)> =
                    self.list_query(q, "EXPLAIN QUERY PLAN ").fetch_all(self.db.read()).await?;
                rows.into_iter().map(|r| r.3).collect()
            }
        };
        Ok(lines.join("\n"))
    }

    fn list_query(&self, q: &ListQuery, prefix: &str) -> Query {
        let text = q.text.as_deref().filter(|t| !t.is_empty());
        let sql = match (text, self.db.dialect()) {
            (None, _) => "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3
                          ORDER BY id DESC LIMIT $4"
                .to_owned(),
            // Newest matches first, straight from the FTS index (it walks rowids in
            // either direction), each looked up in `jobs` until the page is full.
            (Some(t), Backend::Sqlite) if t.chars().count() >= MIN_INDEXED_CHARS => {
                "SELECT jobs.* FROM job_search CROSS JOIN jobs
                 WHERE job_search MATCH $5 AND job_search.rowid < $3 AND jobs.id = job_search.rowid
                   AND jobs.state = $1 AND ($2 IS NULL OR jobs.kind = $2)
                 ORDER BY job_search.rowid DESC LIMIT $4"
                    .to_owned()
            }
            // `lower()` on both sides as the index's body is stored; the default
            // escape character is the backslash `like_escape` uses. The planner picks
            // the GIN index for rare text, the state index for common text.
            (Some(_), Backend::Postgres) => "SELECT * FROM jobs
                 WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3
                   AND id IN (SELECT job_id FROM job_search WHERE body LIKE lower($5))
                 ORDER BY id DESC LIMIT $4"
                .to_owned(),
            (Some(_), Backend::Sqlite) => "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3
                   AND lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) LIKE lower($5) ESCAPE '\\'
                 ORDER BY id DESC LIMIT $4"
                .to_owned(),
        };
        let arg = text.map(|t| match self.db.dialect() {
            Backend::Sqlite if t.chars().count() >= MIN_INDEXED_CHARS => fts_phrase(t),
            _ => format!("%{}%", like_escape(t)),
        });
        let q = query(format!("{prefix}{sql}"))
            .bind(q.state.as_str())
            .bind(&q.kind)
            .bind(q.before_id.unwrap_or(i64::MAX))
            .bind(i64::from(q.limit));
        if text.is_some() { q.bind(arg) } else { q }
    }
}

/// `text` as one FTS5 phrase: with the trigram tokenizer, a match is a
/// substring (case-insensitive). Double quotes are doubled; nothing else in a
/// quoted phrase is syntax.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Escapes `LIKE`'s wildcards (and the escape character) in user text.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
