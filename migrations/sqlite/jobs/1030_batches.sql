-- Continuations and batches (see jobengine/src/storage/batch.rs).
--
-- A continuation is a job that waits for another (its parent) to end. Until then it
-- is `scheduled` with no due time (run_at = 9999-12-31, so no claim ever takes it)
-- and has an undecided row here; the parent's end transition, in its own
-- transaction, enqueues it (the condition holds) or deletes it with a reason.
CREATE TABLE IF NOT EXISTS job_waits (
    child_id   INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    parent_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    on_end     TEXT    NOT NULL CHECK (on_end IN ('success', 'any')),
    decided_at INTEGER
);
CREATE INDEX IF NOT EXISTS job_waits_by_parent ON job_waits (parent_id);

-- A batch: jobs enqueued together, counted as they end (counters kept by the end
-- transitions, so reading a batch's progress is one row), and an optional
-- completion job released once when the last one ends.
CREATE TABLE IF NOT EXISTS job_batches (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    label             TEXT    NOT NULL,
    total             INTEGER NOT NULL DEFAULT 0,
    succeeded         INTEGER NOT NULL DEFAULT 0,
    dead              INTEGER NOT NULL DEFAULT 0,
    deleted           INTEGER NOT NULL DEFAULT 0,
    completion_job_id INTEGER,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER
);

-- Membership; `ended` is the state a member first ended in, so a job that ends
-- twice (deleted after it succeeded, requeued and ended again) counts once.
CREATE TABLE IF NOT EXISTS job_batch_jobs (
    job_id   INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    batch_id INTEGER NOT NULL REFERENCES job_batches (id) ON DELETE CASCADE,
    ended    TEXT
);
CREATE INDEX IF NOT EXISTS job_batch_jobs_by_batch ON job_batch_jobs (batch_id, job_id);
-- A completion job finds its batch.
CREATE INDEX IF NOT EXISTS job_batches_by_completion ON job_batches (completion_job_id);
