-- The dashboard at millions of jobs: counts per state and finished jobs per
-- second and per minute, kept by triggers in the transaction of every change to
-- `jobs` (whoever makes it: the engine, retention, an admin, a future state), so
-- reading them never scans `jobs`.
--
-- Thousands of completions a second must not queue on one row lock, so the
-- triggers never update a shared row: once per statement (transition tables,
-- not once per row) they append what the statement changed to the `_deltas`
-- tables, which have no index and no unique key, so concurrent writers never
-- wait on each other. Reads add the folded totals and the pending deltas; the
-- engine folds the deltas into the totals now and then (one folder at a time,
-- under an advisory lock; see jobengine's storage/stats.rs).
-- No writer may slip between the backfill and the triggers (reads go on).
LOCK TABLE jobs IN SHARE MODE;

CREATE TABLE IF NOT EXISTS job_counts (
    state TEXT   PRIMARY KEY,
    n     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_count_deltas (
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL
);
-- Jobs that reached succeeded or dead, per bucket of `width` microseconds
-- (1 s for the realtime chart, 60 s for longer windows) starting at `at`.
CREATE TABLE IF NOT EXISTS job_throughput (
    width     BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    succeeded BIGINT NOT NULL,
    dead      BIGINT NOT NULL,
    PRIMARY KEY (width, at)
);
-- Per second; folded into both widths.
CREATE TABLE IF NOT EXISTS job_throughput_deltas (
    at        BIGINT NOT NULL,
    succeeded BIGINT NOT NULL,
    dead      BIGINT NOT NULL
);

INSERT INTO job_counts (state, n) SELECT state, COUNT(*) FROM jobs GROUP BY state
    ON CONFLICT (state) DO NOTHING;
INSERT INTO job_throughput (width, at, succeeded, dead)
    SELECT w.width, coalesce(j.finished_at, j.updated_at) / w.width * w.width,
           COUNT(*) FILTER (WHERE j.state = 'succeeded'), COUNT(*) FILTER (WHERE j.state = 'dead')
    FROM jobs j CROSS JOIN (VALUES (1000000::bigint), (60000000::bigint)) w (width)
    WHERE j.state IN ('succeeded', 'dead')
    GROUP BY 1, 2
    ON CONFLICT (width, at) DO NOTHING;

CREATE OR REPLACE FUNCTION jobs_stats_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (state, n) SELECT state, COUNT(*) FROM new_rows GROUP BY state;
    INSERT INTO job_throughput_deltas (at, succeeded, dead)
        SELECT coalesce(finished_at, updated_at) / 1000000 * 1000000,
               COUNT(*) FILTER (WHERE state = 'succeeded'), COUNT(*) FILTER (WHERE state = 'dead')
        FROM new_rows WHERE state IN ('succeeded', 'dead') GROUP BY 1;
    RETURN NULL;
END
$$;
-- Only the state matters; the join finds the rows that entered an end state.
CREATE OR REPLACE FUNCTION jobs_stats_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (state, n)
        SELECT state, SUM(d) FROM (SELECT state, -1 AS d FROM old_rows UNION ALL SELECT state, 1 FROM new_rows) c
        GROUP BY state HAVING SUM(d) <> 0;
    INSERT INTO job_throughput_deltas (at, succeeded, dead)
        SELECT coalesce(n.finished_at, n.updated_at) / 1000000 * 1000000,
               COUNT(*) FILTER (WHERE n.state = 'succeeded'), COUNT(*) FILTER (WHERE n.state = 'dead')
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.state IN ('succeeded', 'dead') AND o.state <> n.state
        GROUP BY 1;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION jobs_stats_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (state, n) SELECT state, -COUNT(*) FROM old_rows GROUP BY state;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION jobs_stats_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_counts;
    DELETE FROM job_count_deltas;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_stats_insert ON jobs;
CREATE TRIGGER jobs_stats_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_insert();
-- Transition tables cannot go with a column list (`UPDATE OF state`): the
-- function finds no state change in other updates and writes nothing.
DROP TRIGGER IF EXISTS jobs_stats_update ON jobs;
CREATE TRIGGER jobs_stats_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_update();
DROP TRIGGER IF EXISTS jobs_stats_delete ON jobs;
CREATE TRIGGER jobs_stats_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_delete();
DROP TRIGGER IF EXISTS jobs_stats_truncate ON jobs;
CREATE TRIGGER jobs_stats_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_truncate();
