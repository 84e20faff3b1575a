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
    next_run     BIGINT  NOT NULL,
    last_run     BIGINT,
    last_job_id  BIGINT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS job_recurring_due ON job_recurring (next_run) WHERE paused = 0;

-- Retention: finished jobs by the time they ended, so a sweep reads only what is
-- past its period instead of every finished row.
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (state, updated_at) WHERE state IN ('succeeded', 'dead', 'deleted');

-- Cancellation: a running job deleted by an admin is announced on `jobs_cancel`
-- (payload: its id) at commit, so the worker running it cancels the attempt at once.
CREATE OR REPLACE FUNCTION jobs_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_cancel', NEW.id::text);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS jobs_cancel ON jobs;
CREATE TRIGGER jobs_cancel AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state = 'processing' AND NEW.state = 'deleted') EXECUTE FUNCTION jobs_notify_cancel();
