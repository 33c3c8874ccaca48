-- goodjob 0009: batches (issue 16). Settling a batch after a completion asks whether any of its
-- jobs is unfinished, whether one was discarded, and whether its callbacks still run: one probe
-- of a small partial index each, however many jobs the batch has. Batches are listed newest
-- first.
CREATE INDEX goodjob_jobs_batch_unfinished ON goodjob_jobs (batch_id)
    WHERE batch_id IS NOT NULL AND finished_at IS NULL;
CREATE INDEX goodjob_jobs_batch_discarded ON goodjob_jobs (batch_id)
    WHERE batch_id IS NOT NULL AND finished_at IS NOT NULL AND error IS NOT NULL;
CREATE INDEX goodjob_jobs_batch_callback ON goodjob_jobs (batch_callback_id)
    WHERE batch_callback_id IS NOT NULL AND finished_at IS NULL;
CREATE INDEX goodjob_batches_created ON goodjob_batches (created_at, id);
COMMENT ON COLUMN goodjob_batches.enqueued_at IS 'when its jobs were first inserted (its block exited)';
COMMENT ON COLUMN goodjob_batches.discarded_at IS 'when the first of its jobs was discarded (on_discard)';
COMMENT ON COLUMN goodjob_batches.jobs_finished_at IS 'when all its jobs had finished (on_finish, on_success)';
COMMENT ON COLUMN goodjob_batches.finished_at IS 'when its jobs and the callbacks they started had finished';
