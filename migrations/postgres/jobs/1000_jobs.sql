-- The job engine's tables (PostgreSQL). Times are Unix microseconds (BIGINT), as on
-- SQLite, so both backends share row types and the engine's clock is the only clock.
CREATE TABLE IF NOT EXISTS jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL DEFAULT 'default',
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('enqueued', 'processing', 'scheduled', 'succeeded', 'dead', 'deleted')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_seq        BIGINT  NOT NULL DEFAULT 0,
    run_at           BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    attempted_at     BIGINT,
    finished_at      BIGINT,
    lease_expires_at BIGINT,
    worker_id        TEXT,
    unique_key       TEXT,
    last_error       TEXT,
    progress         TEXT
);

CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, run_at, id) WHERE state IN ('enqueued', 'scheduled');
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing');

CREATE TABLE IF NOT EXISTS job_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    state       TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    reason      TEXT,
    error_chain TEXT
);
CREATE INDEX IF NOT EXISTS job_history_by_job ON job_history (job_id, id);

CREATE TABLE IF NOT EXISTS job_workers (
    id             TEXT    PRIMARY KEY,
    hostname       TEXT    NOT NULL,
    pid            BIGINT  NOT NULL,
    concurrency    INTEGER NOT NULL,
    queues         TEXT    NOT NULL,
    started_at     BIGINT  NOT NULL,
    last_heartbeat BIGINT  NOT NULL,
    running        INTEGER NOT NULL DEFAULT 0
);

-- Wake idle workers the moment a job becomes runnable. NOTIFY is delivered at
-- commit and folds identical payloads within a transaction, so a bulk enqueue costs
-- one message per queue. Workers also poll, so a lost notification only delays.
CREATE OR REPLACE FUNCTION jobs_notify_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_enqueued', NEW.queue);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS jobs_enqueued ON jobs;
CREATE TRIGGER jobs_enqueued AFTER INSERT OR UPDATE OF state, run_at ON jobs
    FOR EACH ROW WHEN (NEW.state = 'enqueued') EXECUTE FUNCTION jobs_notify_enqueued();
