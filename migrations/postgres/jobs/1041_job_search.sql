-- The dashboard's text search (a job's kind, arguments and last error, as one
-- text, case-insensitive substring) through a pg_trgm GIN index instead of a
-- scan. pg_trgm ships with PostgreSQL and is a trusted extension (PG 13+): the
-- database's owner may create it.
--
-- The text lives in its own table, not in an expression index on `jobs`: every
-- state change writes a new `jobs` row version into each of its indexes, and a
-- GIN entry per trigram on every claim and completion would cost the engine's
-- throughput. Here the row is written when a job is inserted or its text
-- changes (a failure's message), and leaves with its job (cascade).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

LOCK TABLE jobs IN SHARE MODE;

CREATE TABLE IF NOT EXISTS job_search (
    job_id BIGINT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    body   TEXT   NOT NULL
);
INSERT INTO job_search (job_id, body)
    SELECT id, lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) FROM jobs
    ON CONFLICT (job_id) DO NOTHING;
CREATE INDEX IF NOT EXISTS job_search_body ON job_search USING gin (body gin_trgm_ops);

CREATE OR REPLACE FUNCTION job_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_search (job_id, body)
        SELECT id, lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) FROM new_rows;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION job_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_search SET body = lower(NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, ''))
        WHERE job_id = NEW.id;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS job_search_insert ON jobs;
CREATE TRIGGER job_search_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_search_insert();
DROP TRIGGER IF EXISTS job_search_update ON jobs;
CREATE TRIGGER job_search_update AFTER UPDATE OF kind, args, last_error ON jobs FOR EACH ROW
    WHEN (OLD.kind <> NEW.kind OR OLD.args <> NEW.args OR OLD.last_error IS DISTINCT FROM NEW.last_error)
    EXECUTE FUNCTION job_search_update();
