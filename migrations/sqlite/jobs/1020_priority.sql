-- Priorities: within its queue a job with a higher priority is claimed first
-- (default 0; ties by due time, then id).
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- The due index in the claim's order, so a claim per queue is one index walk that
-- stops after the jobs it takes, whatever the backlog (no temporary B-tree).
DROP INDEX IF EXISTS jobs_due;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('enqueued', 'scheduled');
