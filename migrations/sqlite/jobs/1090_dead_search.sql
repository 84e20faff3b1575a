-- Dead jobs' search rows in an FTS5 table of their own, `job_search_dead`,
-- apart from every other job's (`job_search`).
--
-- A search lists one state. When the text is common elsewhere but absent from
-- that state, the one index over every job gave a search all the elsewhere
-- matches to check: at 10,000,000 jobs, "welcome" (a quarter of all jobs, no
-- dead one) in dead jobs walked all 100,000 dead jobs (about 0.35 s). Dead jobs
-- are where failures' texts gather and where an operator looks for them, and
-- jobs become dead rarely (retries spent) and leave it rarely (requeued,
-- deleted): so a job's row moves between the two tables when it enters or
-- leaves `dead`, in the same transaction. A search of dead jobs asks
-- `job_search_dead`; a search of any other state asks `job_search`. Claims and
-- completions change neither.
CREATE VIRTUAL TABLE IF NOT EXISTS job_search_dead USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'trigram'
);
DELETE FROM job_search WHERE rowid IN (SELECT id FROM jobs WHERE state = 'dead');
INSERT INTO job_search_dead (rowid, body)
    SELECT id, kind || ' ' || args || ' ' || coalesce(last_error, '') FROM jobs WHERE state = 'dead';

DROP TRIGGER IF EXISTS job_search_insert;
CREATE TRIGGER job_search_insert AFTER INSERT ON jobs WHEN NEW.state <> 'dead' BEGIN
    INSERT INTO job_search (rowid, body)
        VALUES (NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, ''));
END;
CREATE TRIGGER IF NOT EXISTS job_search_insert_dead AFTER INSERT ON jobs WHEN NEW.state = 'dead' BEGIN
    INSERT INTO job_search_dead (rowid, body)
        VALUES (NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, ''));
END;
-- A text change, or a move into or out of `dead`: the row leaves the table the
-- job's old state put it in and is written where its new state puts it.
DROP TRIGGER IF EXISTS job_search_update;
CREATE TRIGGER job_search_update AFTER UPDATE OF kind, args, last_error, state ON jobs
    WHEN OLD.state <> 'dead' AND (OLD.kind <> NEW.kind OR OLD.args <> NEW.args
      OR OLD.last_error IS NOT NEW.last_error OR NEW.state = 'dead') BEGIN
    DELETE FROM job_search WHERE rowid = OLD.id;
    INSERT INTO job_search (rowid, body)
        SELECT NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, '') WHERE NEW.state <> 'dead';
    INSERT INTO job_search_dead (rowid, body)
        SELECT NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, '') WHERE NEW.state = 'dead';
END;
CREATE TRIGGER IF NOT EXISTS job_search_update_dead AFTER UPDATE OF kind, args, last_error, state ON jobs
    WHEN OLD.state = 'dead' AND (OLD.kind <> NEW.kind OR OLD.args <> NEW.args
      OR OLD.last_error IS NOT NEW.last_error OR NEW.state <> 'dead') BEGIN
    DELETE FROM job_search_dead WHERE rowid = OLD.id;
    INSERT INTO job_search (rowid, body)
        SELECT NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, '') WHERE NEW.state <> 'dead';
    INSERT INTO job_search_dead (rowid, body)
        SELECT NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, '') WHERE NEW.state = 'dead';
END;
DROP TRIGGER IF EXISTS job_search_delete;
CREATE TRIGGER job_search_delete AFTER DELETE ON jobs WHEN OLD.state <> 'dead' BEGIN
    DELETE FROM job_search WHERE rowid = OLD.id;
END;
CREATE TRIGGER IF NOT EXISTS job_search_delete_dead AFTER DELETE ON jobs WHEN OLD.state = 'dead' BEGIN
    DELETE FROM job_search_dead WHERE rowid = OLD.id;
END;
