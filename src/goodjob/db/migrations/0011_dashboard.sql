-- goodjob 0011: the dashboard (issue 17). Two indexes, each for a view that would otherwise read
-- the whole history, and each kept off the hot path:
-- * discarded jobs, newest first: the discarded tab (list and exact count), the errors page and
--   the overview's discarded-per-minute chart. Partial on discarded rows only, so enqueues,
--   claims and successful completions never write it; a discard writes one entry.
-- * attempts by start time: the performance page and the overview's latency chart read one
--   window of attempts. One entry per attempt, appended at the right edge (attempts start in
--   time order); performed_at never changes, so finishing an attempt stays a HOT update.
CREATE INDEX goodjob_jobs_discarded ON goodjob_jobs (finished_at, id)
    WHERE finished_at IS NOT NULL AND error IS NOT NULL;
CREATE INDEX goodjob_executions_performed ON goodjob_executions (performed_at);
