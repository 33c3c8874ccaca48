-- goodjob: the whole schema at its newest version (a test proves it equals the migrations).

CREATE TABLE goodjob_processes (
    id uuid PRIMARY KEY,
    state jsonb NOT NULL DEFAULT '{}',
    lock_type text CHECK (lock_type IN ('advisory')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE goodjob_processes IS 'One row per live worker process (capsule), kept by its CapsuleTracker';
COMMENT ON COLUMN goodjob_processes.state IS 'hostname, pid, proctitle, memory, version and live scheduler figures';
COMMENT ON COLUMN goodjob_processes.lock_type IS 'advisory: alive while its session advisory lock is held; null: alive while updated_at is fresh';
COMMENT ON COLUMN goodjob_processes.updated_at IS 'the heartbeat, in database time';

CREATE TABLE goodjob_batches (
    id uuid PRIMARY KEY,
    description text,
    properties jsonb NOT NULL DEFAULT '{}',
    on_finish text,
    on_success text,
    on_discard text,
    callback_queue_name text,
    callback_priority integer,
    enqueued_at timestamptz,
    discarded_at timestamptz,
    finished_at timestamptz,
    jobs_finished_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE goodjob_batches IS 'Groups of jobs with callbacks when they all finish';
COMMENT ON COLUMN goodjob_batches.enqueued_at IS 'when its jobs were first inserted (its block exited)';
COMMENT ON COLUMN goodjob_batches.discarded_at IS 'when the first of its jobs was discarded (on_discard)';
COMMENT ON COLUMN goodjob_batches.jobs_finished_at IS 'when all its jobs had finished (on_finish, on_success)';
COMMENT ON COLUMN goodjob_batches.finished_at IS 'when its jobs and the callbacks they started had finished';
-- Batches listed newest first.
CREATE INDEX goodjob_batches_created ON goodjob_batches (created_at, id);

CREATE TABLE goodjob_jobs (
    id uuid PRIMARY KEY,
    queue_name text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    task_name text NOT NULL,
    arguments jsonb NOT NULL DEFAULT '{}',
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    performed_at timestamptz,
    finished_at timestamptz,
    error text,
    error_event text,
    executions_count integer NOT NULL DEFAULT 0,
    labels text[],
    locked_by_id uuid,
    locked_at timestamptz,
    concurrency_key text,
    cron_key text,
    cron_at timestamptz,
    batch_id uuid,
    batch_callback_id uuid,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    -- A claim sets both, every release clears both: the claim's key walk relies on it (0010).
    CONSTRAINT goodjob_jobs_locked_together CHECK ((locked_by_id IS NULL) = (locked_at IS NULL))
);
COMMENT ON TABLE goodjob_jobs IS 'One row per job, reused across its attempts';
COMMENT ON COLUMN goodjob_jobs.priority IS 'smaller runs first';
COMMENT ON COLUMN goodjob_jobs.task_name IS 'registered name of the task, by default its import path';
COMMENT ON COLUMN goodjob_jobs.arguments IS '{"args": [...], "kwargs": {...}} in goodjob''s tagged JSON';
COMMENT ON COLUMN goodjob_jobs.scheduled_at IS 'not claimed before this database time';
COMMENT ON COLUMN goodjob_jobs.performed_at IS 'when the current or last attempt was claimed';
COMMENT ON COLUMN goodjob_jobs.finished_at IS 'set once the job succeeded or was discarded';
COMMENT ON COLUMN goodjob_jobs.error IS 'error of the last failed attempt';
COMMENT ON COLUMN goodjob_jobs.error_event IS 'how the last error was handled (GoodJob''s error events): interrupted, unhandled, handled, retried, retry_stopped or discarded';
COMMENT ON COLUMN goodjob_jobs.executions_count IS 'attempts claimed so far; fences completions';
COMMENT ON COLUMN goodjob_jobs.locked_by_id IS 'the process that claimed it; the one claim signal';
COMMENT ON COLUMN goodjob_jobs.concurrency_key IS 'the key whose limits and throttles it counts against';
COMMENT ON COLUMN goodjob_jobs.cron_key IS 'cron entry that enqueued it; unique with cron_at';
COMMENT ON COLUMN goodjob_jobs.result IS 'JSON return value of a succeeded job';
COMMENT ON COLUMN goodjob_jobs.cancelled_at IS 'when job.cancel() was asked: a running job ends discarded once its worker records the attempt';

-- The claim paths: unfinished, unlocked rows only, so dequeue cost ignores finished history;
-- jobs without a concurrency key only (keyed ones: goodjob_jobs_keyed_queued).
CREATE INDEX goodjob_jobs_dequeue_any ON goodjob_jobs (priority, scheduled_at, id)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND concurrency_key IS NULL;
CREATE INDEX goodjob_jobs_dequeue_queue ON goodjob_jobs (queue_name, priority, scheduled_at, id)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND concurrency_key IS NULL;
-- Warming the future-job cache: the next scheduled starts. Only jobs scheduled after their
-- creation (every future job: created_at <= now() < scheduled_at), so a job due at once writes
-- no entry here.
CREATE INDEX goodjob_jobs_scheduled ON goodjob_jobs (scheduled_at)
    WHERE finished_at IS NULL AND locked_by_id IS NULL AND scheduled_at > created_at;
-- Sweeping dead processes' and orphaned claims.
CREATE INDEX goodjob_jobs_locked_by ON goodjob_jobs (locked_by_id)
    WHERE locked_by_id IS NOT NULL;
-- Cleanup of preserved records, and listings of finished jobs.
CREATE INDEX goodjob_jobs_finished ON goodjob_jobs (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX goodjob_jobs_labels ON goodjob_jobs USING gin (labels)
    WHERE labels IS NOT NULL;
-- Jobs with a concurrency key, waiting and running: the gated claim's per-key lookups and counts,
-- the limited enqueue's counts, and the plain claim's one-probe gate (records/claims.py).
CREATE INDEX goodjob_jobs_keyed_queued ON goodjob_jobs (concurrency_key, priority, scheduled_at, id)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_by_id IS NULL;
CREATE INDEX goodjob_jobs_keyed_running ON goodjob_jobs (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_by_id IS NOT NULL;
-- The same queued keyed jobs in claim order: the gated claim's first, short walk for its keys.
-- On locked_at (cleared with locked_by_id, see goodjob_jobs_locked_together), so the claim's
-- per-key lookup, which names locked_by_id, cannot walk it past other keys' jobs (0010).
CREATE INDEX goodjob_jobs_keyed_due ON goodjob_jobs (priority, scheduled_at, id)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_at IS NULL;
CREATE INDEX goodjob_jobs_batch ON goodjob_jobs (batch_id) WHERE batch_id IS NOT NULL;
-- Settling a batch: whether any of its jobs is unfinished, or was discarded (one probe each),
-- and whether its callbacks are still to run.
CREATE INDEX goodjob_jobs_batch_unfinished ON goodjob_jobs (batch_id)
    WHERE batch_id IS NOT NULL AND finished_at IS NULL;
CREATE INDEX goodjob_jobs_batch_discarded ON goodjob_jobs (batch_id)
    WHERE batch_id IS NOT NULL AND finished_at IS NOT NULL AND error IS NOT NULL;
CREATE INDEX goodjob_jobs_batch_callback ON goodjob_jobs (batch_callback_id)
    WHERE batch_callback_id IS NOT NULL AND finished_at IS NULL;
-- The dashboard's discarded jobs, newest first (tab, exact count, errors page, chart): discarded
-- rows only, so no enqueue, claim or success writes it.
CREATE INDEX goodjob_jobs_discarded ON goodjob_jobs (finished_at, id)
    WHERE finished_at IS NOT NULL AND error IS NOT NULL;
-- Exactly-once cron enqueues across processes.
CREATE UNIQUE INDEX goodjob_jobs_cron ON goodjob_jobs (cron_key, cron_at)
    WHERE cron_key IS NOT NULL;

CREATE TABLE goodjob_executions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    process_id uuid,
    task_name text NOT NULL,
    queue_name text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    performed_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration interval,
    error text,
    error_event text,
    error_backtrace text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, attempt)
);
COMMENT ON TABLE goodjob_executions IS 'One row per attempt of a job; deleted with the job by the statements that delete jobs (no foreign key: its check slowed every claim)';
COMMENT ON COLUMN goodjob_executions.attempt IS 'the job''s executions_count when it was claimed';
COMMENT ON COLUMN goodjob_executions.process_id IS 'the process that ran it';
COMMENT ON COLUMN goodjob_executions.finished_at IS 'null while running, or when its process died';
COMMENT ON COLUMN goodjob_executions.error_backtrace IS 'formatted traceback of the error';
-- The dashboard's windows of attempts (performance per task, queue latency): appended at the
-- right edge, and never changed by the finishing update (which stays HOT).
CREATE INDEX goodjob_executions_performed ON goodjob_executions (performed_at);

CREATE TABLE goodjob_settings (
    key text PRIMARY KEY,
    value jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE goodjob_settings IS 'Cluster-wide settings: pauses, disabled cron entries';

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

-- The key of a process's session advisory lock: 64 bits of its id's md5, as GoodJob does.
CREATE FUNCTION goodjob_lock_key(id uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || substr(md5(id::text), 1, 16))::bit(64)::bigint $$;

-- Running jobs of a concurrency key, counted with a fresh snapshot (volatile): the gated claim
-- calls it once the key's row is locked (records/claims.py).
CREATE FUNCTION goodjob_running_jobs(key text) RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$ SELECT count(*) FROM goodjob_jobs j
          WHERE j.concurrency_key = key AND j.finished_at IS NULL AND j.locked_by_id IS NOT NULL $$;
COMMENT ON FUNCTION goodjob_running_jobs(text) IS 'running jobs of a concurrency key, counted with a fresh snapshot (volatile): the gated claim calls it once the key''s row is locked';

-- The migrations bookkeeping (as `goodjob migrate` creates it), marked up to date, so a database
-- built from this file is one `goodjob migrate` finds nothing left to do in.
CREATE TABLE goodjob_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO goodjob_migrations (version)
VALUES ('0001'), ('0002'), ('0003'), ('0004'), ('0005'), ('0006'), ('0007'),
       ('0008'), ('0009'), ('0010'), ('0011'), ('0012');
