-- goodjob 0004: no per-task index (issue 5: throughput, and dequeue cost flat as history grows).
-- Every claim and every completion writes a new version of the job's row, and a non-partial
-- index gets an entry for each: the per-task index took three per job, in a B-tree as large as
-- the whole history. Measured with pg_stat_statements over 20,000-job drains on a table holding
-- 1,000,000 finished jobs: the claim's server time per job fell from 29 to 19 µs and the
-- completion's from 22 to 15 µs without it (on an empty table: 23 to 21 and 22 to 17).
-- Listings filtered by task now walk the primary key newest first, as listings by queue do.
-- Index names are not schema-qualified by the migration runner, hence the lookup of the table's
-- schema.
DO $$
DECLARE
    jobs_schema text := (SELECT relnamespace::regnamespace::text FROM pg_class
                         WHERE oid = 'goodjob_jobs'::regclass);
BEGIN
    EXECUTE format('DROP INDEX %s.goodjob_jobs_task', jobs_schema);
END
$$;
