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

/// How many of a state's newest jobs a search first tests one by one (see
/// [`Store::list`]).
const RECENT: i64 = 2000;

impl Store {
    /// A page of jobs in one state, newest first; with `text`, those whose kind,
    /// arguments or last error contain it (case-insensitive).
    ///
    /// A search has two costs to choose between: walking the state's jobs newest
    /// first, testing each (cheap when the text is common: the page fills at
    /// once), or looking the text up in the index and keeping the matches in
    /// the state (cheap when the text is rare). Planners guess badly here (a
    /// `LIMIT` over a join makes PostgreSQL walk when matches are common overall
    /// but absent from the state), so the choice is made by what is found: the
    /// state's newest [`RECENT`] jobs are tested first; only when they hold no
    /// full page is the index asked for the older matches.
    ///
    /// # Errors
    /// A database failure.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<JobRow>, StorageError> {
        let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(query(
                "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3
                 ORDER BY id DESC LIMIT $4",
            )
            .bind(q.state.as_str())
            .bind(&q.kind)
            .bind(q.before_id.unwrap_or(i64::MAX))
            .bind(i64::from(q.limit))
            .fetch_all(self.db.read())
            .await?);
        };
        // One snapshot: the two steps see the same jobs.
        let mut tx = self.db.begin_read().await?;
        let before = q.before_id.unwrap_or(i64::MAX);
        let (floor, seen): (Option<i64>, i64) = query(
            "SELECT MIN(id), COUNT(*) FROM
               (SELECT id FROM jobs WHERE state = $1 AND id < $2 ORDER BY id DESC LIMIT $3) recent",
        )
        .bind(q.state.as_str())
        .bind(before)
        .bind(RECENT)
        .fetch_one(&mut tx)
        .await?;
        let Some(floor) = floor else {
            tx.rollback().await?;
            return Ok(Vec::new());
        };
        let pattern = format!("%{}%", like_escape(text));
        let mut rows: Vec<JobRow> = query(
            "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3 AND id >= $4
               AND lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) LIKE lower($5) ESCAPE '\\'
             ORDER BY id DESC LIMIT $6",
        )
        .bind(q.state.as_str())
        .bind(&q.kind)
        .bind(before)
        .bind(floor)
        .bind(pattern)
        .bind(i64::from(q.limit))
        .fetch_all(&mut tx)
        .await?;
        let missing = i64::from(q.limit) - rows.len() as i64;
        if missing > 0 && seen == RECENT {
            rows.extend(self.older_matches(&mut tx, q, text, floor, missing).await?);
        }
        tx.rollback().await?;
        Ok(rows)
    }

    /// Matches of `text` in `q`'s state below id `floor`, newest first, through
    /// the index.
    async fn older_matches(
        &self,
        tx: &mut database::Tx,
        q: &ListQuery,
        text: &str,
        floor: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>, StorageError> {
        Ok(self.older_query(q, text, floor, limit, "").fetch_all(tx).await?)
    }

    fn older_query(&self, q: &ListQuery, text: &str, floor: i64, limit: i64, prefix: &str) -> Query {
        let (sql, arg) = match self.db.dialect() {
            // Newest matches first, straight from the FTS index (it walks rowids in
            // either direction), each looked up in `jobs` until the page is full.
            Backend::Sqlite if text.chars().count() >= MIN_INDEXED_CHARS => (
                "SELECT jobs.* FROM job_search CROSS JOIN jobs
                 WHERE job_search MATCH $5 AND job_search.rowid < $3 AND jobs.id = job_search.rowid
                   AND jobs.state = $1 AND ($2 IS NULL OR jobs.kind = $2)
                 ORDER BY job_search.rowid DESC LIMIT $4",
                fts_phrase(text),
            ),
            Backend::Sqlite => (
                "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3
                   AND lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) LIKE lower($5) ESCAPE '\\'
                 ORDER BY id DESC LIMIT $4",
                format!("%{}%", like_escape(text)),
            ),
            // Every match from the GIN index first (materialized, so no `LIMIT`
            // tempts the planner into walking), then those in the state. The body
            // is stored lowercased; the default escape character is the backslash.
            Backend::Postgres => (
                "WITH matches AS MATERIALIZED
                   (SELECT job_id FROM job_search WHERE body LIKE lower($5) AND job_id < $3)
                 SELECT jobs.* FROM matches JOIN jobs ON jobs.id = matches.job_id
                 WHERE jobs.state = $1 AND ($2 IS NULL OR jobs.kind = $2)
                 ORDER BY jobs.id DESC LIMIT $4",
                format!("%{}%", like_escape(text)),
            ),
        };
        query(format!("{prefix}{sql}")).bind(q.state.as_str()).bind(&q.kind).bind(floor).bind(limit).bind(arg)
    }

    /// The plan of the index step of a search for `q` (as if the state's newest
    /// jobs held no match), as the backend prints it (PostgreSQL: `EXPLAIN`
    /// text; SQLite: `EXPLAIN QUERY PLAN` details), to check that it walks the
    /// index.
    ///
    /// # Errors
    /// A database failure.
    pub async fn explain_list(&self, q: &ListQuery) -> Result<String, StorageError> {
        let text = q.text.as_deref().unwrap_or_default();
        let floor = q.before_id.unwrap_or(i64::MAX);
        let limit = i64::from(q.limit);
        let lines: Vec<String> = match self.db.dialect() {
            Backend::Postgres => self.older_query(q, text, floor, limit, "EXPLAIN ").scalars(self.db.read()).await?,
            Backend::Sqlite => {
                let rows: Vec<(i64, i64, i64, String)> =
                    self.older_query(q, text, floor, limit, "EXPLAIN QUERY PLAN ").fetch_all(self.db.read()).await?;
                rows.into_iter().map(|r| r.3).collect()
            }
        };
        Ok(lines.join("\n"))
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
