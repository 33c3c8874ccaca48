-- Every SQL statement goodjob runs, each under a "-- name: <name>" header and a one-line
-- description. Table names are written bare (goodjob_jobs) and qualified with the configured
-- schema when loaded. Parameters are named: %(name)s.

-- name: migrations_create_table
-- The bookkeeping table of applied migrations.
CREATE TABLE IF NOT EXISTS goodjob_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_applied
-- Versions already applied.
SELECT version FROM goodjob_migrations ORDER BY version;

-- name: migrations_record
-- Records one applied migration.
INSERT INTO goodjob_migrations (version) VALUES (%(version)s);

-- name: migrations_lock
-- Serialises concurrent `goodjob migrate` runs for the rest of the transaction.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: process_upsert
-- Creates or refreshes a process row (the heartbeat); re-creates it when deleted elsewhere.
INSERT INTO goodjob_processes AS p (id, state, lock_type)
VALUES (%(id)s, %(state)s, %(lock_type)s)
ON CONFLICT (id) DO UPDATE
    SET state = EXCLUDED.state, lock_type = EXCLUDED.lock_type, updated_at = now()
RETURNING p.id, p.state, p.lock_type, p.created_at, p.updated_at, (p.xmax = 0) AS inserted;

-- name: process_advisory_lock
-- Takes the process's session advisory lock on the current connection.
SELECT pg_try_advisory_lock(goodjob_lock_key(%(id)s)) AS locked;

-- name: process_advisory_lock_stale
-- Ends the other sessions that hold this process's advisory lock, where this role may (as in
-- processes_sweep); how many. No other process has this id, so such a session is this
-- process's own, left half-open by a network cut or a proxy: the server keeps it (and the lock)
-- until its keepalive gives up, which would keep this process from taking its lock again.
SELECT count(pg_terminate_backend(l.pid) OR NULL) AS ended
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = goodjob_lock_key(%(id)s)
  AND l.pid <> pg_backend_pid()
  AND (pg_has_role(current_user, a.usesysid, 'MEMBER')
       OR (pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
           AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid)));

-- name: process_advisory_unlock
-- Releases the process's session advisory lock on the current connection.
SELECT pg_advisory_unlock(goodjob_lock_key(%(id)s)) AS unlocked;

-- name: process_set_lock_type
-- Marks whether the process row is held under an advisory lock.
UPDATE goodjob_processes SET lock_type = %(lock_type)s, updated_at = now() WHERE id = %(id)s
RETURNING id, state, lock_type, created_at, updated_at;

-- name: process_delete
-- Deletes a process row and releases the claims of its unfinished jobs, in one statement.
WITH gone AS (
    DELETE FROM goodjob_processes WHERE id = %(id)s RETURNING id
)
UPDATE goodjob_jobs SET locked_by_id = NULL, locked_at = NULL, updated_at = now()
WHERE locked_by_id = %(id)s AND finished_at IS NULL;

-- name: process_orphans_release
-- Gives back the claims this process made without knowing it: a claim whose commit went through
-- while its connection broke, its reply lost (%(held)s: every job the process knows it holds).
-- Only claims older than %(older_than)s seconds, so no claim whose reply is still on its way
-- counts. Undone as jobs_unclaim does (the attempt and its execution), and the queues woken.
WITH orphans AS (
    SELECT j.id, j.executions_count AS attempt
    FROM goodjob_jobs j
    WHERE j.locked_by_id = %(process_id)s AND j.finished_at IS NULL
      AND j.locked_at < now() - make_interval(secs => %(older_than)s)
      AND j.id <> ALL(%(held)s::uuid[])
    FOR NO KEY UPDATE SKIP LOCKED
),
undone AS (
    UPDATE goodjob_jobs j
    SET locked_by_id = NULL, locked_at = NULL, executions_count = j.executions_count - 1,
        updated_at = now()
    FROM orphans o
    WHERE j.id = o.id
    RETURNING j.id, o.attempt, j.queue_name
),
deleted AS (
    DELETE FROM goodjob_executions e USING undone u WHERE e.job_id = u.id AND e.attempt = u.attempt
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', q.queue_name)::text)
    FROM (SELECT DISTINCT queue_name FROM undone) AS q
)
SELECT count(*) AS released, (SELECT count(*) FROM woken) AS notified FROM undone;

-- name: processes_list
-- Every process row with its liveness, as the sweeper judges it.
WITH held AS (
    SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT p.id, p.state, p.lock_type, p.created_at, p.updated_at,
       goodjob_lock_key(p.id) IN (SELECT key FROM held) AS advisory_locked,
       CASE WHEN p.lock_type = 'advisory'
            THEN (goodjob_lock_key(p.id) IN (SELECT key FROM held)
                  AND p.updated_at > now() - make_interval(secs => %(expired)s))
                 OR (p.updated_at < pg_postmaster_start_time()
                     AND now() - pg_postmaster_start_time() < make_interval(secs => %(restart_grace)s))
            ELSE p.updated_at > now() - make_interval(secs => %(expired)s)
       END AS alive
FROM goodjob_processes p
ORDER BY p.created_at;

-- name: processes_sweep
-- Deletes dead process rows, releases their claims and every claim naming no process; one
-- sweeper at a time (the others skip). A process is dead once its heartbeat is older than the
-- expiry, whatever else holds: a process that hangs (stopped, deadlocked) or whose host vanished
-- keeps its session, and so its advisory lock, alive. An advisory row is dead sooner, once its
-- lock is gone, except for a row last refreshed before a server restart that happened moments
-- ago: the restart took every lock, and its process is still reconnecting to take its lock again.
-- The session that still holds a dead process's lock is ended (pg_terminate_backend), where this
-- role may: the hung process finds its connections gone when it wakes, and no stale lock stays.
WITH sweeper AS (
    SELECT pg_try_advisory_xact_lock(%(sweep_key)s) AS got
),
held AS (
    SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, l.pid
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
dead AS (
    DELETE FROM goodjob_processes p
    USING sweeper
    WHERE sweeper.got AND NOT (
        CASE WHEN p.lock_type = 'advisory'
             THEN (goodjob_lock_key(p.id) IN (SELECT key FROM held)
                   AND p.updated_at > now() - make_interval(secs => %(expired)s))
                  OR (p.updated_at < pg_postmaster_start_time()
                      AND now() - pg_postmaster_start_time() < make_interval(secs => %(restart_grace)s))
             ELSE p.updated_at > now() - make_interval(secs => %(expired)s)
        END)
    RETURNING p.id
),
terminated AS (
    -- Only sessions this role may end: its own role's (or any, as a member of
    -- pg_signal_backend, but a superuser's), so a sweep never fails for want of the right.
    SELECT pg_terminate_backend(h.pid) AS ended
    FROM dead d
    JOIN held h ON h.key = goodjob_lock_key(d.id)
    JOIN pg_stat_activity a ON a.pid = h.pid
    WHERE h.pid <> pg_backend_pid()
      AND (pg_has_role(current_user, a.usesysid, 'MEMBER')
           OR (pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
               AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid)))
),
released AS (
    UPDATE goodjob_jobs j SET locked_by_id = NULL, locked_at = NULL, updated_at = now()
    FROM sweeper
    WHERE sweeper.got AND j.locked_by_id IS NOT NULL AND j.finished_at IS NULL
      AND (j.locked_by_id IN (SELECT id FROM dead)
           -- An orphan: its process row does not exist. Only claims made before this statement
           -- began: the row of a process that registered since then is invisible to this
           -- statement's snapshot, and a job it claimed meanwhile (which the update re-reads,
           -- waiting for the claim's commit) would otherwise look orphaned (issue 11). A claim
           -- needs its process row committed first, so an older claim's row would be visible.
           OR (j.locked_at < now()
               AND NOT EXISTS (SELECT 1 FROM goodjob_processes p WHERE p.id = j.locked_by_id)))
    RETURNING j.id, j.queue_name
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', queue_name)::text)
    FROM (SELECT DISTINCT queue_name FROM released) q
)
SELECT (SELECT got FROM sweeper) AS swept,
       (SELECT count(*) FROM dead) AS dead_processes,
       (SELECT count(*) FROM released) AS released_jobs,
       (SELECT count(*) FROM woken) AS notified_queues,
       (SELECT count(*) FILTER (WHERE ended) FROM terminated) AS terminated_sessions;

-- name: jobs_insert
-- Inserts jobs from parallel arrays and sends one NOTIFY per queue (not one per row). The
-- scalar arrays travel in binary (%(x)b); the arguments and the labels travel as one JSON
-- document each, split server-side: dumping one document is many times cheaper for psycopg than
-- a jsonb[] of 1,000 documents (issue 5: enqueue_all throughput). A column whose rows all share
-- one value comes as that value (%(queue_name)s, ...) and an empty array: ROWS FROM pads a
-- shorter list with nulls, and coalesce() fills them in. (An array sent in full comes with a
-- null shared value, so coalesce() then keeps each row's own value, null included.)
WITH inserted AS (
    INSERT INTO goodjob_jobs
        (id, queue_name, priority, task_name, arguments, scheduled_at, labels, concurrency_key,
         batch_id)
    SELECT i.id,
           coalesce(i.queue_name, %(queue_name)s::text),
           coalesce(i.priority, %(priority)s::int),
           coalesce(i.task_name, %(task_name)s::text),
           i.arguments,
           coalesce(i.run_at, %(run_at)s::timestamptz,
                    now() + make_interval(secs => coalesce(i.wait, %(wait)s::float8))),
           CASE WHEN jsonb_typeof(i.labels) = 'array' AND jsonb_array_length(i.labels) > 0
                THEN ARRAY(SELECT jsonb_array_elements_text(i.labels))
           END,
           coalesce(i.concurrency_key, %(concurrency_key)s::text),
           coalesce(i.batch_id, %(batch_id)s::uuid)
    FROM ROWS FROM (
        unnest(%(ids)b::uuid[]), unnest(%(queue_names)b::text[]), unnest(%(priorities)b::int[]),
        unnest(%(task_names)b::text[]), jsonb_array_elements(%(arguments)s::jsonb),
        unnest(%(run_ats)b::timestamptz[]), unnest(%(waits)b::float8[]),
        jsonb_array_elements(%(labels)s::jsonb), unnest(%(concurrency_keys)b::text[]),
        unnest(%(batch_ids)b::uuid[])
    ) AS i(id, queue_name, priority, task_name, arguments, run_at, wait, labels,
           concurrency_key, batch_id)
    RETURNING queue_name, scheduled_at
)
SELECT pg_notify(%(channel)s, json_build_object(
           'queue', queue_name,
           'scheduled_at', extract(epoch FROM min(scheduled_at)))::text)
FROM inserted
GROUP BY queue_name;

-- name: jobs_insert_one
-- Inserts one job and wakes its queue: jobs_insert for task.enqueue() with plain parameters,
-- which psycopg adapts and the server plans faster than ten one-element arrays (issue 5). The
-- NOTIFY is a function scan of the FROM list, built from the parameters: the statement then
-- returns no row for the client to read.
INSERT INTO goodjob_jobs
    (id, queue_name, priority, task_name, arguments, scheduled_at, labels, concurrency_key,
     batch_id)
SELECT %(id)s, %(queue_name)s, %(priority)s, %(task_name)s, %(arguments)s::jsonb, s.at,
       %(labels)s::text[], %(concurrency_key)s, %(batch_id)s
FROM (SELECT coalesce(%(run_at)s::timestamptz,
                      now() + make_interval(secs => %(wait)s::float8)) AS at) AS s,
     LATERAL pg_notify(%(channel)s, json_build_object(
         'queue', %(queue_name)s::text,
         'scheduled_at', extract(epoch FROM s.at))::text) AS notified;

-- name: concurrency_keys_prepare
-- The first statement of an enqueue of jobs with concurrency keys: writes each key's row with
-- its task's limits (a row per key, created on first use) and so locks it until the enqueue
-- commits. Enqueues of one key take turns, which makes their counts exact
-- (concurrency_enqueue); a claim passes the key over meanwhile (SKIP LOCKED) and is woken by the
-- enqueue's NOTIFY; cleanup cannot delete the row of a key whose job is being inserted. Keys
-- come sorted, so two enqueues lock shared keys in the same order.
INSERT INTO goodjob_concurrency AS c
    (key, perform_limit, perform_throttle, perform_throttle_seconds, enqueue_throttle,
     enqueue_throttle_seconds)
SELECT *
FROM unnest(%(keys)s::text[], %(perform_limits)s::int[], %(perform_throttles)s::int[],
            %(perform_throttle_seconds)s::float8[], %(enqueue_throttles)s::int[],
            %(enqueue_throttle_seconds)s::float8[])
ORDER BY 1
ON CONFLICT (key) DO UPDATE
    SET perform_limit = excluded.perform_limit, perform_throttle = excluded.perform_throttle,
        perform_throttle_seconds = excluded.perform_throttle_seconds,
        enqueue_throttle = excluded.enqueue_throttle,
        enqueue_throttle_seconds = excluded.enqueue_throttle_seconds,
        -- statement_timestamp(): a caller's transaction may have begun long ago (cleanup)
        updated_at = statement_timestamp();

-- name: concurrency_enqueue
-- Inserts one job whose task limits enqueues, or refuses it, after concurrency_keys_prepare
-- locked its key's row in this transaction: the counts see every enqueue of the key that
-- committed, and no other can land in between. Counts stop at the limit (LIMIT), so a key with
-- a long backlog costs no more than a short one. Returns why it was refused (null: inserted)
-- and the job in its way: the key's first queued job, else its first running one.
WITH k AS (
    SELECT c.enqueue_throttle, c.enqueue_throttle_seconds, c.enqueues
    FROM goodjob_concurrency c WHERE c.key = %(concurrency_key)s
),
verdict AS (
    SELECT CASE
        WHEN %(enqueue_limit)s::int IS NOT NULL
             AND (SELECT count(*) FROM (
                      SELECT 1 FROM goodjob_jobs j
                      WHERE j.concurrency_key = %(concurrency_key)s AND j.finished_at IS NULL
                        AND j.locked_by_id IS NULL
                      LIMIT %(enqueue_limit)s) AS q) >= %(enqueue_limit)s::int
        THEN 'enqueue_limit'
        WHEN %(total_limit)s::int IS NOT NULL
             AND (SELECT count(*) FROM (
                      SELECT 1 FROM goodjob_jobs j
                      WHERE j.concurrency_key = %(concurrency_key)s AND j.finished_at IS NULL
                      LIMIT %(total_limit)s) AS t) >= %(total_limit)s::int
        THEN 'total_limit'
        WHEN (SELECT count(*) FROM k, unnest(k.enqueues) AS e(at)
              WHERE e.at > statement_timestamp()
                           - make_interval(secs => k.enqueue_throttle_seconds))
             >= (SELECT enqueue_throttle FROM k)
        THEN 'enqueue_throttle'
    END AS refused
),
inserted AS (
    INSERT INTO goodjob_jobs
        (id, queue_name, priority, task_name, arguments, scheduled_at, labels, concurrency_key,
         batch_id)
    SELECT %(id)s, %(queue_name)s, %(priority)s, %(task_name)s, %(arguments)s::jsonb,
           coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(wait)s::float8)),
           %(labels)s::text[], %(concurrency_key)s, %(batch_id)s
    FROM verdict WHERE refused IS NULL
    RETURNING queue_name, scheduled_at
),
noted AS (
    -- The key's latest enqueues, newest last, as many as its throttle counts.
    UPDATE goodjob_concurrency c
    SET enqueues = (c.enqueues || statement_timestamp())
                       [greatest(1, cardinality(c.enqueues) + 2 - c.enqueue_throttle):],
        updated_at = now()
    FROM inserted
    WHERE c.key = %(concurrency_key)s AND c.enqueue_throttle IS NOT NULL
)
SELECT v.refused,
       (SELECT j.id FROM goodjob_jobs j
        WHERE v.refused IS NOT NULL AND j.concurrency_key = %(concurrency_key)s
          AND j.finished_at IS NULL
        ORDER BY j.locked_by_id IS NOT NULL, j.scheduled_at, j.id
        LIMIT 1) AS blocker,
       (SELECT count(pg_notify(%(channel)s, json_build_object(
                   'queue', i.queue_name,
                   'scheduled_at', extract(epoch FROM i.scheduled_at))::text))
        FROM inserted i) AS notified
FROM verdict v;

-- name: jobs_claim
-- Claims up to {limit} due jobs for a process in one statement: locks them (SKIP LOCKED),
-- stamps the claim and the attempt, opens their execution rows, and closes as interrupted any
-- attempt left open by a process that died. A job is reported interrupted when its previous
-- attempt was (left open, or released at shutdown). Jobs of a paused queue, task or label are
-- passed over ({pauses}). Jobs with a concurrency key are claimed only in the gated form
-- ({gate_ctes}, {keyed}, {chosen}, {gate_noted}; the plain form's {gate_filter} claims nothing
-- while one waits): it locks the rows of the keys whose due jobs come first, counts their
-- running jobs once the locks are held, and takes each key's first jobs within its free slots,
-- merged with the unkeyed ones; its rows carry a report ({report_column}, {report_join};
-- records/claims.py).
-- Every {fragment} is fixed text chosen by the pool's ClaimSpec (records/claims.py), never user
-- text; no other code renders this statement. With {skip_advisory_locked} (the advisory
-- and hybrid strategies) a job whose advisory lock some session still holds is passed over.
-- {limit} and {skip_advisory_locked} are written into the text (a whole number; true or false),
-- not sent as parameters: as parameters, Postgres costed the plan it could keep for any limit at
-- a tenth of the due rows and so planned every claim afresh (issue 5: 17.5 µs of server time per
-- job, nearly as much as running it). Each limit a pool uses is now a statement of its own, kept
-- with one plan after its first executions (a pool uses a few limits).
-- The update reaches each locked row by its ctid, not by a second primary-key descent, whose
-- depth grows with the finished history (issue 5). A row that a transaction committed after
-- this statement began is locked in its new version, which the update cannot see: that job
-- is left for the next claim, never lost nor claimed twice.
WITH me AS (
    SELECT 1 FROM goodjob_processes WHERE id = %(process_id)s
),
held AS MATERIALIZED (
    SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
    FROM pg_locks l
    WHERE {skip_advisory_locked} AND l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),{gate_ctes}
candidates AS (
    SELECT j.id, j.ctid AS tid, j.queue_name, j.priority, j.scheduled_at
    FROM goodjob_jobs j
    -- concurrency_key IS NULL: the dequeue indexes hold jobs without a key only (keyed ones are
    -- claimed from goodjob_jobs_keyed_queued, below), so no claim walks past keyed jobs.
    WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.concurrency_key IS NULL
      AND j.scheduled_at <= now() {queue_filter} {filters} {pauses} {gate_filter}
      AND EXISTS (SELECT 1 FROM me)
      AND (NOT {skip_advisory_locked} OR goodjob_lock_key(j.id) NOT IN (SELECT key FROM held))
    ORDER BY {queue_order} j.priority, j.scheduled_at, j.id
    LIMIT {limit}
    FOR NO KEY UPDATE OF j SKIP LOCKED
),{keyed}
chosen AS (
    {chosen}
),
claimed AS (
    UPDATE goodjob_jobs j
    -- {now}: the plain form's statement_timestamp(); the gated form's clock_timestamp(), taken
    -- after its keys were locked and counted, so a key's starts come in the order they were
    -- counted, and after every completion the count saw.
    SET locked_by_id = %(process_id)s, locked_at = {now},
        performed_at = {now}, executions_count = j.executions_count + 1,
        updated_at = now()
    FROM chosen c
    WHERE j.ctid = c.tid AND j.id = c.id AND j.locked_by_id IS NULL
    RETURNING j.id, j.queue_name, j.priority, j.task_name, j.arguments, j.scheduled_at,
              j.executions_count, j.labels, j.created_at, j.performed_at, j.concurrency_key,
              j.cancelled_at IS NOT NULL AS cancelled, j.batch_id, j.batch_callback_id
),{gate_noted}
started AS (
    INSERT INTO goodjob_executions
        (job_id, attempt, process_id, task_name, queue_name, scheduled_at, performed_at)
    SELECT id, executions_count, %(process_id)s, task_name, queue_name, scheduled_at, performed_at
    FROM claimed
),
interrupted AS (
    UPDATE goodjob_executions e
    SET finished_at = now(), duration = now() - e.performed_at, updated_at = now(),
        error = 'goodjob.JobInterrupted: the process running this attempt stopped before it finished',
        error_event = 'interrupted'
    FROM claimed c
    WHERE c.executions_count > 1 -- a first attempt has no earlier one: no index probe
      AND e.job_id = c.id AND e.attempt < c.executions_count AND e.finished_at IS NULL
    RETURNING e.job_id
)
SELECT j.id, j.queue_name, j.priority, j.task_name, j.scheduled_at, j.executions_count,
       j.labels, j.concurrency_key, j.cancelled, j.batch_id, j.batch_callback_id,
       -- As text, decoded by the thread that runs the job: a row psycopg could not decode
       -- (nested too deep) would otherwise fail the whole claim after it committed (issue 11).
       j.arguments::text AS arguments,
       j.executions_count > 1
       AND (j.id IN (SELECT job_id FROM interrupted)
            OR EXISTS (SELECT 1 FROM goodjob_executions p
                       WHERE p.job_id = j.id AND p.attempt = j.executions_count - 1
                         AND p.error_event = 'interrupted')) AS interrupted{report_column}
FROM claimed j{report_join}
ORDER BY {queue_order} j.priority, j.scheduled_at, j.id;

-- name: jobs_complete
-- Records the outcomes of finished attempts, fenced on (id, locked_by_id, attempt) so a worker
-- that lost its claim changes nothing. Outcomes: succeeded and discarded finish the job; retry
-- reschedules it after %(waits)s seconds; release returns it to the queue untouched (interrupted
-- at shutdown). A succeeded outcome may carry a handled error (error_event 'handled'). Finished
-- jobs that are not preserved are deleted instead. Returns the ids that were recorded. Arrays
-- travel in binary (%(x)b), as in jobs_insert. The update and the delete reach the rows the
-- fence locked by their ctid, as jobs_claim does (a row changed under the fence by a commit
-- after this statement began is not recorded: only an operator's forced discard changes a
-- running job's row, and that fences the worker out anyway). The queues in %(wake_queues)s are
-- woken when it commits (an outcome the fence refused wakes them for nothing).
WITH outcome AS (
    SELECT *
    FROM unnest(%(ids)b::uuid[], %(attempts)b::int[], %(kinds)b::text[], %(results)b::jsonb[],
                %(errors)b::text[], %(error_events)b::text[], %(backtraces)b::text[],
                %(waits)b::float8[], %(durations)b::float8[], %(preserve)b::bool[])
        AS o(id, attempt, kind, result, error, error_event, backtrace, wait, duration, preserve)
),
fenced AS (
    -- A job cancelled while it ran (job_cancel set cancelled_at) ends discarded as cancelled,
    -- whatever its attempt returned: the cancel committed first.
    SELECT o.id, o.attempt,
           CASE WHEN j.cancelled THEN 'discarded' ELSE o.kind END AS kind,
           o.result,
           CASE WHEN j.cancelled THEN 'goodjob.JobCancelled: cancelled' ELSE o.error END AS error,
           CASE WHEN j.cancelled THEN 'discarded' ELSE o.error_event END AS error_event,
           o.backtrace, o.wait, o.duration, o.preserve, j.tid
    FROM outcome o
    -- One primary-key lookup per outcome, in every plan: a locking subquery is never merged into
    -- a join, and IS NOT DISTINCT FROM (the same test as = for a process id, which is never null
    -- here) is one the goodjob_jobs_locked_by index cannot answer. Through that index a plan read
    -- every job the process holds for each batch, and a join plan for a large batch scanned the
    -- table; so the statement had to be planned afresh per batch (9-10 µs of server time per
    -- job, issue 5). Now the plan Postgres keeps serves every batch size.
    CROSS JOIN LATERAL (
        SELECT j.ctid AS tid, j.cancelled_at IS NOT NULL AS cancelled
        FROM goodjob_jobs j
        WHERE j.id = o.id AND j.executions_count = o.attempt
          AND j.locked_by_id IS NOT DISTINCT FROM %(process_id)s::uuid
          AND %(process_id)s::uuid IS NOT NULL
        FOR NO KEY UPDATE OF j
    ) AS j
),
updated AS (
    UPDATE goodjob_jobs j
    SET locked_by_id = NULL,
        locked_at = NULL,
        finished_at = CASE WHEN f.kind IN ('succeeded', 'discarded') THEN now() END,
        scheduled_at = CASE WHEN f.kind = 'retry' THEN now() + make_interval(secs => f.wait)
                            ELSE j.scheduled_at END,
        result = CASE WHEN f.kind = 'succeeded' THEN f.result ELSE j.result END,
        -- a handled error leaves the job succeeded: the error stays on the execution only
        error = CASE WHEN f.kind = 'succeeded' THEN NULL ELSE f.error END,
        error_event = f.error_event,
        updated_at = now()
    FROM fenced f
    WHERE j.ctid = f.tid AND (f.preserve OR f.kind IN ('retry', 'release'))
    RETURNING j.id, f.attempt, f.duration, f.error, f.error_event, f.backtrace
),
deleted AS (
    DELETE FROM goodjob_jobs j
    USING fenced f
    WHERE j.ctid = f.tid AND NOT f.preserve AND f.kind IN ('succeeded', 'discarded')
    RETURNING j.id
),
deleted_executions AS (
    DELETE FROM goodjob_executions e USING deleted d WHERE e.job_id = d.id
),
executions AS (
    UPDATE goodjob_executions e
    SET finished_at = now(), duration = make_interval(secs => u.duration), error = u.error,
        error_event = u.error_event, error_backtrace = u.backtrace, updated_at = now()
    -- joined on what the update returned: one index probe per row on (job_id, attempt); an
    -- IN (SELECT … FROM updated) here rescanned that CTE per row, quadratic in the batch
    FROM updated u
    WHERE e.job_id = u.id AND e.attempt = u.attempt
),
woken AS (
    -- Queues to wake at commit, with the seconds until their earliest job is due: a retried or
    -- released job's, or 0 where a concurrency slot freed. Empty for plain successes. Read by
    -- the last line only so that it runs (a CTE nothing reads is never run).
    SELECT count(pg_notify(%(channel)s::text, json_build_object(
               'queue', w.queue,
               'scheduled_at', extract(epoch FROM now() + make_interval(secs => w.wait)))::text))
           AS sent
    FROM unnest(%(wake_queues)b::text[], %(wake_waits)b::float8[]) AS w(queue, wait)
)
SELECT id FROM updated
UNION ALL
SELECT id FROM deleted
UNION ALL
SELECT NULL FROM woken WHERE sent < 0;

-- name: executions_recorded
-- Which of these attempts this process recorded already: a completion retried because its
-- connection broke may have committed before the break, its reply lost. Recorded means the
-- attempt's execution was finished by this process with this error (none, for a success), not
-- closed as interrupted by another claim nor by an operator's forced discard; or the job is gone,
-- which only a finished job can be (deleted as it finished, when records are not kept).
SELECT o.id
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(errors)s::text[]) AS o(id, attempt, error)
WHERE EXISTS (SELECT 1 FROM goodjob_executions e
              WHERE e.job_id = o.id AND e.attempt = o.attempt
                AND e.process_id = %(process_id)s AND e.finished_at IS NOT NULL
                AND e.error IS NOT DISTINCT FROM o.error)
   OR NOT EXISTS (SELECT 1 FROM goodjob_jobs j WHERE j.id = o.id);

-- name: jobs_renotify
-- Wakes workers for queues after jobs were released or rescheduled, or a concurrency slot
-- freed; each queue's wait (seconds from now) is the earliest of its jobs, so a worker can set
-- a timer instead of polling. Sent in a transaction, the NOTIFYs go out when it commits.
SELECT count(pg_notify(%(channel)s, json_build_object(
           'queue', u.queue,
           'scheduled_at', extract(epoch FROM now() + make_interval(secs => u.wait)))::text))
FROM unnest(%(queues)s::text[], %(waits)s::float8[]) AS u(queue, wait);

-- name: job_get
-- One job with its derived status.
SELECT j.*, {status} AS status
FROM goodjob_jobs j
WHERE j.id = %(id)s;

-- name: job_executions
-- The attempts of one job, oldest first.
SELECT * FROM goodjob_executions WHERE job_id = %(id)s ORDER BY attempt;

-- name: jobs_unclaim
-- Gives back claims of jobs that never started (claimed ahead and not started, or whose advisory
-- lock is held elsewhere), as if the claims never happened: fenced like jobs_complete, each
-- attempt and its execution undone. One statement for a batch.
WITH given AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS g(id, attempt)
),
undone AS (
    UPDATE goodjob_jobs j
    SET locked_by_id = NULL, locked_at = NULL, executions_count = j.executions_count - 1,
        updated_at = now()
    FROM given g
    WHERE j.id = g.id AND j.locked_by_id = %(process_id)s AND j.executions_count = g.attempt
    RETURNING j.id, g.attempt
)
DELETE FROM goodjob_executions e
USING undone u
WHERE e.job_id = u.id AND e.attempt = u.attempt
RETURNING e.job_id;

-- name: job_claim_held
-- Whether a process still holds its claim of a job's attempt (checked before running a job that
-- waited after its claim: a sweep may have handed it to another process meanwhile).
SELECT EXISTS (
    SELECT 1 FROM goodjob_jobs
    WHERE id = %(id)s AND locked_by_id = %(process_id)s AND executions_count = %(attempt)s
      AND finished_at IS NULL
) AS held;

-- name: job_advisory_lock
-- Takes the session advisory locks of jobs (advisory and hybrid strategies) on this connection;
-- returns the ids whose lock was free.
SELECT id FROM unnest(%(ids)s::uuid[]) AS id WHERE pg_try_advisory_lock(goodjob_lock_key(id));

-- name: job_advisory_unlock
-- Releases the session advisory locks of jobs on this connection.
SELECT count(*) FILTER (WHERE pg_advisory_unlock(goodjob_lock_key(id))) AS unlocked
FROM unnest(%(ids)s::uuid[]) AS id;

-- name: jobs_list
-- Jobs filtered by status, queue, task and label (each optional), newest first (ids are
-- UUIDv7, so id order is creation order and the primary key serves it).
SELECT j.*, {status} AS status
FROM goodjob_jobs j
WHERE (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
  AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
  AND (%(label)s::text IS NULL OR j.labels @> ARRAY[%(label)s::text])
  AND (%(status)s::text IS NULL OR {status} = %(status)s)
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: job_retry
-- Re-queues a discarded job to run now; refused (no row) unless it is finished with an error.
-- A job with a concurrency key gets its key's row back (cleanup deletes the rows of keys no
-- unfinished job uses; without one, no claim would take the job): written, so locked, as an
-- enqueue's is. Its limits come back with the key's next enqueue.
WITH key_row AS (
    INSERT INTO goodjob_concurrency AS c (key)
    SELECT j.concurrency_key FROM goodjob_jobs j
    WHERE j.id = %(id)s AND j.concurrency_key IS NOT NULL AND j.finished_at IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET updated_at = statement_timestamp()
),
retried AS (
    UPDATE goodjob_jobs j
    SET finished_at = NULL, scheduled_at = now(), locked_by_id = NULL, locked_at = NULL,
        cancelled_at = NULL, updated_at = now()
    WHERE j.id = %(id)s AND j.finished_at IS NOT NULL AND j.error IS NOT NULL
    RETURNING j.id, j.queue_name
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', queue_name)::text) FROM retried
)
SELECT id, (SELECT count(*) FROM woken) AS notified FROM retried;

-- name: job_discard
-- Discards an unfinished job; a running one only with %(force)s, which also takes its claim
-- away so the worker's late completion is fenced out. Closes the open execution.
WITH discarded AS (
    UPDATE goodjob_jobs j
    SET finished_at = now(), locked_by_id = NULL, locked_at = NULL, error = %(error)s,
        error_event = 'discarded', updated_at = now()
    WHERE j.id = %(id)s AND j.finished_at IS NULL AND (j.locked_by_id IS NULL OR %(force)s)
    RETURNING j.id
),
closed AS (
    UPDATE goodjob_executions e
    SET finished_at = now(), duration = now() - e.performed_at, error = %(error)s,
        error_event = 'discarded', updated_at = now()
    FROM discarded d
    WHERE e.job_id = d.id AND e.finished_at IS NULL
)
SELECT id FROM discarded;

-- name: concurrency_cleanup
-- Deletes the rows of concurrency keys that no unfinished job uses and that nothing touched for
-- an hour, or for longer than their throttles' periods (every enqueue and throttled start
-- touches its key's row, so its remembered times are older than that and count no more). A row
-- an enqueue or a claim holds is passed over (SKIP LOCKED); one touched since this statement
-- began fails the recheck of updated_at; an enqueue after it creates the row again.
DELETE FROM goodjob_concurrency c
WHERE c.key IN (
    SELECT i.key FROM goodjob_concurrency i
    WHERE i.updated_at < now() - make_interval(secs => greatest(
              3600, coalesce(i.perform_throttle_seconds, 0), coalesce(i.enqueue_throttle_seconds, 0)))
    FOR UPDATE SKIP LOCKED
)
AND NOT EXISTS (SELECT 1 FROM goodjob_jobs j
                WHERE j.concurrency_key = c.key AND j.finished_at IS NULL)
RETURNING c.key;

-- name: job_cancel
-- Cancels an unfinished job. One waiting to run ends discarded now, as cancelled. A running one
-- is marked (cancelled_at) and its process told on the channel ({"cancel": id, "attempt": n}),
-- which tells the task; it keeps its claim, and so its concurrency slot, until its worker
-- records the attempt, which jobs_complete turns into discarded as cancelled. Should the worker
-- die first, the claim that takes the job next discards it without running it. A race with the
-- job's own completion is decided by the row lock: whichever commits first wins (no row: it
-- had finished).
WITH target AS (
    SELECT j.id, j.locked_by_id
    FROM goodjob_jobs j
    WHERE j.id = %(id)s AND j.finished_at IS NULL
    FOR NO KEY UPDATE
),
finished AS (
    UPDATE goodjob_jobs j
    SET finished_at = now(), cancelled_at = now(), error = %(error)s, error_event = 'discarded',
        updated_at = now()
    FROM target t
    WHERE j.id = t.id AND t.locked_by_id IS NULL
    RETURNING j.id
),
asked AS (
    UPDATE goodjob_jobs j
    SET cancelled_at = now(), updated_at = now()
    FROM target t
    WHERE j.id = t.id AND t.locked_by_id IS NOT NULL
    RETURNING j.id, j.queue_name, j.executions_count
),
closed AS (
    -- A waiting job may have an attempt left open by a process that died.
    UPDATE goodjob_executions e
    SET finished_at = now(), duration = now() - e.performed_at, error = %(error)s,
        error_event = 'discarded', updated_at = now()
    FROM finished f
    WHERE e.job_id = f.id AND e.finished_at IS NULL
)
SELECT id, false AS running FROM finished
UNION ALL
SELECT id, pg_notify(%(channel)s, json_build_object(
           'cancel', id, 'attempt', executions_count, 'queue', queue_name)::text) IS NOT NULL
FROM asked;

-- name: job_reschedule
-- Makes an unfinished, unclaimed job due now; refused (no row) for running or finished jobs.
WITH rescheduled AS (
    UPDATE goodjob_jobs j
    SET scheduled_at = now(), updated_at = now()
    WHERE j.id = %(id)s AND j.finished_at IS NULL AND j.locked_by_id IS NULL
    RETURNING j.id, j.queue_name
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', queue_name)::text) FROM rescheduled
)
SELECT id, (SELECT count(*) FROM woken) AS notified FROM rescheduled;

-- name: job_destroy
-- Deletes a finished job and its executions; refused (no row) for unfinished ones.
WITH destroyed AS (
    DELETE FROM goodjob_jobs WHERE id = %(id)s AND finished_at IS NOT NULL RETURNING id
),
executions AS (
    DELETE FROM goodjob_executions e USING destroyed d WHERE e.job_id = d.id
)
SELECT id FROM destroyed;

-- name: jobs_cleanup
-- Deletes up to %(chunk)s finished jobs older than %(older_than)s seconds, and their executions;
-- discarded ones only with %(include_discarded)s. Called in a loop, chunk by chunk.
WITH doomed AS (
    SELECT id FROM goodjob_jobs
    WHERE finished_at IS NOT NULL
      AND finished_at < now() - make_interval(secs => %(older_than)s)
      AND (%(include_discarded)s OR error IS NULL)
      -- a batch's jobs stay while it is unfinished: settling it reads them
      AND (batch_id IS NULL
           OR EXISTS (SELECT 1 FROM goodjob_batches b
                      WHERE b.id = batch_id AND b.finished_at IS NOT NULL))
    ORDER BY finished_at
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM goodjob_jobs j USING doomed d WHERE j.id = d.id RETURNING j.id
),
executions AS (
    DELETE FROM goodjob_executions e USING deleted d WHERE e.job_id = d.id
)
SELECT id FROM deleted;

-- name: jobs_now
-- The transaction's database time, from which a COPY batch computes its scheduled_at values.
SELECT now() AS now;

-- name: jobs_copy
-- Bulk insert of large batches (faster than unnest at thousands of rows); see jobs_notify.
COPY goodjob_jobs (id, queue_name, priority, task_name, arguments, scheduled_at, labels,
                   concurrency_key, batch_id)
FROM STDIN;

-- name: jobs_notify
-- One NOTIFY per queue for a batch inserted by COPY, with the queue's earliest scheduled_at.
SELECT pg_notify(%(channel)s, json_build_object(
           'queue', q.queue, 'scheduled_at', extract(epoch FROM q.scheduled_at))::text)
FROM unnest(%(queues)s::text[], %(scheduled_ats)s::timestamptz[]) AS q(queue, scheduled_at);

-- name: runtime_future_jobs
-- The start times of the next scheduled jobs, within %(horizon)s seconds when not NULL (warms a
-- worker's future-job cache), and the database's clock (one row with a NULL queue when no job
-- is scheduled), from which the worker converts due times to its own timers.
SELECT extract(epoch FROM clock_timestamp())::float8 AS now_epoch, f.queue_name,
       f.scheduled_epoch
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT j.queue_name, extract(epoch FROM j.scheduled_at)::float8 AS scheduled_epoch
    FROM goodjob_jobs j
    -- scheduled_at > created_at: the predicate of the goodjob_jobs_scheduled index (every
    -- future job)
    WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.scheduled_at > j.created_at
      AND j.scheduled_at > now()
      AND (%(horizon)s::float8 IS NULL
           OR j.scheduled_at <= now() + make_interval(secs => %(horizon)s::float8))
    ORDER BY j.scheduled_at
    LIMIT %(limit)s
) AS f ON true;

-- name: demo_progress
-- Jobs of one demo run (by label) per state, for `goodjob demo`'s live view.
SELECT {status} AS status, count(*) AS jobs
FROM goodjob_jobs j
WHERE j.labels @> ARRAY[%(label)s::text]
GROUP BY 1;

-- name: demo_summary
-- Per queue for one demo run: jobs, attempts, and the wait from due to started of first attempts
-- (percentiles in seconds); the NULL queue row is the total.
SELECT e.queue_name,
       count(DISTINCT e.job_id) AS jobs,
       count(*) AS attempts,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM e.performed_at - e.scheduled_at)
       ) FILTER (WHERE e.attempt = 1) AS wait,
       extract(epoch FROM max(e.finished_at) - min(e.performed_at))::float8 AS span
FROM goodjob_executions e
JOIN goodjob_jobs j ON j.id = e.job_id
WHERE j.labels @> ARRAY[%(label)s::text]
GROUP BY ROLLUP (e.queue_name)
ORDER BY e.queue_name NULLS LAST;

-- name: demo_peak_throughput
-- The most attempts of one demo run that finished within one wall-clock second.
SELECT max(n)::int AS peak
FROM (
    SELECT count(*) AS n
    FROM goodjob_executions e
    JOIN goodjob_jobs j ON j.id = e.job_id
    WHERE j.labels @> ARRAY[%(label)s::text] AND e.finished_at IS NOT NULL
    GROUP BY date_trunc('second', e.finished_at)
) per_second;

-- name: cron_enqueue
-- Enqueues one run of a cron entry, exactly once however many processes try: the entry's row in
-- goodjob_settings ('cron:<key>') is locked and its last run moved forward in the same statement,
-- so a run at or before the last one is never enqueued again, even after its job was deleted;
-- the unique index on (cron_key, cron_at) backs it up. A disabled entry enqueues nothing (its
-- row says enabled false; without a row, %(enabled_by_default)s decides). Returns the job's id
-- when it enqueued one, and wakes its queue.
WITH state AS (
    INSERT INTO goodjob_settings AS s (key, value)
    SELECT 'cron:' || %(cron_key)s, jsonb_build_object('last_at', %(cron_at)s::timestamptz)
    -- Without a row, only an entry enabled by default runs; with one, the update decides.
    WHERE %(enabled_by_default)s
       OR EXISTS (SELECT 1 FROM goodjob_settings WHERE key = 'cron:' || %(cron_key)s)
    ON CONFLICT (key) DO UPDATE
        SET value = s.value || jsonb_build_object('last_at', %(cron_at)s::timestamptz),
            updated_at = now()
        WHERE coalesce((s.value->>'enabled')::boolean, %(enabled_by_default)s)
          AND coalesce((s.value->>'last_at')::timestamptz < %(cron_at)s, true)
    RETURNING 1
),
inserted AS (
    INSERT INTO goodjob_jobs
        (id, queue_name, priority, task_name, arguments, scheduled_at, labels, concurrency_key,
         cron_key, cron_at)
    SELECT %(id)s, %(queue_name)s, %(priority)s, %(task_name)s, %(arguments)s::jsonb,
           %(cron_at)s, %(labels)s::text[], %(concurrency_key)s, %(cron_key)s, %(cron_at)s
    FROM state
    ON CONFLICT (cron_key, cron_at) WHERE cron_key IS NOT NULL DO NOTHING
    RETURNING id, queue_name
)
SELECT id, pg_notify(%(channel)s, json_build_object('queue', queue_name)::text) AS notified
FROM inserted;

-- name: cron_enqueue_now
-- Enqueues a run of a cron entry by hand, now (cron_at stays NULL: not one of its scheduled runs).
WITH inserted AS (
    INSERT INTO goodjob_jobs
        (id, queue_name, priority, task_name, arguments, scheduled_at, labels, concurrency_key,
         cron_key)
    VALUES (%(id)s, %(queue_name)s, %(priority)s, %(task_name)s, %(arguments)s::jsonb, now(),
            %(labels)s::text[], %(concurrency_key)s, %(cron_key)s)
    RETURNING id, queue_name
)
SELECT id, pg_notify(%(channel)s, json_build_object('queue', queue_name)::text) AS notified
FROM inserted;

-- name: cron_states
-- What the database says of every cron entry that has a row: enabled (null: its default) and
-- its last scheduled run.
SELECT substr(key, 6) AS cron_key, (value->>'enabled')::boolean AS enabled,
       (value->>'last_at')::timestamptz AS last_at
FROM goodjob_settings
WHERE key LIKE 'cron:%';

-- name: cron_set_enabled
-- Enables or disables a cron entry for every process (they read it at each run).
INSERT INTO goodjob_settings AS s (key, value)
VALUES ('cron:' || %(cron_key)s, jsonb_build_object('enabled', %(enabled)s::boolean))
ON CONFLICT (key) DO UPDATE
    SET value = s.value || jsonb_build_object('enabled', %(enabled)s::boolean), updated_at = now();

-- name: pause_add
-- Pauses a queue, a task or a label: no claim takes their jobs until unpaused.
INSERT INTO goodjob_settings (key, value) VALUES (%(key)s, '{}'::jsonb)
ON CONFLICT (key) DO NOTHING;

-- name: pause_remove
-- Unpauses a queue, task or label, and wakes every worker (their jobs may be due).
WITH removed AS (
    DELETE FROM goodjob_settings WHERE key = %(key)s RETURNING key
)
SELECT key, pg_notify(%(channel)s, '{}') AS notified FROM removed;

-- name: claims_special
-- Which form a claim takes: whether anything is paused, whether a job with a concurrency key
-- waits (records/claims.py; the same tests as the plain form's gates).
SELECT EXISTS (SELECT 1 FROM goodjob_settings WHERE key LIKE 'pause:%%') AS paused,
       EXISTS (SELECT 1 FROM goodjob_jobs
               WHERE concurrency_key IS NOT NULL AND finished_at IS NULL
                 AND locked_by_id IS NULL) AS gated;

-- name: pauses_list
-- Every pause, as (kind, name).
SELECT split_part(key, ':', 2) AS kind, substr(key, length(split_part(key, ':', 2)) + 8) AS name
FROM goodjob_settings
WHERE key LIKE 'pause:%'
ORDER BY key;

-- name: batch_insert
-- A new batch, enqueued: its jobs go in with it, in the same transaction (records/batches.py).
INSERT INTO goodjob_batches
    (id, description, properties, on_finish, on_success, on_discard, callback_queue_name,
     callback_priority, enqueued_at)
VALUES (%(id)s, %(description)s, %(properties)s::jsonb, %(on_finish)s, %(on_success)s,
        %(on_discard)s, %(callback_queue_name)s, %(callback_priority)s, now());

-- name: batches_lock
-- Locks batches' rows, in id order (every writer of a batch's state locks in this order, so
-- two never wait on each other), before their jobs change: batches_settle, a statement after
-- this one, then sees every change to those jobs that committed. Returns the ids locked.
SELECT id FROM goodjob_batches WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR NO KEY UPDATE;

-- name: batches_lock_of_job
-- batches_lock for an operation on one job: the batch it belongs to, or whose callback it runs.
SELECT b.id
FROM goodjob_batches b
WHERE b.id = (SELECT coalesce(j.batch_id, j.batch_callback_id) FROM goodjob_jobs j
              WHERE j.id = %(id)s)
FOR NO KEY UPDATE OF b;

-- name: batches_settle
-- After their jobs changed, in the transaction that changed them and locked their rows first
-- (batches_lock): brings the batches' state up to date and enqueues the callbacks of what just
-- happened, each exactly once, since every such decision is taken under the batch's lock from
-- the committed truth. The first discarded job fires on_discard; the last job to finish fires
-- on_finish, and on_success when none was discarded. A batch whose jobs are all finished is
-- itself finished once its callbacks have run. Jobs added or retried reopen it (and a retry
-- that leaves no discarded job clears discarded_at), so its callbacks fire again when they
-- finish. Callback jobs take ids minted by the caller (%(callback_ids)s, UUIDv7 like every
-- job's) and the batch's callback queue and priority; the arguments are the batch's id and the
-- event, which the worker turns into (Batch, event).
WITH b AS MATERIALIZED (
    SELECT b.id, b.on_finish, b.on_success, b.on_discard, b.callback_queue_name,
           b.callback_priority, b.discarded_at, b.jobs_finished_at,
           EXISTS (SELECT 1 FROM goodjob_jobs j
                   WHERE j.batch_id = b.id AND j.finished_at IS NULL) AS open,
           EXISTS (SELECT 1 FROM goodjob_jobs j
                   WHERE j.batch_id = b.id AND j.finished_at IS NOT NULL
                     AND j.error IS NOT NULL) AS discarded,
           EXISTS (SELECT 1 FROM goodjob_jobs j
                   WHERE j.batch_callback_id = b.id AND j.finished_at IS NULL) AS calling
    FROM goodjob_batches b
    WHERE b.id = ANY(%(ids)s::uuid[]) AND b.enqueued_at IS NOT NULL
),
events AS MATERIALIZED (
    SELECT e.*, row_number() OVER (ORDER BY e.id, e.event) AS n
    FROM (
        SELECT b.id, 'discard' AS event, b.on_discard AS task FROM b
        WHERE b.discarded AND b.discarded_at IS NULL AND b.on_discard IS NOT NULL
        UNION ALL
        SELECT b.id, 'finish', b.on_finish FROM b
        WHERE NOT b.open AND b.jobs_finished_at IS NULL AND b.on_finish IS NOT NULL
        UNION ALL
        SELECT b.id, 'success', b.on_success FROM b
        WHERE NOT b.open AND NOT b.discarded AND b.jobs_finished_at IS NULL
          AND b.on_success IS NOT NULL
    ) AS e
),
inserted AS (
    INSERT INTO goodjob_jobs
        (id, queue_name, priority, task_name, arguments, scheduled_at, batch_callback_id)
    SELECT (%(callback_ids)s::uuid[])[e.n], coalesce(b.callback_queue_name, 'default'),
           coalesce(b.callback_priority, 0), e.task,
           jsonb_build_object('args', jsonb_build_array(e.id::text, e.event),
                              'kwargs', '{}'::jsonb),
           now(), e.id
    FROM events e JOIN b ON b.id = e.id
    RETURNING queue_name
),
updated AS (
    UPDATE goodjob_batches x
    SET discarded_at = CASE WHEN b.discarded THEN coalesce(x.discarded_at, now())
                            WHEN b.open THEN NULL
                            ELSE x.discarded_at END,
        jobs_finished_at = CASE WHEN NOT b.open THEN coalesce(x.jobs_finished_at, now()) END,
        finished_at = CASE WHEN NOT (b.open OR b.calling
                                     OR EXISTS (SELECT 1 FROM events e WHERE e.id = b.id))
                           THEN coalesce(x.finished_at, now()) END,
        updated_at = now()
    FROM b
    WHERE x.id = b.id
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', q.queue_name)::text)
    FROM (SELECT DISTINCT queue_name FROM inserted) AS q
)
SELECT e.id, e.event, e.task, (SELECT count(*) FROM woken) AS notified
FROM events e;

-- name: batch_get
-- One batch, with the number of its jobs in each status.
SELECT b.*,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
        FROM (SELECT {status} AS status, count(*) AS n
              FROM goodjob_jobs j WHERE j.batch_id = b.id GROUP BY 1) AS s) AS counts
FROM goodjob_batches b
WHERE b.id = %(id)s;

-- name: batches_list
-- Batches, newest first, with the number of their jobs in each status.
SELECT b.*,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
        FROM (SELECT {status} AS status, count(*) AS n
              FROM goodjob_jobs j WHERE j.batch_id = b.id GROUP BY 1) AS s) AS counts
FROM goodjob_batches b
ORDER BY b.created_at DESC, b.id DESC
LIMIT %(limit)s;

-- name: batch_jobs
-- The jobs of one batch, oldest first.
SELECT j.*, {status} AS status
FROM goodjob_jobs j
WHERE j.batch_id = %(id)s
ORDER BY j.id
LIMIT %(limit)s;

-- name: batch_retry
-- Re-queues the discarded jobs of a batch, after batches_lock, before batches_settle (which
-- reopens the batch). Keyed jobs get their key's row back, as in job_retry.
WITH doomed AS (
    SELECT j.id, j.concurrency_key
    FROM goodjob_jobs j
    WHERE j.batch_id = %(id)s AND j.finished_at IS NOT NULL AND j.error IS NOT NULL
),
key_rows AS (
    INSERT INTO goodjob_concurrency AS c (key)
    SELECT DISTINCT d.concurrency_key FROM doomed d WHERE d.concurrency_key IS NOT NULL
    ORDER BY 1
    ON CONFLICT (key) DO UPDATE SET updated_at = statement_timestamp()
),
retried AS (
    UPDATE goodjob_jobs j
    SET finished_at = NULL, scheduled_at = now(), locked_by_id = NULL, locked_at = NULL,
        cancelled_at = NULL, updated_at = now()
    FROM doomed d
    WHERE j.id = d.id
    RETURNING j.id, j.queue_name
),
woken AS (
    SELECT pg_notify(%(channel)s, json_build_object('queue', q.queue_name)::text)
    FROM (SELECT DISTINCT queue_name FROM retried) AS q
)
SELECT count(*) AS retried, (SELECT count(*) FROM woken) AS notified FROM retried;

-- name: batches_cleanup
-- Deletes up to %(chunk)s batches finished more than %(older_than)s seconds ago whose jobs and
-- callbacks are gone (jobs_cleanup deletes them first).
DELETE FROM goodjob_batches b
WHERE b.id IN (
    SELECT x.id FROM goodjob_batches x
    WHERE x.finished_at < now() - make_interval(secs => %(older_than)s)
      AND NOT EXISTS (SELECT 1 FROM goodjob_jobs j WHERE j.batch_id = x.id)
      AND NOT EXISTS (SELECT 1 FROM goodjob_jobs j WHERE j.batch_callback_id = x.id)
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
)
RETURNING b.id;

-- name: testing_waiting
-- The jobs waiting to run (goodjob.testing: scheduled, queued or to be retried), of one task
-- and one queue when given, oldest first.
SELECT j.*, {status} AS status
FROM goodjob_jobs j
WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL
  AND (%(task)s::text IS NULL OR j.task_name = %(task)s::text)
  AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s::text)
ORDER BY j.created_at, j.id;

-- name: testing_drain_next
-- The next job goodjob.testing.drain() runs: due by %(until)s (the database clock's now when
-- null), on the queues of the selection (%(mode)s as in goodjob.queues), not one of %(done)s,
-- among %(only)s when given; in claim order. Says whether it is due now or only by %(until)s.
SELECT j.id, j.scheduled_at, j.scheduled_at > now() AS ahead
FROM goodjob_jobs j
WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL
  AND j.scheduled_at <= coalesce(%(until)s::timestamptz, now())
  AND CASE %(mode)s::text
          WHEN 'all' THEN true
          WHEN 'exclude' THEN j.queue_name <> ALL(%(queues)s::text[])
          ELSE j.queue_name = ANY(%(queues)s::text[])
      END
  AND j.id <> ALL(%(done)s::uuid[])
  AND (%(only)s::uuid[] IS NULL OR j.id = ANY(%(only)s::uuid[]))
ORDER BY CASE WHEN %(mode)s::text = 'ordered'
              THEN array_position(%(queues)s::text[], j.queue_name) END,
         j.priority, j.scheduled_at, j.id
LIMIT %(limit)s;

-- name: testing_make_due
-- Makes a job scheduled ahead due now, for drain() to claim it (time travel without touching the
-- claim); returns the time it was moved to, so testing_restore_schedule can move it back.
UPDATE goodjob_jobs
SET scheduled_at = now()
WHERE id = %(id)s AND finished_at IS NULL AND locked_by_id IS NULL
RETURNING scheduled_at;

-- name: testing_restore_schedule
-- Puts back the scheduled time testing_make_due moved, unless the attempt set another (a retry).
UPDATE goodjob_jobs
SET scheduled_at = %(scheduled_at)s
WHERE id = %(id)s AND scheduled_at = %(moved_to)s;

-- name: metrics_jobs
-- Unfinished jobs per queue by state, and the wait of each queue's oldest due job, for
-- Prometheus (goodjob.metrics, cached between scrapes). At most %(cap)s jobs of each kind
-- (running, waiting without a key, waiting with one) are read, each kind through its partial
-- index, so neither a huge backlog nor a long finished history makes a scrape slow (a plain
-- `finished_at IS NULL` has no index of its own: it read the history); past the cap the counts
-- are lower bounds.
SELECT queue_name,
       count(*) FILTER (WHERE locked_by_id IS NOT NULL) AS running,
       count(*) FILTER (WHERE locked_by_id IS NULL AND scheduled_at <= now()) AS queued,
       count(*) FILTER (WHERE locked_by_id IS NULL AND scheduled_at > now()) AS scheduled,
       COALESCE(EXTRACT(epoch FROM now() - min(scheduled_at)
           FILTER (WHERE locked_by_id IS NULL AND scheduled_at <= now())), 0)::float8 AS latency
FROM (
    (SELECT queue_name, locked_by_id, scheduled_at
     FROM goodjob_jobs
     WHERE locked_by_id IS NOT NULL AND finished_at IS NULL
     LIMIT %(cap)s)
    UNION ALL
    (SELECT queue_name, locked_by_id, scheduled_at
     FROM goodjob_jobs
     WHERE finished_at IS NULL AND locked_by_id IS NULL AND concurrency_key IS NULL
     LIMIT %(cap)s)
    UNION ALL
    (SELECT queue_name, locked_by_id, scheduled_at
     FROM goodjob_jobs
     WHERE concurrency_key IS NOT NULL AND finished_at IS NULL AND locked_by_id IS NULL
     LIMIT %(cap)s)
) AS unfinished
GROUP BY queue_name;

-- name: metrics_processes
-- Live worker processes, how many listen, and their busy and idle threads (from the state each
-- writes with its heartbeat), for Prometheus.
SELECT count(*) AS processes,
       count(*) FILTER (WHERE (state->>'listening')::boolean) AS listening,
       COALESCE(sum(threads.busy), 0)::bigint AS busy_threads,
       COALESCE(sum(threads.idle), 0)::bigint AS idle_threads
FROM goodjob_processes
CROSS JOIN LATERAL (
    SELECT sum((s->>'busy_threads')::int) AS busy, sum((s->>'available_threads')::int) AS idle
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(state->'schedulers') = 'array' THEN state->'schedulers'
             ELSE '[]'::jsonb END
    ) AS s
) AS threads;

-- The dashboard (issue 17). Every statement here reads a bounded number of rows through an
-- index, whatever the size of the history: lists are keyset pages, counts stop at a cap (past
-- it the dashboard shows the planner's estimate), aggregates read at most a capped number of
-- the newest rows of their window. records/dashboard.py fills in {source}, {order} and {after}.

-- name: dashboard_jobs_page
-- A page of the jobs list: the rows of {source} (one state's rows through its index, in its
-- order, after the cursor, at most %(scan)s of them) that pass the filters.
SELECT j.*, {status} AS status
FROM ({source}) AS j
WHERE (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
  AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
  AND (%(label)s::text IS NULL OR j.labels @> ARRAY[%(label)s::text])
  AND (%(text)s::text IS NULL OR j.error ILIKE %(text)s OR j.arguments::text ILIKE %(text)s)
ORDER BY {order}
LIMIT %(limit)s;

-- name: dashboard_jobs_scan_end
-- Where a filtered page's scan stopped: the last of the %(scan)s rows {source} read (none when
-- it read fewer: the list is complete), so the next page goes on from there.
SELECT j.* FROM ({source}) AS j ORDER BY {order} OFFSET %(scan)s - 1 LIMIT 1;

-- name: dashboard_source_all
-- Every job, in id order (UUIDv7: creation order), through the primary key.
SELECT j.* FROM goodjob_jobs j WHERE {after} ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_succeeded
-- Succeeded jobs, by the time they ended (goodjob_jobs_finished: nearly all its rows are
-- succeeded, so a page reads hardly more than its rows, however long the backlog ahead of it).
SELECT j.* FROM goodjob_jobs j WHERE {is:succeeded} AND {after} ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_discarded
-- Discarded jobs, by the time they ended (goodjob_jobs_discarded).
SELECT j.* FROM goodjob_jobs j WHERE {is:discarded} AND {after} ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_running
-- Running jobs, in id order (goodjob_jobs_locked_by: as many as busy threads).
SELECT j.* FROM goodjob_jobs j WHERE {is:running} AND {after} ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_scheduled
-- Scheduled jobs, soonest first (goodjob_jobs_scheduled: a job due in the future was
-- scheduled after its creation, so the index's predicate holds for all of them).
SELECT j.* FROM goodjob_jobs j
WHERE {is:scheduled} AND j.scheduled_at > j.created_at AND {after}
ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_retried
-- Jobs waiting for their next attempt, soonest first (goodjob_jobs_scheduled: a retry is
-- scheduled after the job's creation).
SELECT j.* FROM goodjob_jobs j
WHERE {is:retried} AND j.scheduled_at > j.created_at AND {after}
ORDER BY {order} LIMIT %(scan)s

-- name: dashboard_source_queued
-- Due jobs in claim order: those without a concurrency key through goodjob_jobs_dequeue_any,
-- those with one through goodjob_jobs_keyed_due (locked_at is null exactly when locked_by_id
-- is: goodjob_jobs_locked_together), merged.
(SELECT j.* FROM goodjob_jobs j
 WHERE j.concurrency_key IS NULL AND {is:queued} AND {after}
 ORDER BY {order} LIMIT %(scan)s)
UNION ALL
(SELECT j.* FROM goodjob_jobs j
 WHERE j.concurrency_key IS NOT NULL AND j.locked_at IS NULL AND {is:queued} AND {after}
 ORDER BY {order} LIMIT %(scan)s)

-- name: dashboard_state_counts
-- Jobs in each state but succeeded, each counted through its partial index, never a scan of
-- the history: running and discarded jobs (index only) up to %(cap)s, waiting ones (whose
-- state needs the row itself) up to %(waiting_cap)s; past a cap the dashboard shows an
-- estimate. And the first %(cap)s rows of the table, with the succeeded among them: all of
-- them in a small table.
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j LIMIT %(cap)s) c) AS sampled,
    (SELECT count(*) FILTER (WHERE {is:succeeded})
     FROM (SELECT j.finished_at, j.error FROM goodjob_jobs j LIMIT %(cap)s) j) AS succeeded,
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE j.concurrency_key IS NULL AND {is:queued}
                           LIMIT %(waiting_cap)s) c)
  + (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE j.concurrency_key IS NOT NULL AND j.locked_at IS NULL
                             AND {is:queued} LIMIT %(waiting_cap)s) c) AS queued,
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE {is:scheduled} AND j.scheduled_at > j.created_at
                           LIMIT %(waiting_cap)s) c) AS scheduled,
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE {is:retried} AND j.scheduled_at > j.created_at
                           LIMIT %(waiting_cap)s) c) AS retried,
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE {is:running} LIMIT %(cap)s) c) AS running,
    (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                           WHERE {is:discarded} LIMIT %(cap)s) c) AS discarded;

-- name: dashboard_estimate_all
-- The planner's estimate of the number of jobs (from the statistics: nothing is read).
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j;

-- name: dashboard_estimate_succeeded
-- The planner's estimate of succeeded jobs.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:succeeded};

-- name: dashboard_estimate_discarded
-- The planner's estimate of discarded jobs.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:discarded};

-- name: dashboard_estimate_running
-- The planner's estimate of running jobs.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:running};

-- name: dashboard_estimate_retried
-- The planner's estimate of jobs waiting for a retry.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:retried};

-- name: dashboard_estimate_scheduled
-- The planner's estimate of scheduled jobs.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:scheduled};

-- name: dashboard_estimate_queued
-- The planner's estimate of queued jobs.
EXPLAIN (FORMAT JSON) SELECT 1 FROM goodjob_jobs j WHERE {is:queued};

-- name: dashboard_chart_finished
-- Jobs finished per minute over the last hour (goodjob_jobs_finished, index only), at most
-- %(cap)s of the newest; with the oldest time read, to tell a capped chart.
SELECT date_trunc('minute', f.finished_at) AS minute, count(*) AS n, min(f.finished_at) AS oldest
FROM (SELECT j.finished_at FROM goodjob_jobs j
      WHERE j.finished_at IS NOT NULL AND j.finished_at > now() - interval '1 hour'
      ORDER BY j.finished_at DESC LIMIT %(cap)s) AS f
GROUP BY 1 ORDER BY 1;

-- name: dashboard_chart_discarded
-- Jobs discarded per minute over the last hour (goodjob_jobs_discarded, index only).
SELECT date_trunc('minute', d.finished_at) AS minute, count(*) AS n, min(d.finished_at) AS oldest
FROM (SELECT j.finished_at FROM goodjob_jobs j
      WHERE {is:discarded} AND j.finished_at > now() - interval '1 hour'
      ORDER BY j.finished_at DESC LIMIT %(cap)s) AS d
GROUP BY 1 ORDER BY 1;

-- name: dashboard_chart_enqueued
-- Jobs enqueued per minute over the last hour, from their ids alone: a UUIDv7 starts with its
-- creation's milliseconds, so the primary key is an index on creation time (no created_at
-- index to pay for on every insert and update). The ids are put in their minute by comparing
-- them with the ids that begin each minute (width_bucket: no per-row conversion), read index
-- only; ids of other kinds fall outside the hour's range (a random UUIDv4 once in 10^8).
WITH bounds AS (
    SELECT ARRAY(
        SELECT (lpad(to_hex(floor(extract(epoch FROM
                    date_trunc('minute', now()) - m * interval '1 minute') * 1000)::bigint),
                     12, '0') || '00000000000000000000')::uuid
        FROM generate_series(59, -1, -1) AS m) AS b
)
SELECT date_trunc('minute', now()) - (60 - width_bucket(e.id, (SELECT b FROM bounds)))
           * interval '1 minute' AS minute,
       count(*) AS n,
       date_trunc('minute', now()) - (60 - min(width_bucket(e.id, (SELECT b FROM bounds))))
           * interval '1 minute' AS oldest
FROM (SELECT j.id FROM goodjob_jobs j
      WHERE j.id >= (SELECT b[1] FROM bounds) AND j.id < (SELECT b[61] FROM bounds)
      ORDER BY j.id DESC LIMIT %(cap)s) AS e
GROUP BY width_bucket(e.id, (SELECT b FROM bounds))
ORDER BY 1;

-- name: dashboard_chart_latency
-- Queue latency per minute over the last hour: how long attempts waited past their scheduled
-- time before a worker took them (goodjob_executions_performed).
-- (Intervals are aggregated, then converted: extract() per row is numeric arithmetic.)
SELECT date_trunc('minute', e.performed_at) AS minute,
       extract(epoch FROM avg(e.performed_at - e.scheduled_at))::float8 AS avg,
       extract(epoch FROM max(e.performed_at - e.scheduled_at))::float8 AS max,
       count(*) AS n, min(e.performed_at) AS oldest
FROM (SELECT x.performed_at, x.scheduled_at FROM goodjob_executions x
      WHERE x.performed_at > now() - interval '1 hour'
      ORDER BY x.performed_at DESC LIMIT %(cap)s) AS e
GROUP BY 1 ORDER BY 1;

-- name: dashboard_queues
-- Queues with waiting or running jobs (a skip scan of goodjob_jobs_dequeue_queue: one probe a
-- queue), each with its due jobs counted up to %(cap)s, its running jobs, and how long its next
-- job in claim order has been due. Due jobs with a concurrency key are counted from one read
-- of at most %(cap)s of them, whatever their queue (goodjob_jobs_keyed_due has no queue).
WITH RECURSIVE waiting AS (
    (SELECT j.queue_name FROM goodjob_jobs j
     WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.concurrency_key IS NULL
     ORDER BY j.queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue_name FROM goodjob_jobs j
            WHERE j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.concurrency_key IS NULL
              AND j.queue_name > w.queue_name
            ORDER BY j.queue_name LIMIT 1)
    FROM waiting w WHERE w.queue_name IS NOT NULL
),
keyed AS (
    SELECT k.queue_name, count(*) AS n
    FROM (SELECT j.queue_name FROM goodjob_jobs j
          WHERE j.concurrency_key IS NOT NULL AND j.locked_at IS NULL AND {is:queued}
          LIMIT %(cap)s) AS k
    GROUP BY k.queue_name
),
names AS (
    SELECT w.queue_name FROM waiting w WHERE w.queue_name IS NOT NULL
    UNION
    SELECT j.queue_name FROM goodjob_jobs j WHERE {is:running}
    UNION
    SELECT k.queue_name FROM keyed k
)
SELECT n.queue_name,
       (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                              WHERE j.queue_name = n.queue_name AND j.concurrency_key IS NULL
                                AND {is:queued} LIMIT %(cap)s) c)
     + coalesce((SELECT k.n FROM keyed k WHERE k.queue_name = n.queue_name), 0) AS queued,
       (SELECT sum(k.n) FROM keyed k) >= %(cap)s AS keyed_capped,
       (SELECT count(*) FROM goodjob_jobs j
        WHERE j.queue_name = n.queue_name AND {is:running}) AS running,
       (SELECT extract(epoch FROM now() - j.scheduled_at)::float8 FROM goodjob_jobs j
        WHERE j.queue_name = n.queue_name AND j.concurrency_key IS NULL AND {is:queued}
        ORDER BY j.priority, j.scheduled_at, j.id LIMIT 1) AS next_waited
FROM names n
ORDER BY n.queue_name
LIMIT %(limit)s;

-- name: dashboard_concurrency
-- Concurrency keys in use, most recently active first, with their limits, running jobs
-- (goodjob_jobs_keyed_running) and due jobs counted up to %(cap)s (goodjob_jobs_keyed_queued).
SELECT c.key, c.perform_limit, c.perform_throttle, c.perform_throttle_seconds,
       c.enqueue_throttle, c.enqueue_throttle_seconds, c.updated_at,
       (SELECT count(*) FROM goodjob_jobs j
        WHERE j.concurrency_key = c.key AND j.finished_at IS NULL
          AND j.locked_by_id IS NOT NULL) AS running,
       (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                              WHERE j.concurrency_key = c.key AND j.finished_at IS NULL
                                AND j.locked_by_id IS NULL LIMIT %(cap)s) w) AS waiting
FROM goodjob_concurrency c
ORDER BY c.updated_at DESC, c.key
LIMIT %(limit)s;

-- name: dashboard_performance
-- Per task over a window: attempts, failures and duration percentiles, from at most %(cap)s of
-- the window's newest attempts (goodjob_executions_performed); the row with a null task_name
-- is the total, whose oldest tells a capped window.
SELECT e.task_name, count(*) AS attempts,
       count(*) FILTER (WHERE e.error IS NOT NULL) AS failed,
       extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration))::float8 AS p50,
       extract(epoch FROM percentile_cont(0.95) WITHIN GROUP (ORDER BY e.duration))::float8 AS p95,
       extract(epoch FROM max(e.duration))::float8 AS max,
       min(e.performed_at) AS oldest, count(*) FILTER (WHERE e.finished_at IS NULL) AS unfinished
FROM (SELECT x.task_name, x.performed_at, x.finished_at, x.duration, x.error
      FROM goodjob_executions x
      WHERE x.performed_at >= now() - make_interval(secs => %(seconds)s)
      ORDER BY x.performed_at DESC LIMIT %(cap)s) AS e
GROUP BY GROUPING SETS ((e.task_name), ())
ORDER BY e.task_name NULLS FIRST;

-- name: dashboard_errors
-- Discarded jobs grouped by error class (the text before the first ": "), from at most %(cap)s
-- of the newest (goodjob_jobs_discarded), with an example of each.
SELECT left(split_part(d.error, ': ', 1), 200) AS error_class, count(*) AS jobs,
       max(d.finished_at) AS last_at, min(d.finished_at) AS first_at,
       (array_agg(d.id ORDER BY d.finished_at DESC))[1] AS example_id,
       left((array_agg(d.error ORDER BY d.finished_at DESC))[1], 500) AS example_error,
       array_agg(DISTINCT d.task_name) AS tasks
FROM (SELECT j.id, j.error, j.finished_at, j.task_name FROM goodjob_jobs j
      WHERE {is:discarded} ORDER BY j.finished_at DESC LIMIT %(cap)s) AS d
GROUP BY 1
ORDER BY jobs DESC, error_class;

-- name: dashboard_errors_ids
-- The ids of the newest discarded jobs of one error class, at most %(limit)s.
SELECT d.id FROM (SELECT j.id, j.error, j.finished_at FROM goodjob_jobs j
                  WHERE {is:discarded} ORDER BY j.finished_at DESC LIMIT %(cap)s) AS d
WHERE left(split_part(d.error, ': ', 1), 200) = %(error_class)s
LIMIT %(limit)s;

-- name: dashboard_batches
-- A page of batches, newest first after the cursor (goodjob_batches_created), each with its
-- jobs, unfinished jobs and discarded jobs counted up to %(cap)s (index only, through
-- goodjob_jobs_batch, _batch_unfinished and _batch_discarded): a batch's counts by state read
-- every one of its jobs, so only the batch's own page gives them.
SELECT b.*, '{}'::jsonb AS counts,
       (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                              WHERE j.batch_id = b.id LIMIT %(cap)s) c) AS jobs,
       (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                              WHERE j.batch_id = b.id AND j.finished_at IS NULL
                              LIMIT %(cap)s) c) AS unfinished,
       (SELECT count(*) FROM (SELECT 1 FROM goodjob_jobs j
                              WHERE j.batch_id = b.id AND {is:discarded}
                              LIMIT %(cap)s) c) AS discarded
FROM goodjob_batches b
WHERE %(after_at)s::timestamptz IS NULL
   OR (b.created_at, b.id) < (%(after_at)s::timestamptz, %(after_id)s::uuid)
ORDER BY b.created_at DESC, b.id DESC
LIMIT %(limit)s;
