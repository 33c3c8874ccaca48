-- goodjob 0002: one index fewer to maintain on every insert (issue 5: enqueue throughput).
-- Job ids are UUIDv7, ordered by creation time, so the primary key already gives listings their
-- newest-first order: the created_at index duplicated it, and the per-task index now ends in id.
-- Index names are not schema-qualified by the migration runner, hence the lookup of the table's
-- schema.
DO $$
DECLARE
    jobs_schema text := (SELECT relnamespace::regnamespace::text FROM pg_class
                         WHERE oid = 'goodjob_jobs'::regclass);
BEGIN
    EXECUTE format('DROP INDEX %s.goodjob_jobs_created', jobs_schema);
    EXECUTE format('DROP INDEX %s.goodjob_jobs_task', jobs_schema);
END
$$;
CREATE INDEX goodjob_jobs_task ON goodjob_jobs (task_name, id);
