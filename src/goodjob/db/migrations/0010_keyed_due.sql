-- goodjob 0010: queued keyed jobs in claim order (issue 15). The gated claim first finds the
-- keys whose due jobs come first; it read every key's row and looked up each key's next job,
-- O(keys) per claim (100 keys: 1.4 of a gated claim's 2.5 ms). It now walks the first due keyed
-- jobs in claim order through this index, and reads every key only when that short walk found
-- too few keys with a free slot. Only keyed jobs are in it: jobs without a key pay nothing.
--
-- Its predicate names locked_at, not locked_by_id: the claim's per-key lookup (which states
-- locked_by_id IS NULL) then cannot use it, so a plan made while few keyed jobs existed never
-- walks this index past other keys' jobs. The two columns are set and cleared together; the
-- check makes that a rule the walk can rely on.
ALTER TABLE goodjob_jobs ADD CONSTRAINT goodjob_jobs_locked_together
    CHECK ((locked_by_id IS NULL) = (locked_at IS NULL)) NOT VALID;
ALTER TABLE goodjob_jobs VALIDATE CONSTRAINT goodjob_jobs_locked_together;
CREATE INDEX goodjob_jobs_keyed_due ON goodjob_jobs (priority, scheduled_at, id)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_at IS NULL;
