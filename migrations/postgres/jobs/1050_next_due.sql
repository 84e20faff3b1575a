-- The earliest future due time of a scheduled job in one index step: an idle
-- worker sleeps until then instead of a whole poll interval.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';

-- A job inserted as scheduled wakes idle workers too (one NOTIFY per queue and
-- statement, as for enqueued ones), so they learn its due time at once and
-- sleep until it rather than finding it at their next poll.
CREATE OR REPLACE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_enqueued', q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state IN ('enqueued', 'scheduled')) AS q;
    RETURN NULL;
END
$$;
