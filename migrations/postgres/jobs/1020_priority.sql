-- Priorities: within its queue a job with a higher priority is claimed first
-- (default 0; ties by due time, then id).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 0;

-- The due index in the claim's order, so a claim per queue is one index walk that
-- stops after the jobs it takes, whatever the backlog (no sort of the queue).
DROP INDEX IF EXISTS jobs_due;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('enqueued', 'scheduled');

-- One wake-up per INSERT statement, not one trigger call per row: a bulk enqueue
-- of thousands of jobs costs one NOTIFY per queue it touched. Updates (retries
-- falling due, requeues, rescues) keep the row trigger.
CREATE OR REPLACE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_enqueued', q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'enqueued') AS q;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS jobs_enqueued ON jobs;
DROP TRIGGER IF EXISTS jobs_inserted ON jobs;
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();
CREATE TRIGGER jobs_enqueued AFTER UPDATE OF state, run_at ON jobs
    FOR EACH ROW WHEN (NEW.state = 'enqueued') EXECUTE FUNCTION jobs_notify_enqueued();
