-- PostgreSQL's 1070 makes an insert cheaper by filling search rows lazily and
-- dropping job_history's foreign key. SQLite keeps both as they are: its FTS5
-- row and the key check cost little next to a PostgreSQL GIN insert (a batch of
-- 1,000 inserts at over 100,000 jobs/s here), and one writer at a time leaves no
-- race to guard against. Kept as a version so both backends' histories match.
SELECT 1;
