-- The job engine's tables (SQLite). Times are Unix microseconds (INTEGER).
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL DEFAULT 'default',
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('enqueued', 'processing', 'scheduled', 'succeeded', 'dead', 'deleted')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_seq        INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finished_at      INTEGER,
    lease_expires_at INTEGER,
    worker_id        TEXT,
    unique_key       TEXT,
    last_error       TEXT,
    progress         TEXT
);

-- What a worker fetches: due jobs of its queues, oldest first.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, run_at, id) WHERE state IN ('enqueued', 'scheduled');
-- What the rescuer scans: running jobs by lease expiry.
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_expires_at) WHERE state = 'processing';
-- The dashboard: counts and pages per state.
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
-- At most one live job per unique key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing');

CREATE TABLE IF NOT EXISTS job_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    state       TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    reason      TEXT,
    error_chain TEXT
);
CREATE INDEX IF NOT EXISTS job_history_by_job ON job_history (job_id, id);

CREATE TABLE IF NOT EXISTS job_workers (
    id             TEXT    PRIMARY KEY,
    hostname       TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    concurrency    INTEGER NOT NULL,
    queues         TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    running        INTEGER NOT NULL DEFAULT 0
);
