-- How a worker can be known dead before its lease expires (see jobengine's
-- liveness module): 'pg-advisory-lock' when it holds the session lock named for it.
-- NULL (older workers) leaves its jobs to the lease.
ALTER TABLE job_workers ADD COLUMN IF NOT EXISTS liveness TEXT;
