-- Dead jobs' search rows in an index of their own, apart from every other job's.
--
-- A search lists one state. When the text is common elsewhere but absent from
-- that state, the one index over every job gave a search all the elsewhere
-- matches to re-check, job by job: at 10,000,000 jobs, "refused" (the last
-- error of every dead job) in succeeded jobs re-checked 100,000 dead jobs
-- (about 1 s), and "welcome" in dead jobs walked all 100,000 dead jobs (about
-- 0.45 s). Dead jobs are where failures' texts gather and where an operator
-- looks for them, and jobs become dead rarely (retries spent) and leave it
-- rarely (requeued, deleted): so each search row carries whether its job is
-- dead, and two partial GIN indexes split them. A search of dead jobs asks the
-- dead index; a search of any other state asks the other one.
--
-- The flag is written by the folder (`Store::index_search`) like the text: a
-- job entering or leaving `dead` is queued in `job_search_pending`, and a
-- search takes queued jobs as candidates, so a flag not yet written never hides
-- a job. Claims and completions do not touch `dead` and queue nothing.
--
-- This migration sets the flags and the trigger, holding off writes to `jobs`
-- so that no job dies between the two unseen (an update of the dead jobs' rows,
-- about a second at 10,000,000 jobs); 1091 builds the indexes, which takes
-- minutes on a big table, without holding up jobs.
LOCK TABLE jobs IN SHARE MODE;

ALTER TABLE job_search ADD COLUMN IF NOT EXISTS dead BOOLEAN NOT NULL DEFAULT false;
UPDATE job_search SET dead = true
    FROM jobs WHERE jobs.id = job_search.job_id AND jobs.state = 'dead' AND NOT job_search.dead;

DROP TRIGGER IF EXISTS job_search_queue_changed ON jobs;
CREATE TRIGGER job_search_queue_changed AFTER UPDATE OF kind, args, last_error, state ON jobs FOR EACH ROW
    WHEN (OLD.kind <> NEW.kind OR OLD.args <> NEW.args OR OLD.last_error IS DISTINCT FROM NEW.last_error
          OR (OLD.state = 'dead') <> (NEW.state = 'dead'))
    EXECUTE FUNCTION job_search_queue_changed();
