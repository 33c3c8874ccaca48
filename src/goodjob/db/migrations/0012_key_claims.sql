-- goodjob 0012: the gated claim in one statement (issue 15). A claim of jobs with concurrency
-- keys took two statements in one transaction: the first locked the keys' rows, so that the
-- second, whose snapshot came after the locks, counted every running job of those keys. Each
-- claim now adds the number of jobs it took to its keys' rows. A single statement locks a key's
-- row and reads the newest version of it; when that version's count equals the one its own
-- snapshot holds, no claim of the key committed since the snapshot was taken, so the running
-- jobs it counted are all there are (completions since then only free slots). A key whose count
-- moved is passed over, and the claim tried again.
ALTER TABLE goodjob_concurrency ADD COLUMN claims bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN goodjob_concurrency.claims IS 'jobs with this key claimed so far: a claim that locks the row and finds the count its snapshot saw knows its running count is current';
