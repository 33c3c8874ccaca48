-- goodjob 0012: the gated claim in one statement (issue 15). A claim of jobs with concurrency
-- keys took two statements in one transaction: the first locked the keys' rows, so that the
-- second, whose snapshot came after the locks, counted every running job of those keys. A
-- volatile function takes a fresh snapshot for each query it runs, so the claim now counts each
-- key's running jobs through this function once the key's row is locked: every claim of the key
-- that committed is counted, and none can commit while the lock is held.
CREATE FUNCTION goodjob_running_jobs(key text) RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$ SELECT count(*) FROM goodjob_jobs j
          WHERE j.concurrency_key = key AND j.finished_at IS NULL AND j.locked_by_id IS NOT NULL $$;
COMMENT ON FUNCTION goodjob_running_jobs(text) IS 'running jobs of a concurrency key, counted with a fresh snapshot (volatile): the gated claim calls it once the key''s row is locked';
