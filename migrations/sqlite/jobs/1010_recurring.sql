-- Recurring (cron) jobs: one row per schedule declared in code. `next_run` is the
-- fire time the schedulers wait for; the scheduler that advances it (a
-- compare-and-set on its previous value) is the one that enqueues that fire's job,
-- so every fire time yields one job however many workers run (see
-- jobengine::recurring). The last job's state is read from `jobs` through
-- `last_job_id`, never copied here.
CREATE TABLE IF NOT EXISTS job_recurring (
    name         TEXT    PRIMARY KEY,
    cron         TEXT    NOT NULL,
    time_zone    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    args         TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    missed       TEXT    NOT NULL CHECK (missed IN ('once', 'all')),
    paused       INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    next_run     INTEGER NOT NULL,
    last_run     INTEGER,
    last_job_id  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS job_recurring_due ON job_recurring (next_run) WHERE paused = 0;

-- Retention: finished jobs by the time they ended, so a sweep reads only what is
-- past its period instead of every finished row.
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (state, updated_at) WHERE state IN ('succeeded', 'dead', 'deleted');

-- Cancellation of a deleted running job: SQLite has no NOTIFY; workers in this
-- process hear of it from the store, workers in others poll (see jobengine::cancel).
