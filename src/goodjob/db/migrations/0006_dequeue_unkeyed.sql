-- goodjob 0006: the dequeue indexes hold jobs without a concurrency key only (issue 15). Keyed
-- jobs are claimed through goodjob_jobs_keyed_queued, each key's within its free slots; in the
-- dequeue indexes, the queued jobs of a key at its limit were walked past by every claim.
-- (Index names are not schema-qualified by the migration runner, hence the lookup, as in 0002.)
DO $$
DECLARE
    jobs_schema text := (SELECT relnamespace::regnamespace::text FROM pg_class
                         WHERE oid = 'goodjob_jobs'::regclass);
BEGIN
    EXECUTE format('DROP INDEX %s.goodjob_jobs_dequeue_any', jobs_schema);
    EXECUTE format('DROP INDEX %s.goodjob_jobs_dequeue_queue', jobs_schema);
END
$$;
CREATE INDEX goodjob_jobs_dequeue_any ON goodjob_jobs (priority, scheduled_at, id)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND concurrency_key IS NULL;
CREATE INDEX goodjob_jobs_dequeue_queue ON goodjob_jobs (queue_name, priority, scheduled_at, id)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND concurrency_key IS NULL;
