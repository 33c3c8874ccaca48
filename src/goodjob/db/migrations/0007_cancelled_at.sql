-- goodjob 0007: cancelling a running job (issue 15). The job keeps its claim, and so its
-- concurrency slot, until its worker records the attempt, which then ends discarded as cancelled.
ALTER TABLE goodjob_jobs ADD COLUMN cancelled_at timestamptz;
COMMENT ON COLUMN goodjob_jobs.cancelled_at IS 'when job.cancel() was asked: a running job ends discarded once its worker records the attempt';
