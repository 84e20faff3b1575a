-- Ready jobs and scheduled jobs in separate due indexes, so a claim never walks
-- jobs scheduled for later.
--
-- `jobs_due` held both, ordered by priority first: a claim's walk of a queue
-- could not stop at the first job due later (the next priority level might
-- hold a due one), so a claim that found fewer jobs than it wanted (an idle
-- worker woken for one job, the end of a backlog) read every scheduled job of
-- the queue: 3 ms a claim beside 10,000 jobs scheduled for later, 317 index and
-- table pages beside 20,000, and growing with them.
--
-- Now the claim walks, per queue, `jobs_due` (ready jobs only: every one is
-- due, so the walk stops after the jobs it takes) and `jobs_scheduled_due` up
-- to the claim's time (so it stops at the first job due later). An idle
-- worker's next due time is one step of `jobs_scheduled_due` per queue it
-- serves, which replaces `jobs_scheduled` (all queues). Old processes still
-- running during a deploy claim correctly, by a slower plan, until they are
-- replaced.
DROP INDEX IF EXISTS jobs_due;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, priority DESC, run_at, id) WHERE state = 'enqueued';
CREATE INDEX IF NOT EXISTS jobs_scheduled_due ON jobs (queue, run_at, id) WHERE state = 'scheduled';
DROP INDEX IF EXISTS jobs_scheduled;
