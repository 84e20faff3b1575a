-- The dashboard at millions of jobs: counts per state and finished jobs per
-- second and per minute, kept by triggers in the transaction of every change to
-- `jobs` (whoever makes it: the engine, retention, an admin, a future state), so
-- reading them never scans `jobs`. SQLite has one writer, so one row per state
-- is never contended. The `_deltas` tables exist for PostgreSQL, which appends
-- there instead of updating a hot row (see its migration); here they stay empty,
-- and the same reads work on both backends.
CREATE TABLE IF NOT EXISTS job_counts (
    state TEXT    PRIMARY KEY,
    n     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_count_deltas (
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL
);
-- Jobs that reached succeeded or dead, per bucket of `width` microseconds
-- (1 s for the realtime chart, 60 s for longer windows) starting at `at`.
CREATE TABLE IF NOT EXISTS job_throughput (
    width     INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    dead      INTEGER NOT NULL,
    PRIMARY KEY (width, at)
);
CREATE TABLE IF NOT EXISTS job_throughput_deltas (
    at        INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    dead      INTEGER NOT NULL
);

INSERT INTO job_counts (state, n) SELECT state, COUNT(*) FROM jobs GROUP BY state;
INSERT INTO job_throughput (width, at, succeeded, dead)
    SELECT w.width, coalesce(j.finished_at, j.updated_at) / w.width * w.width,
           SUM(j.state = 'succeeded'), SUM(j.state = 'dead')
    FROM jobs j, (SELECT 1000000 AS width UNION ALL SELECT 60000000) w
    WHERE j.state IN ('succeeded', 'dead')
    GROUP BY 1, 2;

CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state ON jobs WHEN OLD.state <> NEW.state BEGIN
    INSERT INTO job_counts (state, n) VALUES (OLD.state, -1)
        ON CONFLICT (state) DO UPDATE SET n = n - 1;
    INSERT INTO job_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
    INSERT INTO job_counts (state, n) VALUES (OLD.state, -1)
        ON CONFLICT (state) DO UPDATE SET n = n - 1;
END;

CREATE TRIGGER IF NOT EXISTS jobs_throughput_insert AFTER INSERT ON jobs
    WHEN NEW.state IN ('succeeded', 'dead') BEGIN
    INSERT INTO job_throughput (width, at, succeeded, dead)
        VALUES (1000000, coalesce(NEW.finished_at, NEW.updated_at) / 1000000 * 1000000,
                NEW.state = 'succeeded', NEW.state = 'dead')
        ON CONFLICT (width, at) DO UPDATE
            SET succeeded = succeeded + excluded.succeeded, dead = dead + excluded.dead;
    INSERT INTO job_throughput (width, at, succeeded, dead)
        VALUES (60000000, coalesce(NEW.finished_at, NEW.updated_at) / 60000000 * 60000000,
                NEW.state = 'succeeded', NEW.state = 'dead')
        ON CONFLICT (width, at) DO UPDATE
            SET succeeded = succeeded + excluded.succeeded, dead = dead + excluded.dead;
END;
CREATE TRIGGER IF NOT EXISTS jobs_throughput_update AFTER UPDATE OF state ON jobs
    WHEN NEW.state IN ('succeeded', 'dead') AND OLD.state <> NEW.state BEGIN
    INSERT INTO job_throughput (width, at, succeeded, dead)
        VALUES (1000000, coalesce(NEW.finished_at, NEW.updated_at) / 1000000 * 1000000,
                NEW.state = 'succeeded', NEW.state = 'dead')
        ON CONFLICT (width, at) DO UPDATE
            SET succeeded = succeeded + excluded.succeeded, dead = dead + excluded.dead;
    INSERT INTO job_throughput (width, at, succeeded, dead)
        VALUES (60000000, coalesce(NEW.finished_at, NEW.updated_at) / 60000000 * 60000000,
                NEW.state = 'succeeded', NEW.state = 'dead')
        ON CONFLICT (width, at) DO UPDATE
            SET succeeded = succeeded + excluded.succeeded, dead = dead + excluded.dead;
END;
