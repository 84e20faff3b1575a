-- The earliest future due time of a scheduled job in one index step: an idle
-- worker sleeps until then instead of a whole poll interval.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
