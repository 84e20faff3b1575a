-- Attempts cut short by a dead or frozen worker (lease expired). They do not use
-- up the job's retry budget (the job did nothing wrong), but they are capped
-- separately, so a job that kills its worker every time still ends dead.
ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
