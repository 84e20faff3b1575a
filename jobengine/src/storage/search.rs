//! The dashboard's job list, with its text search through an index (migration
//! 1041): SQLite's FTS5 trigram table `job_search`, PostgreSQL's pg_trgm GIN
//! index on `job_search.body`. Both hold, per job, `kind || ' ' || args || ' '
//! || last_error` and answer a case-insensitive substring test, as the scan they
//! replace did.
//!
//! SQLite's triggers write the search row in the insert's transaction. On
//! PostgreSQL (migration 1070) a text change only queues the job's id in
//! `job_search_pending`, an insert statement the range of its jobs' ids in
//! `job_search_pending_ranges` (migration 1092), and [`Store::index_search`]
//! (run by every process's rescue pass, one process at a time) writes the rows
//! from the jobs' current text: a GIN insert per job made bulk enqueue three
//! times slower. A
//! search reads the index plus the queued jobs and re-checks each candidate
//! against its job's text, so it never misses a job or shows a stale match.
//!
//! Dead jobs' rows are indexed apart from every other job's (migration 1090:
//! SQLite's `job_search_dead` table, PostgreSQL's `dead` flag and two partial
//! GIN indexes). A search of dead jobs asks their index, a search of any other
//! state the other one: a text common in one of the two (a failure's message,
//! a kind of job that succeeds) is no cost to a search in the other. SQLite
//! moves a row between its tables in the transition's transaction; PostgreSQL
//! queues a job entering or leaving `dead` for the indexer like a text change.

use std::sync::LazyLock;

use database::{Dialect as Backend, Query, query};

use super::{JobRow, ListQuery, Store};
use crate::error::StorageError;
use crate::state::JobState;

/// The trigram tokenizer indexes three characters at a time: shorter text has no
/// trigram to look up, so it is searched by a scan as before.
const MIN_INDEXED_CHARS: usize = 3;

/// A state holding at most one job in this many is walked rather than searched
/// through the index (see [`SearchLimits::walk_states_up_to`]).
const WALK_SHARE: u64 = 20;

/// Queued search rows [`Store::index_search`] writes per statement (about
/// 50 ms of PostgreSQL's time).
const INDEX_BATCH: i64 = 5_000;

/// The advisory lock that lets one process at a time write queued search rows
/// (any constant unique to this purpose).
const INDEX_LOCK: i64 = 0x6a6f_6273_7365_6172; // "jobssear"

/// When a search walks a state instead of asking the index, and when it
/// subtracts the other states' jobs from the index's matches rather than
/// checking each match's state: decided from the counters, per search.
#[derive(Clone, Copy, Debug)]
pub struct SearchLimits {
    /// A state of at most this many jobs (or of at most one job in
    /// [`WALK_SHARE`]) is walked newest first, each job's text tested (a walk of
    /// 30,000 jobs takes about 20 ms): bounded by the state's size, where the
    /// index's matches are bounded only by the whole table's. Not dead jobs:
    /// their index is their own, so always asked.
    pub walk_states_up_to: u64,
    /// With at most this many jobs in the other states of the same index (all
    /// but the dead), their ids are read into a hash (PostgreSQL) or a
    /// temporary index (SQLite) and taken from the index's matches (about 2 ms
    /// per 10,000), instead of an index probe per match (about 3.5 µs each; a
    /// text common in a big state has hundreds of thousands).
    pub exclude_others_up_to: u64,
    /// How many of a state's newest jobs a search first tests one by one (see
    /// [`Store::list`]).
    pub first_step: u32,
    /// How many of a state's jobs each step of a walk tests after the first
    /// (one statement each).
    pub walk_step: u32,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self { walk_states_up_to: 30_000, exclude_others_up_to: 200_000, first_step: 2_000, walk_step: 10_000 }
    }
}

/// The ways a search below its first step can go (see [`Store::list`]).
enum Way {
    Walk,
    /// The other states, as an SQL list.
    IndexLessOthers(String),
    Index,
}

/// PostgreSQL's candidates for a search of `state` below id `$3` for pattern
/// `$5`: the matches in the GIN index of dead jobs' rows or of the others', and
/// the jobs still queued for the indexer, one by one (changed text, moves in and
/// out of `dead`) or by the id ranges inserts queue, each range a bounded walk
/// of `jobs_pkey` (see [`INDEX_RANGES`]) (a CTE, materialized so that no
/// `LIMIT` tempts the planner into walking).
fn pg_candidates(state: JobState) -> String {
    let dead = if state == JobState::Dead { "dead" } else { "NOT dead" };
    format!(
        "candidates AS MATERIALIZED
                   (SELECT job_id FROM job_search WHERE {dead} AND body LIKE lower($5) AND job_id < $3
                    UNION
                    SELECT job_id FROM job_search_pending WHERE job_id < $3
                    UNION
                    SELECT j.id FROM job_search_pending_ranges r
                    CROSS JOIN LATERAL (SELECT id FROM jobs WHERE id >= r.lo AND id <= r.hi AND id < $3 OFFSET 0) j)"
    )
}

/// SQLite's FTS5 table holding the search rows of `state`'s jobs.
fn sqlite_index(state: JobState) -> &'static str {
    if state == JobState::Dead { "job_search_dead" } else { "job_search" }
}

/// `jobs`' searchable text, lowercased, as `job_search.body` holds it.
const BODY: &str = "lower(kind || ' ' || args || ' ' || coalesce(last_error, ''))";

/// The indexer's statement for jobs queued one by one (changed text, moves in
/// and out of `dead`): up to `$1` of them.
static INDEX_SINGLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH taken AS (DELETE FROM job_search_pending
                        WHERE ctid = ANY (ARRAY(SELECT ctid FROM job_search_pending LIMIT $1))
                        RETURNING job_id),
              written AS (INSERT INTO job_search (job_id, body, dead)
                          SELECT id, {BODY}, state = 'dead' FROM jobs
                          WHERE id IN (SELECT job_id FROM taken) ORDER BY id
                          ON CONFLICT (job_id) DO UPDATE SET body = excluded.body, dead = excluded.dead)
         SELECT COUNT(*) FROM taken"
    )
});

/// The indexer's statement for inserted jobs, queued as one id range per
/// statement (migration 1092): the lowest ranges until they cover `$1` ids (at
/// least one range). The ranges of concurrent inserts can overlap, hence one
/// row per job; an id without a job (a rolled-back insert's) has none to
/// write. Each range is read by its own walk of `jobs_pkey` (`LATERAL`, kept
/// apart by `OFFSET 0`): as a join, the planner walked all of `jobs` in id
/// order to skip the sort, seconds a statement beside 10,000,000 jobs.
static INDEX_RANGES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH queued AS (SELECT ctid, hi - lo + 1 AS n, SUM(hi - lo + 1) OVER (ORDER BY lo, hi) AS upto
                         FROM job_search_pending_ranges),
              taken AS (DELETE FROM job_search_pending_ranges
                        WHERE ctid = ANY (ARRAY(SELECT ctid FROM queued WHERE upto - n < $1))
                        RETURNING lo, hi),
              written AS (INSERT INTO job_search (job_id, body, dead)
                          SELECT DISTINCT ON (j.id) j.id, {BODY}, j.state = 'dead'
                          FROM taken t
                          CROSS JOIN LATERAL (SELECT * FROM jobs WHERE id >= t.lo AND id <= t.hi OFFSET 0) j
                          ORDER BY j.id
                          ON CONFLICT (job_id) DO UPDATE SET body = excluded.body, dead = excluded.dead)
         SELECT CAST(COALESCE(SUM(hi - lo + 1), 0) AS BIGINT) FROM taken"
    )
});

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
    /// state's newest jobs ([`SearchLimits::first_step`]) are tested first;
    /// only when they hold no full page are the older jobs searched, in the
    /// cheapest of three ways the counters tell apart (see [`SearchLimits`]):
    /// walking on through the state when it is small; the index's matches less
    /// the jobs of the other states when those are few; else the index's
    /// matches, each checked against the state. Dead jobs are always searched
    /// through their own index.
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
        // One snapshot: every step sees the same jobs.
        let mut tx = self.db.begin_read().await?;
        if self.db.dialect() == Backend::Postgres {
            // Plans for these values, not generic ones: after five runs of a
            // prepared statement PostgreSQL may settle on a plan made without the
            // state and the id bounds, and walk the table's whole id range (240 ms
            // a search at 1,000,000 jobs, against 25 ms planned for the values).
            query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut tx).await?;
        }
        let limit = i64::from(q.limit);
        let mut rows: Vec<JobRow> = Vec::new();
        let mut cursor = q.before_id.unwrap_or(i64::MAX);
        let limits = self.search_limits();
        let mut chunk = i64::from(limits.first_step.max(1));
        let mut walking = false;
        loop {
            // The state's next `chunk` jobs below the cursor (an index-only walk
            // of `jobs_by_state`), then those of them that match.
            let (floor, seen): (Option<i64>, i64) = query(
                "SELECT MIN(id), COUNT(*) FROM
                   (SELECT id FROM jobs WHERE state = $1 AND id < $2 ORDER BY id DESC LIMIT $3) recent",
            )
            .bind(q.state.as_str())
            .bind(cursor)
            .bind(chunk)
            .fetch_one(&mut tx)
            .await?;
            let Some(floor) = floor else { break };
            rows.extend(self.walk_query(q, text, cursor, floor, limit - rows.len() as i64).fetch_all(&mut tx).await?);
            if rows.len() as i64 >= limit || seen < chunk {
                break;
            }
            cursor = floor;
            if !walking {
                // The newest hold no full page: walk on, or ask the index.
                match self.way(&mut tx, q.state, text).await? {
                    Way::Walk => {
                        walking = true;
                        chunk = i64::from(limits.walk_step.max(1));
                    }
                    way => {
                        let missing = limit - rows.len() as i64;
                        rows.extend(self.older_query(q, text, cursor, missing, way, "").fetch_all(&mut tx).await?);
                        break;
                    }
                }
            }
        }
        tx.rollback().await?;
        Ok(rows)
    }

    /// The jobs of `q`'s state with ids in `[floor, below)` whose text matches,
    /// newest first: with both bounds from a walk of `jobs_by_state`, the
    /// planner reads that index's range (given the values: see [`Store::list`]).
    fn walk_query(&self, q: &ListQuery, text: &str, below: i64, floor: i64, limit: i64) -> Query {
        query(format!(
            "SELECT * FROM jobs WHERE state = $1 AND ($2 IS NULL OR kind = $2) AND id < $3 AND id >= $4
               AND {BODY} LIKE lower($5) ESCAPE '\\'
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(q.state.as_str())
        .bind(&q.kind)
        .bind(below)
        .bind(floor)
        .bind(format!("%{}%", like_escape(text)))
        .bind(limit)
    }

    /// How [`Store::list`] searches below its first step, from the counters.
    async fn way(&self, tx: &mut database::Tx, state: JobState, text: &str) -> Result<Way, StorageError> {
        let limits = self.search_limits();
        let (in_state, dead, all): (i64, i64, i64) = query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = $1 THEN n ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN state = 'dead' THEN n ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(n), 0) AS BIGINT)
             FROM (SELECT state, n FROM job_counts UNION ALL SELECT state, n FROM job_count_deltas) c",
        )
        .bind(state.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let [in_state, dead, all] = [in_state, dead, all].map(|n| n.max(0) as u64);
        if text.chars().count() < MIN_INDEXED_CHARS {
            return Ok(Way::Walk);
        }
        if state == JobState::Dead {
            // Their own index, whose matches the state's size bounds as a walk's
            // would be: no worse than walking, and far better when the text is
            // common elsewhere (4 ms against 21-28 ms for a walk of 10,000).
            return Ok(Way::Index);
        }
        if in_state <= limits.walk_states_up_to {
            return Ok(Way::Walk);
        }
        // The jobs in the same index but in other states (dead jobs are apart).
        let others = all.saturating_sub(in_state).saturating_sub(dead);
        Ok(if in_state.saturating_mul(WALK_SHARE) <= all {
            Way::Walk
        } else if others <= limits.exclude_others_up_to {
            Way::IndexLessOthers(JobState::sql_list(
                JobState::ALL.into_iter().filter(|s| *s != state && *s != JobState::Dead),
            ))
        } else {
            Way::Index
        })
    }

    fn search_limits(&self) -> SearchLimits {
        *self.search_limits.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets how a search picks its way (tests force each way with it).
    pub fn set_search_limits(&self, limits: SearchLimits) {
        *self.search_limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// Matches of `text` in `q`'s state below id `floor`, newest first, through
    /// the index, the way `way` chose (`prefix`: `EXPLAIN` or nothing).
    fn older_query(&self, q: &ListQuery, text: &str, floor: i64, limit: i64, way: Way, prefix: &str) -> Query {
        let like = format!("%{}%", like_escape(text));
        let fts = sqlite_index(q.state);
        if let (Way::IndexLessOthers(others), Backend::Sqlite) = (&way, self.db.dialect()) {
            // The other states' ids, read once into a temporary index that each
            // match is looked up in (in memory, not the database's pages).
            return query(format!(
                "{prefix}SELECT jobs.* FROM {fts} CROSS JOIN jobs
                 WHERE {fts} MATCH $5 AND {fts}.rowid < $3
                   AND {fts}.rowid NOT IN (SELECT id FROM jobs WHERE state IN ({others}) AND id < $3)
                   AND jobs.id = {fts}.rowid AND jobs.state = $1 AND ($2 IS NULL OR jobs.kind = $2)
                 ORDER BY {fts}.rowid DESC LIMIT $4"
            ))
            .bind(q.state.as_str())
            .bind(&q.kind)
            .bind(floor)
            .bind(limit)
            .bind(fts_phrase(text));
        }
        if let Way::IndexLessOthers(others) = way {
            // Every candidate, less the (few) jobs in other states, read once
            // into a hash; the rest are in the state or gone. The survivors are
            // handed over as an array so that PostgreSQL reads them by key (as a
            // join it may scan all of `jobs` instead: 430 ms at 1M).
            let candidates = pg_candidates(q.state);
            return query(format!(
                "{prefix}WITH {candidates},
                 elsewhere AS MATERIALIZED (SELECT id FROM jobs WHERE state IN ({others}) AND id < $3)
                 SELECT * FROM jobs
                 WHERE id = ANY (ARRAY(SELECT c.job_id FROM candidates c LEFT JOIN elsewhere e ON e.id = c.job_id
                                       WHERE e.id IS NULL))
                   AND state = $1 AND ($2 IS NULL OR kind = $2) AND {BODY} LIKE lower($5)
                 ORDER BY id DESC LIMIT $4"
            ))
            .bind(q.state.as_str())
            .bind(&q.kind)
            .bind(floor)
            .bind(limit)
            .bind(like);
        }
        let (sql, arg) = match self.db.dialect() {
            // Newest matches first, straight from the FTS index (it walks rowids in
            // either direction), each checked against the state in `jobs_by_state`
            // (a probe of the small index, not of the wide table: a common text
            // finds thousands of jobs in other states) and read from `jobs` until
            // the page is full.
            Backend::Sqlite => (
                format!(
                    "SELECT jobs.* FROM {fts} CROSS JOIN jobs
                 WHERE {fts} MATCH $5 AND {fts}.rowid < $3
                   AND EXISTS (SELECT 1 FROM jobs AS s INDEXED BY jobs_by_state
                               WHERE s.state = $1 AND s.id = {fts}.rowid)
                   AND jobs.id = {fts}.rowid AND ($2 IS NULL OR jobs.kind = $2)
                 ORDER BY {fts}.rowid DESC LIMIT $4"
                ),
                fts_phrase(text),
            ),
            // Every candidate first: the GIN index's matches and the jobs still
            // queued for it (materialized, so no `LIMIT` tempts the planner into
            // walking). Each is checked against the state through `jobs_by_state`
            // (an index-only probe: no heap fetch for the many that a common text
            // finds in other states), then against its job's current text, which
            // an index row written before a change may no longer match. The body
            // is stored lowercased; the default escape character is the backslash.
            Backend::Postgres => (
                format!(
                    "WITH {},
                 in_state AS MATERIALIZED
                   (SELECT id FROM jobs WHERE state = $1 AND id = ANY (ARRAY(SELECT job_id FROM candidates)))
                 SELECT * FROM jobs
                 WHERE id = ANY (ARRAY(SELECT id FROM in_state)) AND state = $1 AND ($2 IS NULL OR kind = $2)
                   AND {BODY} LIKE lower($5)
                 ORDER BY id DESC LIMIT $4",
                    pg_candidates(q.state)
                ),
                like,
            ),
        };
        query(format!("{prefix}{sql}")).bind(q.state.as_str()).bind(&q.kind).bind(floor).bind(limit).bind(arg)
    }

    /// Whether search rows are queued by inserts and written by
    /// [`Store::index_search`] (PostgreSQL) rather than with the insert.
    pub fn indexes_search_later(&self) -> bool {
        self.db.dialect() == Backend::Postgres
    }

    /// PostgreSQL: writes the search rows of up to `max` queued jobs (about
    /// `max`, in whole transactions of about [`INDEX_BATCH`] jobs queued one by
    /// one and as many in id ranges) from their current text; how many queued
    /// jobs it took, or `None` when another process holds the index lock.
    /// SQLite writes search rows with the insert: `Some(0)`.
    ///
    /// # Errors
    /// A database failure (the statement's entries stay queued).
    pub async fn index_search(&self, max: u64) -> Result<Option<u64>, StorageError> {
        if self.db.dialect() != Backend::Postgres {
            return Ok(Some(0));
        }
        // Most passes find nothing queued: one read says so, without a
        // transaction or the lock.
        let queued: bool = query(
            "SELECT EXISTS (SELECT 1 FROM job_search_pending) OR EXISTS (SELECT 1 FROM job_search_pending_ranges)",
        )
        .scalar(self.db.read())
        .await?;
        let mut done = 0u64;
        while queued && done < max {
            // Derived rows, written with the queue entries they replace.
            let Some(mut tx) = self.begin_derived_work(INDEX_LOCK).await? else {
                return Ok((done > 0).then_some(done));
            };
            let one_by_one: i64 = query(INDEX_SINGLES.as_str()).bind(INDEX_BATCH).scalar(&mut tx).await?;
            let in_ranges: i64 = query(INDEX_RANGES.as_str()).bind(INDEX_BATCH).scalar(&mut tx).await?;
            tx.commit().await?;
            done += (one_by_one.max(0) + in_ranges.max(0)) as u64;
            if one_by_one < INDEX_BATCH && in_ranges < INDEX_BATCH {
                break;
            }
        }
        Ok(Some(done))
    }

    /// The plan of the indexer's statement for the jobs queued in id ranges
    /// (PostgreSQL `EXPLAIN` text: nothing runs), to check that each range is
    /// a walk of `jobs_pkey` of its own. SQLite has no queue: empty.
    ///
    /// # Errors
    /// A database failure.
    pub async fn explain_index_search(&self) -> Result<String, StorageError> {
        if self.db.dialect() != Backend::Postgres {
            return Ok(String::new());
        }
        let lines: Vec<String> =
            query(format!("EXPLAIN {}", INDEX_RANGES.as_str())).bind(INDEX_BATCH).scalars(self.db.write()).await?;
        Ok(lines.join("\n"))
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
            Backend::Postgres => {
                self.older_query(q, text, floor, limit, Way::Index, "EXPLAIN ").scalars(self.db.read()).await?
            }
            Backend::Sqlite => {
                let rows: Vec<(i64, i64, i64, String)> = self
                    .older_query(q, text, floor, limit, Way::Index, "EXPLAIN QUERY PLAN ")
                    .fetch_all(self.db.read())
                    .await?;
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
