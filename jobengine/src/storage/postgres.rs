//! The PostgreSQL dialect: the scale-out engine (many servers and workers on one
//! database).
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each
//! other's rows; every multi-row write (claim, lease renewal, completion batch,
//! release, rescue) is a single statement with data-modifying CTEs over `unnest`
//! arrays that also writes the history rows, so a batch costs one round trip. A
//! trigger `NOTIFY`s `jobs_enqueued` when a job becomes runnable; the store keeps
//! one listener per process (see `Store::open`).

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use database::{Db, Tx};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};

use super::partitions::Partitions;
use super::{Completion, Dialect, JobRow, NewJob, Transition};
use crate::clock::Micros;
use crate::error::StorageError;
use crate::state::JobState;

/// Job statements for PostgreSQL.
pub(crate) struct PgDialect {
    db: Db,
    partitions: Arc<Partitions>,
    /// The claims' own connections ([`claim_pool`]); `None` on a handle that
    /// is not PostgreSQL's.
    claims: Option<PgPool>,
}

/// Connections for claims: the database's, with [`CLAIM_SETTINGS`] set for
/// the whole session when it starts (in the startup message, no round trip),
/// opened when first needed. A claim is then one statement in one round trip,
/// where a transaction on the shared pool took five (the pool's liveness ping,
/// `BEGIN`, the settings, the claim, `COMMIT`): one worker at concurrency 10
/// went from 6,167 to 10,403-13,730 no-op jobs a second (`benches/peers.rs`,
/// release, fsync on; runs of different days, README); enqueue-to-start on an
/// idle queue did not move beyond its run-to-run spread.
///
/// No liveness ping before each use either: a claim on a connection the
/// server dropped fails, the pool discards that connection, and the fetch
/// loop's retry takes a new one, as it would after any failed claim. Two
/// connections: the workers of one process share them, and a claim holds one
/// for a single statement.
fn claim_pool(shared: &PgPool) -> PgPool {
    let opts = (*shared.connect_options()).clone().options(CLAIM_SETTINGS);
    PgPoolOptions::new()
        .max_connections(2)
        .test_before_acquire(false)
        .acquire_timeout(database::PG_ACQUIRE_TIMEOUT)
        .connect_lazy_with(opts)
}

impl PgDialect {
    pub(crate) fn new(db: Db, partitions: Arc<Partitions>) -> Self {
        let claims = db.postgres().map(claim_pool);
        Self { db, partitions, claims }
    }

    /// Tells the partitions' keeper the ids an insert handed out.
    fn saw(&self, ids: &[Option<i64>]) -> Result<(), StorageError> {
        if let Some(max) = ids.iter().flatten().max() {
            self.partitions.saw(self.pool()?, *max);
        }
        Ok(())
    }

    /// After an insert of `n` jobs that found no partition for its ids: adds
    /// them now, room for `n` more ids included.
    async fn top_up_after(&self, e: StorageError, n: usize) -> StorageError {
        if super::partitions::no_partition(&e) {
            match self.pool() {
                Ok(pool) => {
                    if let Err(again) = self.partitions.top_up(pool, i64::try_from(n).unwrap_or(i64::MAX)).await {
                        tracing::warn!(error = %again, "adding partitions of jobs failed");
                    }
                }
                Err(e) => return e,
            }
        }
        e
    }

    fn pool(&self) -> Result<&PgPool, StorageError> {
        self.db.postgres().ok_or_else(not_postgres)
    }

    fn claim_pool(&self) -> Result<&PgPool, StorageError> {
        self.claims.as_ref().ok_or_else(not_postgres)
    }
}

fn not_postgres() -> StorageError {
    StorageError::Corrupt("PostgreSQL storage on an SQLite handle".into())
}

fn pg(tx: &mut Tx) -> Result<&mut PgConnection, StorageError> {
    tx.postgres().ok_or_else(|| StorageError::Corrupt("an SQLite transaction was given to PostgreSQL storage".into()))
}

/// The batch's columns, unnested in input order (`ord`), for the insert
/// statements below.
const INPUT: &str = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[],
                     $7::text[], $8::int[]) WITH ORDINALITY
              AS t(kind, queue, args, state, max_attempts, run_at, unique_key, priority, ord)";

/// The history rows of the jobs in `ins` that start scheduled or awaiting (a
/// ready job's first entry is read from its row: see [`HistoryRow::creation`]).
const HISTORY: &str = "h AS (
         INSERT INTO job_history (job_id, state, at, attempt)
         SELECT id, state, $9, 0 FROM ins WHERE state <> 'enqueued' ORDER BY id
     )";

/// Inserts a batch with a unique key among its jobs, and the history rows;
/// per input, in order, `(ord, id)` with a NULL id where a live job held its key.
///
/// The keys are claimed first in `job_unique_keys` (migration 1100: a unique
/// index on the partitioned `jobs` would have to hold its partition key), with
/// `ON CONFLICT DO NOTHING`: a key held by a live job (or by an earlier job of
/// the batch) skips its job. So the ids are drawn before the insert, in input
/// order, and joined back to the input. Only a batch with keys pays for this.
static INSERT_KEYED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
         SELECT nextval((SELECT pg_get_serial_sequence('jobs', 'id'))::regclass) AS id, t.*
         FROM {INPUT}
     ), keys AS (
         INSERT INTO job_unique_keys (unique_key, job_id)
         SELECT unique_key, id FROM input WHERE unique_key IS NOT NULL ORDER BY ord
         ON CONFLICT DO NOTHING
         RETURNING job_id
     ), ins AS (
         INSERT INTO jobs (id, kind, queue, args, state, max_attempts, run_at, created_at, updated_at,
                           unique_key, priority)
         OVERRIDING SYSTEM VALUE
         SELECT id, kind, queue, args, state, max_attempts, run_at, $9, $9, unique_key, priority
         FROM input WHERE unique_key IS NULL OR id IN (SELECT job_id FROM keys) ORDER BY ord
         RETURNING id, state
     ), {HISTORY}
     SELECT input.ord, ins.id FROM input LEFT JOIN ins ON ins.id = input.id ORDER BY input.ord"
    )
});

/// Inserts a batch without unique keys: every row is inserted (or the statement
/// fails), each drawing its id from the identity as it leaves the input in
/// `ord` order, so the ids ascend in input order and the caller sorts the
/// answer to match them up: the order `RETURNING` uses does not matter. (The
/// same property SQLAlchemy's `insertmanyvalues` relies on for PostgreSQL's
/// IDENTITY and SERIAL with an `ORDER BY` on its sentinel.) The plan is one
/// ordered function scan under the insert, `nextval` above it:
/// ```text
/// Insert on jobs
///   -> Subquery Scan on "*SELECT*"   Output: nextval('jobs_id_seq'), kind, ...
///        -> Function Scan on t       (unnest ... WITH ORDINALITY: already in ord order)
/// ```
/// Drawing the ids in a CTE first and joining them back, as [`INSERT_KEYED`]
/// must, took 18 % longer (9.41 against 7.73 ms a batch of 1,000, client side;
/// 7.93 against 6.36 ms in the server; test server, fsync off).
/// With `history`, the jobs that start scheduled or awaiting get their history
/// rows in the same statement.
fn insert_unkeyed_sql(history: bool) -> String {
    let insert = format!(
        "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at,
                           unique_key, priority)
         SELECT kind, queue, args, state, max_attempts, run_at, $9, $9, unique_key, priority
         FROM {INPUT} ORDER BY ord"
    );
    if history {
        format!("WITH ins AS ({insert} RETURNING id, state), {HISTORY} SELECT id FROM ins")
    } else {
        format!("{insert} RETURNING id")
    }
}

static INSERT_READY: LazyLock<String> = LazyLock::new(|| insert_unkeyed_sql(false));
static INSERT_WITH_HISTORY: LazyLock<String> = LazyLock::new(|| insert_unkeyed_sql(true));

/// The claim: per queue (a `LATERAL` over the queues), one walk of `jobs_due`
/// (ready jobs, in priority order) and one of `jobs_scheduled_due` up to now
/// (scheduled jobs that fell due, oldest first), each stopping after `$3` jobs,
/// so its cost grows neither with the backlog nor with the jobs scheduled for
/// later (migration 1080). With `queue = ANY($1)` instead, PostgreSQL 15 cannot
/// walk an index in order and reads and sorts the whole backlog (8.4 ms to
/// claim 10 of 20,000 queued, against about 0.4 ms here). The outer sort orders
/// at most `$3` rows per queue and walk: a due scheduled job goes before ready
/// ones of lower priority. (A row lock is not allowed in a `UNION`, hence one
/// CTE per walk.)
///
/// The walks lock `FOR NO KEY UPDATE`, the lock the `UPDATE` takes anyway (it
/// changes no key), which claims and deletes still exclude but a foreign key's
/// check does not: the search indexer writing a new job's `job_search` row
/// holds `FOR KEY SHARE` on the job until it commits, and `FOR UPDATE SKIP
/// LOCKED` passed over the job then, which waited for the next wake-up or poll
/// (250 ms late, about one start in a few thousand on an idle queue).
///
/// Plan, generic as claims run it (`EXPLAIN ANALYZE EXECUTE` under
/// [`CLAIM_SETTINGS`]; 10 due in `parked` beside 10,000,000 finished jobs;
/// partitions `jobs_p0` (empty), `jobs_p1` (the 10,000,000), `jobs_p10000001`
/// (new jobs) and `jobs_p20000001` (ahead)):
/// ```text
/// Sort (rows=10)                                   -- the claimed rows, for the caller
///   CTE ready
///     -> Nested Loop -> Function Scan on unnest q (rows=1)
///          -> Limit -> LockRows (rows=10)
///               -> Merge Append (rows=10)           -- each partition's walk, in order
///                    -> Index Scan using jobs_p0_due on jobs_p0 (rows=0)
///                    -> Index Scan using jobs_p1_queue_priority_run_at_id_idx on jobs_p1 (rows=10)
///                         Index Cond: ((queue = q.queue) AND (run_at <= $2))
///                    -> (the same on jobs_p10000001 and jobs_p20000001, rows=0)
///   CTE scheduled
///     -> Nested Loop -> Function Scan on unnest q_1 (rows=1)
///          -> Limit -> LockRows -> Merge Append (rows=0)
///               -> Index Scan using jobs_p0_scheduled_due ... (each partition, rows=0)
///   CTE due
///     -> Limit (rows=10) -> Sort (rows=10) -> Append (CTE Scan on ready, CTE Scan on scheduled)
///   CTE claimed
///     -> Update on jobs -> Nested Loop -> CTE Scan on due
///          -> Append (rows=1 loops=10)
///               -> Index Scan using jobs_p1_pkey on jobs_p1 (rows=1 loops=10)
///               -> (the other partitions: never executed, pruned per id)
/// Planning Time: 0.011 ms, Execution Time: 0.73 ms
/// ```
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    let [ready, scheduled] = super::due::due_walks("q.queue", "$2", "$3");
    format!(
        "WITH ready AS (
         SELECT j.* FROM unnest($1::text[]) AS q(queue)
         CROSS JOIN LATERAL ({ready} FOR NO KEY UPDATE SKIP LOCKED) AS j
     ), scheduled AS (
         SELECT j.* FROM unnest($1::text[]) AS q(queue)
         CROSS JOIN LATERAL ({scheduled} FOR NO KEY UPDATE SKIP LOCKED) AS j
     ), due AS (
         SELECT id FROM (SELECT * FROM ready UNION ALL SELECT * FROM scheduled) AS j
         ORDER BY priority DESC, run_at, id
         LIMIT $3
     ), claimed AS (
         UPDATE jobs j SET state = 'processing', attempt = j.attempt + 1, lease_seq = j.lease_seq + 1,
                worker_id = $4, attempted_at = $2, updated_at = $2, lease_expires_at = $5, progress = NULL
         FROM due WHERE j.id = due.id
         RETURNING j.*
     ), h AS (
         INSERT INTO job_history (job_id, state, at, attempt, worker_id)
         SELECT id, 'processing', $2, attempt, $4 FROM claimed ORDER BY priority DESC, run_at, id
     )
     SELECT * FROM claimed ORDER BY priority DESC, run_at, id"
    )
});

/// The claim's session settings (see [`PgDialect::claim`], [`claim_pool`]): no
/// wait for the flush, a generic plan, and in it the claimed rows updated by a
/// nested loop over the partitions' primary keys. A generic plan guesses how
/// many rows `LIMIT $3` lets through (10 % of its input); guessing hundreds, it
/// joined them by hashing a sequential scan of every partition (20,000 rows,
/// 10 ms, where the nested loop reads 10 rows in 0.01 ms and, by run-time
/// pruning, only the partition holding each id). Hash and merge joins are off
/// on the claims' connections only; the statement has no other join.
const CLAIM_SETTINGS: [(&str, &str); 4] = [
    ("synchronous_commit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

#[async_trait]
impl Dialect for PgDialect {
    async fn claim(
        &self,
        worker: &str,
        queues: &[String],
        limit: u32,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<JobRow>, StorageError> {
        // A claim need not wait for the WAL to reach the disk: if the server
        // crashed before it did, the claim is simply undone and the job runs
        // again (delivery is at least once anyway), and the attempt's completion,
        // which commits synchronously, flushes the claim before it (the WAL is
        // written in order), so no outcome can outlive its claim. With fsync on
        // this takes a disk flush off every fetch.
        //
        // And a generic plan, always: beside millions of finished jobs the
        // planner judged the generic plan of this statement dearer than the
        // custom ones and planned every execution anew, 0.6 ms of planning for
        // 0.13 ms of execution (10,000,000 finished jobs in older partitions;
        // claims then took a quarter of the throughput). The generic plan walks
        // each partition's index with the queue and time as parameters, as the
        // custom one does (0.1 ms).
        let rows = sqlx::query_as(CLAIM.as_str())
            .bind(queues)
            .bind(now)
            .bind(limit as i64)
            .bind(worker)
            .bind(lease_until)
            .fetch_all(self.claim_pool()?)
            .await?;
        Ok(rows)
    }

    async fn extend_leases(&self, held: &[(i64, i64)], lease_until: Micros) -> Result<Vec<i64>, StorageError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let seqs: Vec<i64> = held.iter().map(|h| h.1).collect();
        let kept: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs j SET lease_expires_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS c(id, seq)
             WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
             RETURNING j.id",
        )
        .bind(lease_until)
        .bind(&ids)
        .bind(&seqs)
        .fetch_all(self.pool()?)
        .await?;
        Ok(ids.into_iter().filter(|id| !kept.contains(id)).collect())
    }

    async fn complete(&self, tx: &mut Tx, batch: &[Completion]) -> Result<Vec<Option<Transition>>, StorageError> {
        let ids: Vec<i64> = batch.iter().map(|c| c.job_id).collect();
        let seqs: Vec<i64> = batch.iter().map(|c| c.lease_seq).collect();
        let states: Vec<&str> = batch.iter().map(|c| c.state().as_str()).collect();
        let ats: Vec<i64> = batch.iter().map(|c| c.at).collect();
        let run_ats: Vec<Option<i64>> = batch.iter().map(|c| c.run_at()).collect();
        let errors: Vec<Option<String>> = batch.iter().map(|c| c.last_error()).collect();
        let chains: Vec<Option<String>> = batch.iter().map(|c| c.error_chain_json()).collect();
        let done: Vec<Transition> = sqlx::query_as(
            "WITH c AS (
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                                      $6::text[], $7::text[])
                        AS c(id, seq, state, at, run_at, last_error, chain)
             ), done AS (
                 UPDATE jobs j SET state = c.state, updated_at = c.at,
                        finished_at = CASE WHEN c.state IN ('succeeded', 'dead') THEN c.at END,
                        lease_expires_at = NULL,
                        run_at = COALESCE(c.run_at, j.run_at),
                        last_error = COALESCE(c.last_error, j.last_error)
                 FROM c WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
                 RETURNING j.id, j.state, c.at, j.attempt, j.worker_id, c.chain, j.kind, j.args, c.last_error
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, error_chain)
                 SELECT id, state, at, attempt, worker_id, chain FROM done
             )
             SELECT id, kind, args, state, last_error AS detail FROM done",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&states)
        .bind(&ats)
        .bind(&run_ats)
        .bind(&errors)
        .bind(&chains)
        .fetch_all(pg(tx)?)
        .await?;
        Ok(ids.iter().map(|id| done.iter().find(|t| t.id == *id).cloned()).collect())
    }

    async fn release(
        &self,
        worker: &str,
        held: &[(i64, i64)],
        kept_run_at: bool,
        reason: &str,
        now: Micros,
    ) -> Result<u64, StorageError> {
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let seqs: Vec<i64> = held.iter().map(|h| h.1).collect();
        let n: i64 = sqlx::query_scalar(
            "WITH rel AS (
                 UPDATE jobs j SET state = 'enqueued', attempt = j.attempt - 1,
                        run_at = CASE WHEN $6 THEN j.run_at ELSE $3 END, updated_at = $3,
                        lease_expires_at = NULL, progress = NULL
                 FROM unnest($1::bigint[], $2::bigint[]) AS c(id, seq)
                 WHERE j.id = c.id AND j.lease_seq = c.seq AND j.state = 'processing'
                 RETURNING j.id, j.attempt
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, reason)
                 SELECT id, 'enqueued', $3, attempt, $4, $5 FROM rel
             )
             SELECT COUNT(*) FROM rel",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(now)
        .bind(worker)
        .bind(reason)
        .bind(kept_run_at)
        .fetch_one(self.pool()?)
        .await?;
        Ok(n as u64)
    }

    async fn rescue(
        &self,
        tx: &mut Tx,
        now: Micros,
        max_interruptions: u32,
        gone: &[String],
    ) -> Result<Vec<Transition>, StorageError> {
        Ok(sqlx::query_as(
            "WITH expired AS (
                 SELECT id FROM jobs
                 WHERE state = 'processing' AND (lease_expires_at < $1 OR worker_id = ANY($3))
                 ORDER BY lease_expires_at LIMIT 1000
                 FOR NO KEY UPDATE SKIP LOCKED
             ), moved AS (
                 UPDATE jobs j SET
                        state = CASE WHEN j.interruptions + 1 >= $2 THEN 'dead' ELSE 'enqueued' END,
                        finished_at = CASE WHEN j.interruptions + 1 >= $2 THEN $1 END,
                        attempt = CASE WHEN j.interruptions + 1 >= $2 THEN j.attempt ELSE j.attempt - 1 END,
                        interruptions = j.interruptions + 1,
                        run_at = $1, updated_at = $1, lease_expires_at = NULL,
                        last_error = 'attempt ' || j.attempt || ' interrupted: worker '
                                     || COALESCE(j.worker_id, '?')
                                     || CASE WHEN j.lease_expires_at < $1 THEN ' stopped renewing its lease ('
                                             ELSE ' is gone, found dead before its lease expired (' END
                                     || (j.interruptions + 1) || ' of ' || $2 || ' interruptions allowed)'
                 FROM expired e WHERE j.id = e.id
                 RETURNING j.id, j.state, j.attempt, j.worker_id, j.last_error, j.kind, j.args
             ), h AS (
                 INSERT INTO job_history (job_id, state, at, attempt, worker_id, reason, error_chain)
                 SELECT id, state, $1, CASE WHEN state = 'enqueued' THEN attempt + 1 ELSE attempt END,
                        worker_id, last_error,
                        CASE WHEN state = 'dead' THEN json_build_array(last_error)::text END
                 FROM moved
             )
             SELECT id, kind, args, state, last_error AS detail FROM moved",
        )
        .bind(now)
        .bind(i32::try_from(max_interruptions.max(1)).unwrap_or(i32::MAX))
        .bind(gone)
        .fetch_all(pg(tx)?)
        .await?)
    }

    async fn insert(&self, tx: &mut Tx, jobs: &[NewJob], now: Micros) -> Result<Vec<Option<i64>>, StorageError> {
        // No retry here: the caller's transaction is lost with the error.
        match insert_jobs(pg(tx)?, jobs, now).await {
            Ok(ids) => {
                self.saw(&ids)?;
                Ok(ids)
            }
            Err(e) => Err(self.top_up_after(e, jobs.len()).await),
        }
    }

    async fn insert_alone(&self, jobs: &[NewJob], now: Micros) -> Result<Option<Vec<i64>>, StorageError> {
        if jobs.iter().any(|j| j.unique_key.is_some()) {
            return Ok(None);
        }
        // One statement is atomic on its own: no BEGIN and COMMIT round trips.
        // Nothing is lost with a failure, so one that found no partition is
        // tried again once the partitions are added.
        let ids = match insert_jobs(self.pool()?, jobs, now).await {
            Ok(ids) => ids,
            Err(e) => {
                let e = self.top_up_after(e, jobs.len()).await;
                if !super::partitions::no_partition(&e) {
                    return Err(e);
                }
                insert_jobs(self.pool()?, jobs, now).await?
            }
        };
        self.saw(&ids)?;
        Ok(Some(
            ids.into_iter()
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| StorageError::Corrupt("an insert without unique keys skipped a row".into()))?,
        ))
    }

    async fn explain_claim(&self, queues: &[String], limit: u32, now: Micros) -> Result<String, StorageError> {
        // The plan claims run: the statement prepared on a claim connection
        // (its settings: a generic plan), and explained through `EXECUTE` (an
        // `EXPLAIN` of the statement with bound values would plan for those
        // values). ANALYZE runs it: in a transaction rolled back, so nothing is
        // claimed. A prepared statement outlives a rollback: it is named for
        // this call and deallocated after.
        static EXPLAINED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!("claim_explained_{}", EXPLAINED.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut conn = self.claim_pool()?.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let prepare = format!("PREPARE {name} (text[], bigint, bigint, text, bigint) AS {}", CLAIM.as_str());
        sqlx::query(&prepare).persistent(false).execute(&mut *tx).await?;
        let queues = queues.iter().map(|q| format!("'{}'", q.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
        let explain = format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name} (ARRAY[{queues}]::text[], {now}, {limit}, 'explain', {now})"
        );
        let explained: Result<serde_json::Value, _> =
            sqlx::query_scalar(&explain).persistent(false).fetch_one(&mut *tx).await;
        tx.rollback().await?;
        let deallocate = format!("DEALLOCATE {name}");
        sqlx::query(&deallocate).persistent(false).execute(&mut *conn).await?;
        Ok(explained?.to_string())
    }
}

/// Inserts `jobs` on `conn` (a transaction's connection or the pool) in one
/// statement ([`INSERT_KEYED`], [`INSERT_READY`] or [`INSERT_WITH_HISTORY`]);
/// per input, its new id, or `None` when a live job held its unique key. The
/// `inserted` trigger NOTIFYs once per statement and queue.
async fn insert_jobs<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    jobs: &[NewJob],
    now: Micros,
) -> Result<Vec<Option<i64>>, StorageError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut cols = Columns::default();
    for j in jobs {
        cols.push(j, now);
    }
    let keyed = cols.unique_key.iter().any(Option::is_some);
    let sql: &str = if keyed {
        &INSERT_KEYED
    } else if cols.state.iter().all(|s| *s == JobState::Enqueued.as_str()) {
        &INSERT_READY
    } else {
        &INSERT_WITH_HISTORY
    };
    let rows = sqlx::query(sql)
        .bind(&cols.kind)
        .bind(&cols.queue)
        .bind(&cols.args)
        .bind(&cols.state)
        .bind(&cols.max_attempts)
        .bind(&cols.run_at)
        .bind(&cols.unique_key)
        .bind(&cols.priority)
        .bind(now)
        .fetch_all(conn)
        .await?;
    if keyed {
        // (ord, id), in input order.
        return rows.iter().map(|r| r.try_get::<Option<i64>, _>(1).map_err(StorageError::from)).collect();
    }
    let mut ids = rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<Vec<_>, _>>()?;
    if ids.len() != jobs.len() {
        return Err(StorageError::Corrupt(format!("an insert of {} jobs answered {} ids", jobs.len(), ids.len())));
    }
    // Drawn in input order (see `insert_unkeyed_sql`).
    ids.sort_unstable();
    Ok(ids.into_iter().map(Some).collect())
}

/// A batch of new jobs as one array per column, for `unnest`.
#[derive(Default)]
struct Columns {
    kind: Vec<String>,
    queue: Vec<String>,
    args: Vec<String>,
    state: Vec<&'static str>,
    max_attempts: Vec<i32>,
    run_at: Vec<i64>,
    unique_key: Vec<Option<String>>,
    priority: Vec<i32>,
}

impl Columns {
    fn push(&mut self, j: &NewJob, now: Micros) {
        let (state, run_at) = super::initial_state(j, now);
        self.kind.push(j.kind.clone());
        self.queue.push(j.queue.clone());
        self.args.push(j.args.to_string());
        self.state.push(state.as_str());
        self.max_attempts.push(i32::try_from(j.max_attempts).unwrap_or(i32::MAX));
        self.run_at.push(run_at);
        self.unique_key.push(j.unique_key.clone());
        self.priority.push(j.priority);
    }
}
