-- An `awaiting` state for jobs that wait for another job to end (continuations and
-- batch completion jobs; see jobengine/src/storage/batch.rs), instead of
-- `scheduled` with run_at 9999-12-31, which the Scheduled list counted and
-- "trigger now" could start early.
--
-- `jobs.state` has a CHECK listing the states, and SQLite's ALTER TABLE cannot
-- change a CHECK. Two ways are documented (https://sqlite.org/lang_altertable.html,
-- "Making Other Kinds Of Table Schema Changes"):
-- - the 12-step rebuild (new table, copy, drop, rename). Here it runs inside
--   sqlx's migration transaction, where `PRAGMA foreign_keys = OFF` is a no-op,
--   so `DROP TABLE jobs` would delete every row through the foreign keys of
--   job_history, job_waits and job_batch_jobs (ON DELETE CASCADE) and fire the
--   delete triggers of 1040/1041 (counts, search) for every job; avoiding that
--   means rebuilding those tables too, copying every job, and recreating the
--   indexes, triggers and FTS rows: minutes and twice the disk at millions of
--   jobs;
-- - editing the table's text in sqlite_schema with `PRAGMA writable_schema`,
--   allowed "for removing CHECK ... constraints" and changes that no stored row
--   can violate. Widening the list of states is such a change (every stored
--   state is still in the list), the rows, indexes and triggers stay as they are,
--   and it costs the same on an empty table and a full one.
-- This uses the second, inside the migration's transaction (a failure rolls the
-- edit back with everything else). The documented steps, in order:
-- 1. the edit: the one exact CHECK text of 1000_jobs.sql gains 'awaiting';
-- 2. the schema version must change so that every other connection (this
--    process's readers, other processes) reloads the schema: the DROP/CREATE
--    INDEX below (the unique index must count awaiting jobs as live anyway)
--    bumps it as any DDL does;
-- 3. `writable_schema = RESET` turns editing off and makes this connection
--    reparse the schema now, so the probe below runs against the new CHECK.
-- The probe inserts an `awaiting` row and deletes it: if the edit did not take
-- (the CHECK text differs from the one expected), the CHECK fails and the whole
-- migration rolls back, rather than leaving a schema that rejects the state
-- later. The probe's id is negative, so AUTOINCREMENT's sequence does not move;
-- its count triggers leave a 0 for `awaiting` in job_counts.
--
-- Rolling deploys: a job written the old way by a process of the previous
-- version after this ran is still released by this version (see batch.rs). The
-- other way round does not hold: a previous-version worker that ends the parent
-- of an `awaiting` job does not release it (it looks for `scheduled` rows), and a
-- previous-version dashboard cannot read the new state. Stop the previous
-- version's workers and servers before starting this one's.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
    SET sql = replace(sql,
        'CHECK (state IN (''enqueued'', ''processing'', ''scheduled'', ''succeeded'', ''dead'', ''deleted''))',
        'CHECK (state IN (''enqueued'', ''processing'', ''scheduled'', ''succeeded'', ''dead'', ''deleted'', ''awaiting''))')
    WHERE type = 'table' AND name = 'jobs';

-- An awaiting job may still run: it holds its unique key like a scheduled one.
DROP INDEX IF EXISTS jobs_unique_live;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing', 'awaiting');

PRAGMA writable_schema = RESET;

INSERT INTO jobs (id, kind, args, state, max_attempts, run_at, created_at, updated_at)
    VALUES (-1, 'migration.1060.probe', '{}', 'awaiting', 1, 0, 0, 0);
DELETE FROM jobs WHERE id = -1;

-- Jobs waiting the old way move to the new state (their run_at stays 9999-12-31:
-- an awaiting job has no due time). The count triggers move them from
-- `scheduled` to `awaiting` in job_counts.
UPDATE jobs SET state = 'awaiting' WHERE state = 'scheduled' AND run_at = 253402300799000000;
