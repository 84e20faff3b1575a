-- An insert queues its jobs for the search indexer as one id range per
-- statement instead of one row per job (issue 13: bulk enqueue). A batch of
-- 1,000 wrote 1,000 rows into `job_search_pending`, about 0.45 ms of a 7 ms
-- statement and a sixth of its WAL; now it writes one row.
--
-- A range [lo, hi] covers every id its statement inserted and, where other
-- statements drew ids in between, some of theirs: those are indexed twice, which
-- is harmless (the indexer upserts from the jobs' current text), and an id
-- without a job (a rolled-back insert's) is skipped. Text changes and moves in
-- and out of `dead` still queue single ids in `job_search_pending`.
--
-- Rolling deploys: a server of the previous version neither searches the
-- ranges' jobs as candidates nor indexes them, so until a current process's
-- indexer writes them (its next rescue pass) its searches miss jobs inserted
-- since the upgrade; nothing else changes for it.
CREATE TABLE IF NOT EXISTS job_search_pending_ranges (
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL
);

CREATE OR REPLACE FUNCTION job_search_queue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_search_pending_ranges (lo, hi) SELECT min(id), max(id) FROM new_rows HAVING count(*) > 0;
    RETURN NULL;
END
$$;
