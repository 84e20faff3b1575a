-- An `awaiting` state for jobs that wait for another job to end (continuations and
-- batch completion jobs; see jobengine/src/storage/batch.rs), instead of
-- `scheduled` with run_at 9999-12-31, which the Scheduled list counted and
-- "trigger now" could start early. (SQLite needs its CHECK edited in place; see
-- its 1060 for why.)
--
-- `jobs.state` is TEXT with a CHECK (1000_jobs.sql; PostgreSQL named it
-- jobs_state_check): dropped and added again with the new state. Adding it
-- checks every row under the ACCESS EXCLUSIVE lock the DROP already took, one
-- sequential scan: claims and completions wait for it, a few seconds at millions
-- of jobs, once.
--
-- Rolling deploys: a job written the old way by a process of the previous
-- version after this ran is still released by this version (see batch.rs). The
-- other way round does not hold: a previous-version worker that ends the parent
-- of an `awaiting` job does not release it (it looks for `scheduled` rows), and a
-- previous-version dashboard cannot read the new state. Stop the previous
-- version's workers and servers before starting this one's.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('enqueued', 'processing', 'scheduled', 'succeeded', 'dead', 'deleted', 'awaiting'));

-- An awaiting job may still run: it holds its unique key like a scheduled one.
-- The new index is built before the old one goes, so the key stays enforced.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live_1060 ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing', 'awaiting');
DROP INDEX IF EXISTS jobs_unique_live;
ALTER INDEX jobs_unique_live_1060 RENAME TO jobs_unique_live;

-- Jobs waiting the old way move to the new state (their run_at stays 9999-12-31:
-- an awaiting job has no due time). The statement trigger of 1040 moves them
-- from `scheduled` to `awaiting` in the counts.
UPDATE jobs SET state = 'awaiting' WHERE state = 'scheduled' AND run_at = 253402300799000000;
