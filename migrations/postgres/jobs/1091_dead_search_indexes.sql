-- The two partial GIN indexes of migration 1090: dead jobs' search rows and
-- the others'. Only `job_search` is locked while they are built (its writes
-- wait: the indexer's, which yields after a second and tries again next pass);
-- claims, completions and searches go on.
--
-- Rolling deploys: a server of the previous version searches through
-- `job_search_body` until it is dropped here, then by a scan of `job_search`;
-- its answers stay exact.
CREATE INDEX IF NOT EXISTS job_search_live ON job_search USING gin (body gin_trgm_ops) WHERE NOT dead;
CREATE INDEX IF NOT EXISTS job_search_dead ON job_search USING gin (body gin_trgm_ops) WHERE dead;
DROP INDEX IF EXISTS job_search_body;
