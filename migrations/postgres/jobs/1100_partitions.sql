-- `jobs` partitioned by ranges of `id`, so new rows only ever land among recent
-- pages (docs/ARCHITECTURE.md, "New rows apart from old pages").
--
-- Why: a page of `jobs` packed by inserts keeps a gap smaller than the rows
-- around it, and the free space map offers every page whose gap fits a new
-- job's row. Beside 10,000,000 finished jobs, about 117,000 such pages took
-- each new row and each new version of a claimed or finished row (never a HOT
-- update: `state` is indexed) into a cold page of its own, and throughput fell
-- by a fifth. A new id always belongs to the newest partition, whose free space
-- map knows only its own pages, and a job's later versions stay in its
-- partition.
--
-- Shape:
-- - `jobs` is the partitioned parent; partition `jobs_p<first id>` holds ids
--   [first id, first id + width). The old table becomes `jobs_p0`, holding every
--   id below the sequence's next value; its rows are not moved.
-- - `job_partitioning.width` (default 10,000,000 ids) sizes partitions made from
--   now on. `jobs_add_partitions()` keeps at least one whole partition's ids
--   beyond the next id (the engine calls it at start, when its inserts' ids come
--   near the end, and from the retention sweep); `jobs_drop_emptied()` drops
--   partitions that retention emptied and no new id can reach.
-- - A unique index on a partitioned table must hold the partition key, so the
--   live jobs' unique keys move to `job_unique_keys`: the keyed insert claims
--   keys there first (`ON CONFLICT DO NOTHING`) and inserts the jobs whose keys
--   it got; statement triggers give a key back when its job leaves the live
--   states or is deleted, and take it again (or fail with a unique violation,
--   as before) when a job re-enters them or is inserted with a key by any other
--   statement. `jobs_live_keys` (not unique) finds the live job holding a key.
-- - Triggers move to the parent: statement triggers with transition tables see
--   every partition's rows there; row triggers are cloned to each partition.
--
-- Upgrade: under an ACCESS EXCLUSIVE lock on `jobs` (claims, completions and
-- the dashboard wait): one scan of the old table to validate `CHECK (id <
-- next)`, so attaching it needs no second one, and the foreign keys of
-- `job_waits`, `job_batch_jobs` and `job_search` checked again against the new
-- parent (one scan of each): 4.3 s at 10,000,000 jobs (2.6 GB, fsync off).
--
-- Rolling deploys: a process of the previous version inserting a keyed job
-- whose key a live job holds relies on the unique index to skip it; here the
-- keys' trigger fails its statement with a unique violation instead. Stop the
-- previous version's processes before starting this one's.
LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE;

CREATE TABLE job_partitioning (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    width BIGINT  NOT NULL CHECK (width >= 10)
);
INSERT INTO job_partitioning (width) VALUES (10000000);

CREATE TABLE job_unique_keys (
    unique_key TEXT   PRIMARY KEY,
    job_id     BIGINT NOT NULL
);
INSERT INTO job_unique_keys (unique_key, job_id)
    SELECT unique_key, id FROM jobs
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing', 'awaiting');

-- The old table loses what moves to the parent.
DROP TRIGGER IF EXISTS job_history_delete ON jobs;
DROP TRIGGER IF EXISTS job_search_queue_changed ON jobs;
DROP TRIGGER IF EXISTS job_search_queue_inserted ON jobs;
DROP TRIGGER IF EXISTS jobs_cancel ON jobs;
DROP TRIGGER IF EXISTS jobs_enqueued ON jobs;
DROP TRIGGER IF EXISTS jobs_inserted ON jobs;
DROP TRIGGER IF EXISTS jobs_stats_delete ON jobs;
DROP TRIGGER IF EXISTS jobs_stats_insert ON jobs;
DROP TRIGGER IF EXISTS jobs_stats_truncate ON jobs;
DROP TRIGGER IF EXISTS jobs_stats_update ON jobs;
ALTER TABLE job_waits DROP CONSTRAINT job_waits_child_id_fkey, DROP CONSTRAINT job_waits_parent_id_fkey;
ALTER TABLE job_batch_jobs DROP CONSTRAINT job_batch_jobs_job_id_fkey;
ALTER TABLE job_search DROP CONSTRAINT job_search_job_id_fkey;
DROP INDEX jobs_unique_live;

ALTER TABLE jobs RENAME TO jobs_p0;
ALTER INDEX jobs_pkey RENAME TO jobs_p0_pkey;
ALTER INDEX jobs_by_state RENAME TO jobs_p0_by_state;
ALTER INDEX jobs_due RENAME TO jobs_p0_due;
ALTER INDEX jobs_ended RENAME TO jobs_p0_ended;
ALTER INDEX jobs_leases RENAME TO jobs_p0_leases;
ALTER INDEX jobs_scheduled_due RENAME TO jobs_p0_scheduled_due;

CREATE TABLE jobs (LIKE jobs_p0 INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (id);
ALTER TABLE jobs ADD PRIMARY KEY (id);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_due ON jobs (queue, priority DESC, run_at, id) WHERE state = 'enqueued';
CREATE INDEX jobs_ended ON jobs (state, updated_at) WHERE state IN ('succeeded', 'dead', 'deleted');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_scheduled_due ON jobs (queue, run_at, id) WHERE state = 'scheduled';
CREATE INDEX jobs_live_keys ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('enqueued', 'scheduled', 'processing', 'awaiting');

-- The identity moves to the parent and goes on from where the old one was.
DO $$
DECLARE
    next_id BIGINT;
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO next_id FROM jobs_id_seq;
    ALTER TABLE jobs_p0 ALTER COLUMN id DROP IDENTITY;
    EXECUTE format('ALTER TABLE jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (START WITH %s)', next_id);
    EXECUTE format('ALTER TABLE jobs_p0 ADD CONSTRAINT jobs_p0_ids CHECK (id < %s)', next_id);
    EXECUTE format('ALTER TABLE jobs ATTACH PARTITION jobs_p0 FOR VALUES FROM (MINVALUE) TO (%s)', next_id);
END
$$;

ALTER TABLE job_waits
    ADD CONSTRAINT job_waits_child_id_fkey FOREIGN KEY (child_id) REFERENCES jobs (id) ON DELETE CASCADE,
    ADD CONSTRAINT job_waits_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES jobs (id) ON DELETE CASCADE;
ALTER TABLE job_batch_jobs
    ADD CONSTRAINT job_batch_jobs_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;
ALTER TABLE job_search
    ADD CONSTRAINT job_search_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;

-- The triggers of 1000-1092, on the parent.
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();
CREATE TRIGGER jobs_enqueued AFTER UPDATE OF state, run_at ON jobs
    FOR EACH ROW WHEN (NEW.state = 'enqueued') EXECUTE FUNCTION jobs_notify_enqueued();
CREATE TRIGGER jobs_cancel AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state = 'processing' AND NEW.state = 'deleted') EXECUTE FUNCTION jobs_notify_cancel();
CREATE TRIGGER jobs_stats_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_insert();
CREATE TRIGGER jobs_stats_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_update();
CREATE TRIGGER jobs_stats_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_delete();
CREATE TRIGGER jobs_stats_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_stats_truncate();
CREATE TRIGGER job_search_queue_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_search_queue_inserted();
CREATE TRIGGER job_search_queue_changed AFTER UPDATE OF kind, args, last_error, state ON jobs FOR EACH ROW
    WHEN (OLD.kind <> NEW.kind OR OLD.args <> NEW.args OR OLD.last_error IS DISTINCT FROM NEW.last_error
          OR (OLD.state = 'dead') <> (NEW.state = 'dead'))
    EXECUTE FUNCTION job_search_queue_changed();
CREATE TRIGGER job_history_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_history_delete();

-- Unique keys, after inserts and updates: a job not live (anymore) gives its key
-- back; a live job takes its key unless it holds it already (the engine's
-- keyed insert claims first; a job staying live keeps it), failing with a
-- unique violation on another live holder (an admin's requeue of a dead job,
-- an insert by another statement). The scan for a key ends the common keyless
-- statement early.
CREATE FUNCTION job_unique_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE unique_key IS NOT NULL) THEN
        DELETE FROM job_unique_keys k USING new_rows n
            WHERE n.unique_key IS NOT NULL AND k.unique_key = n.unique_key AND k.job_id = n.id
              AND n.state NOT IN ('enqueued', 'scheduled', 'processing', 'awaiting');
        INSERT INTO job_unique_keys (unique_key, job_id)
            SELECT n.unique_key, n.id FROM new_rows n
            WHERE n.unique_key IS NOT NULL AND n.state IN ('enqueued', 'scheduled', 'processing', 'awaiting')
              AND NOT EXISTS (SELECT 1 FROM job_unique_keys k WHERE k.unique_key = n.unique_key AND k.job_id = n.id);
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION job_unique_keys_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows WHERE unique_key IS NOT NULL) THEN
        DELETE FROM job_unique_keys k USING old_rows o
            WHERE o.unique_key IS NOT NULL AND k.unique_key = o.unique_key AND k.job_id = o.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION job_unique_keys_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_unique_keys;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_unique_keys_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_unique_keys_changed();
CREATE TRIGGER job_unique_keys_updated AFTER UPDATE ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_unique_keys_changed();
CREATE TRIGGER job_unique_keys_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_unique_keys_deleted();
CREATE TRIGGER job_unique_keys_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_unique_keys_truncated();

-- The bounds of a partition of `jobs` (NULL for MINVALUE or MAXVALUE).
CREATE FUNCTION jobs_partition_start(part regclass) RETURNS BIGINT LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''?(-?[0-9]+)''?\)')::bigint
    FROM pg_class c WHERE c.oid = part
$$;
CREATE FUNCTION jobs_partition_end(part regclass) RETURNS BIGINT LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''?(-?[0-9]+)''?\)')::bigint
    FROM pg_class c WHERE c.oid = part
$$;

-- The next id the identity hands out.
CREATE FUNCTION jobs_next_id() RETURNS BIGINT LANGUAGE plpgsql STABLE AS $$
DECLARE
    next_id BIGINT;
BEGIN
    EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s',
                   pg_get_serial_sequence('jobs', 'id')) INTO next_id;
    RETURN next_id;
END
$$;

-- Adds partitions until ids up to `up_to` (at least the next id) and one whole
-- partition beyond are covered; returns the last partition's first id, from
-- which the caller should call again. One caller at a time (an advisory
-- lock); each partition is made as a plain table with a matching CHECK and
-- attached, which takes a SHARE UPDATE EXCLUSIVE lock on `jobs` (inserts,
-- claims and reads go on) and scans nothing.
CREATE FUNCTION jobs_add_partitions(up_to BIGINT DEFAULT NULL) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    w    BIGINT;
    top  BIGINT;
    goal BIGINT;
    name TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(7305361100);
    SELECT width INTO w FROM job_partitioning;
    SELECT max(jobs_partition_end(inhrelid)) INTO top FROM pg_inherits WHERE inhparent = 'jobs'::regclass;
    goal := greatest(jobs_next_id(), coalesce(up_to, 0)) + w;
    WHILE top < goal LOOP
        name := 'jobs_p' || top;
        EXECUTE format('CREATE TABLE %I (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (id >= %s AND id < %s)',
                       name, name || '_ids', top, top + w);
        EXECUTE format('ALTER TABLE jobs ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', name, top, top + w);
        top := top + w;
    END LOOP;
    RETURN (SELECT coalesce(max(jobs_partition_start(inhrelid)), -9223372036854775808)
            FROM pg_inherits WHERE inhparent = 'jobs'::regclass);
END
$$;

-- Drops partitions that hold no job and that no new id can reach (all below
-- the next id), oldest first; returns how many. Detaching takes an ACCESS
-- EXCLUSIVE lock on `jobs`, so each waits at most `lock_timeout` for it (the
-- caller sets it short) and the next call tries again.
CREATE FUNCTION jobs_drop_emptied() RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part    RECORD;
    next_id BIGINT := jobs_next_id();
    dropped INTEGER := 0;
    empty   BOOLEAN;
BEGIN
    PERFORM pg_advisory_xact_lock(7305361100);
    FOR part IN
        SELECT inhrelid::regclass AS rel, jobs_partition_end(inhrelid) AS stop
        FROM pg_inherits WHERE inhparent = 'jobs'::regclass
        ORDER BY 2
    LOOP
        EXIT WHEN part.stop > next_id;
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s)', part.rel) INTO empty;
        CONTINUE WHEN NOT empty;
        EXECUTE format('ALTER TABLE jobs DETACH PARTITION %s', part.rel);
        EXECUTE format('DROP TABLE %s', part.rel);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

SELECT jobs_add_partitions();
