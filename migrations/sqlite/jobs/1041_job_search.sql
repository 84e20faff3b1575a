-- The dashboard's text search (a job's kind, arguments and last error, as one
-- text, case-insensitive substring) through an index instead of a scan: an FTS5
-- table with the trigram tokenizer, whose phrase queries are substring matches.
-- Contentless (the text lives in `jobs`), with deletes allowed; kept by triggers
-- that fire on inserts, deletes and changes of the searched text only, so a
-- state change (claim, completion) costs it nothing.
CREATE VIRTUAL TABLE IF NOT EXISTS job_search USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'trigram'
);
INSERT INTO job_search (rowid, body) SELECT id, kind || ' ' || args || ' ' || coalesce(last_error, '') FROM jobs;

CREATE TRIGGER IF NOT EXISTS job_search_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_search (rowid, body)
        VALUES (NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, ''));
END;
CREATE TRIGGER IF NOT EXISTS job_search_update AFTER UPDATE OF kind, args, last_error ON jobs
    WHEN OLD.kind <> NEW.kind OR OLD.args <> NEW.args OR OLD.last_error IS NOT NEW.last_error BEGIN
    DELETE FROM job_search WHERE rowid = OLD.id;
    INSERT INTO job_search (rowid, body)
        VALUES (NEW.id, NEW.kind || ' ' || NEW.args || ' ' || coalesce(NEW.last_error, ''));
END;
CREATE TRIGGER IF NOT EXISTS job_search_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM job_search WHERE rowid = OLD.id;
END;
