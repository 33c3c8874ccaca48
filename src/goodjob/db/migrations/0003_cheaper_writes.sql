-- goodjob 0003: less work for every inserted, claimed and finished job (issue 5: throughput).
-- The future-job index now holds only jobs scheduled after their creation: a job due at once
-- (scheduled_at = created_at, the usual enqueue) no longer writes an entry into it, and every job
-- that is in the future is still there, since created_at <= now() < scheduled_at.
-- The batch columns lose their foreign keys: their triggers ran for every inserted row, even
-- with no batch, and batches keep their own references tidy (as GoodJob does, without keys).
-- Executions lose their foreign key to their job: its check ran for every claim and locked the
-- job's new row version once more (3-4 µs of server time per job, more with a deep primary key);
-- the statements that delete jobs delete their executions too.
-- error_event loses its CHECK: Postgres rebuilds a check constraint's expression for every
-- statement that writes the table, 7 µs of each single-job insert (a fifth of the server's
-- work for it); goodjob's statements only ever write the values the column comment lists.
-- Index names are not schema-qualified by the migration runner, hence the lookup of the table's
-- schema.
ALTER TABLE goodjob_jobs
    DROP CONSTRAINT goodjob_jobs_batch_id_fkey,
    DROP CONSTRAINT goodjob_jobs_batch_callback_id_fkey,
    DROP CONSTRAINT goodjob_jobs_error_event_check;
ALTER TABLE goodjob_executions DROP CONSTRAINT goodjob_executions_job_id_fkey;
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
COMMENT ON TABLE goodjob_executions IS 'One row per attempt of a job; deleted with the job by the statements that delete jobs (no foreign key: its check slowed every claim)';
