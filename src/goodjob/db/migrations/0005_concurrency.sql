-- goodjob 0005: concurrency limits and throttles (issue 15). One row per concurrency key: the
-- limits of the tasks that use it, and the times of its latest starts and enqueues (throttles).
-- A claim or an enqueue of a key's jobs locks its row, so limits hold exactly across processes;
-- jobs without a key never read it.
CREATE TABLE goodjob_concurrency (
    key text PRIMARY KEY,
    perform_limit integer,
    perform_throttle integer,
    perform_throttle_seconds double precision,
    starts timestamptz[] NOT NULL DEFAULT '{}',
    enqueue_throttle integer,
    enqueue_throttle_seconds double precision,
    enqueues timestamptz[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE goodjob_concurrency IS 'One row per concurrency key: its limits, and its latest starts and enqueues; locked by every claim or limited enqueue of its jobs';
COMMENT ON COLUMN goodjob_concurrency.perform_limit IS 'running jobs with this key at most (null: no limit)';
COMMENT ON COLUMN goodjob_concurrency.perform_throttle IS 'starts per perform_throttle_seconds at most (null: no throttle)';
COMMENT ON COLUMN goodjob_concurrency.starts IS 'the latest starts, newest last, as many as the throttle counts';
COMMENT ON COLUMN goodjob_concurrency.enqueue_throttle IS 'enqueues per enqueue_throttle_seconds at most (null: no throttle)';
COMMENT ON COLUMN goodjob_concurrency.enqueues IS 'the latest enqueues, newest last, as many as the throttle counts';
COMMENT ON COLUMN goodjob_jobs.concurrency_key IS 'the key whose limits and throttles it counts against';

-- The index of unfinished keyed jobs is split by state: the claim reads queued ones by key, and
-- counts running ones. (Index names are not schema-qualified by the migration runner, hence the
-- lookup of the table's schema, as in 0002.)
DO $$
BEGIN
    EXECUTE format('DROP INDEX %s.goodjob_jobs_concurrency',
                   (SELECT relnamespace::regnamespace::text FROM pg_class
                    WHERE oid = 'goodjob_jobs'::regclass));
END
$$;
CREATE INDEX goodjob_jobs_keyed_queued ON goodjob_jobs (concurrency_key, priority, scheduled_at)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_by_id IS NULL;
CREATE INDEX goodjob_jobs_keyed_running ON goodjob_jobs (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_by_id IS NOT NULL;
