-- PostgreSQL queries of queuectl: the same names as SQLite's, psycopg's %(name)s parameters.
-- Every time comes from the server's clock (now(): the transaction's start), never the
-- client's, so that hosts with skewed clocks agree on run_at, leases and deadlines. Names are
-- unqualified: the connection's search_path is queuectl's schema.

-- name: lock_migrations :exec
-- Serialise migrations of this schema between processes, until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('queuectl migrations ' || %(schema)s));

-- name: create_schema :exec
-- The schema that holds every queuectl object ({schema}: composed as a quoted identifier).
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: create_schema_version :exec
-- The table of applied migrations; created before anything else.
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: select_schema_versions :many
-- Versions already applied, with the server's clock (read together: one round trip).
SELECT version, clock_timestamp() AS clock FROM schema_version;

-- name: insert_schema_version :exec
-- Record one applied migration.
INSERT INTO schema_version (version, name) VALUES (%(version)s, %(name)s);

-- name: insert_jobs :exec
-- COPY new jobs in; seq follows the order of the rows. The UNIQUE id raises on a duplicate.
COPY jobs (id, command, queue, priority, state, max_retries, timeout, cwd, env, run_at, tags)
FROM STDIN;

-- name: claim_job :one
-- Lease the best runnable job of a queue not paused to one worker: SKIP LOCKED passes over rows
-- another claim holds. A request left from an earlier attempt is spent.
WITH next AS (
    SELECT seq
      FROM jobs
     WHERE state IN ('pending', 'failed')
       AND run_at <= now()
       AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))
       AND queue NOT IN (SELECT queue FROM paused_queues)
     ORDER BY priority DESC, run_at, seq
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
   SET state            = 'processing',
       attempts         = j.attempts + 1,
       run_count        = j.run_count + 1,
       worker_id        = %(worker_id)s,
       worker_host      = %(host)s,
       claimed_at       = now(),
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       control          = NULL,
       updated_at       = now()
  FROM next
 WHERE j.seq = next.seq
RETURNING j.*;

-- name: select_next_run_at :one
-- When the earliest job scheduled for later becomes runnable (NULL when none waits); a paused
-- queue's jobs wait for its resume, which wakes the workers.
SELECT min(run_at) AS run_at
  FROM jobs
 WHERE state IN ('pending', 'failed')
   AND run_at > created_at
   AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))
   AND queue NOT IN (SELECT queue FROM paused_queues);

-- name: extend_lease :rowcount
-- Push a claim's lease forward; 0 rows means the claim no longer owns the job. A lease that ran
-- out stays out: a rescuer may be killing the job's processes already.
UPDATE jobs
   SET lease_expires_at = now() + make_interval(secs => %(lease)s)
 WHERE seq = %(seq)s
   AND state = 'processing'
   AND worker_id = %(worker_id)s
   AND run_count = %(run_count)s
   AND lease_expires_at >= now();

-- name: touch_worker :one
-- Mark a worker alive for :ttl seconds more and return its pending stop request; no row means
-- it was pruned (it was frozen or cut off past its deadline).
UPDATE workers
   SET heartbeat_at = now(),
       expires_at   = now() + make_interval(secs => %(ttl)s)
 WHERE id = %(worker_id)s
RETURNING stop;

-- name: select_worker_stop :one
-- A worker's pending stop request, without writing.
SELECT stop FROM workers WHERE id = %(worker_id)s;

-- name: select_requests :one
-- A busy worker's stop request and its job's control request, in one look, without writing.
SELECT (SELECT stop FROM workers WHERE id = %(worker_id)s) AS stop,
       (SELECT control
          FROM jobs
         WHERE seq = %(seq)s
           AND state = 'processing'
           AND worker_id = %(worker_id)s
           AND run_count = %(run_count)s) AS control;

-- name: clear_control :exec
-- A request the worker has acted on (a signal sent) is spent, unless another replaced it.
UPDATE jobs
   SET control = NULL
 WHERE seq = %(seq)s
   AND worker_id = %(worker_id)s
   AND run_count = %(run_count)s
   AND control = %(control)s;

-- name: insert_attempt :rowcount
-- Record a claim's attempt, only while the claim still owns the job (0 rows = lease lost): a
-- finish only while its lease runs, a rescue only once it has run out. The job's row is locked
-- first, so a finish and a rescue racing each other are taken one after the other, and the
-- second sees the first's change (READ COMMITTED re-reads a row it waited for).
WITH owned AS (
    SELECT seq, run_count, worker_id, worker_host, queue
      FROM jobs
     WHERE seq = %(seq)s
       AND state = 'processing'
       AND worker_id = %(worker_id)s
       AND run_count = %(run_count)s
       AND CASE WHEN %(rescue)s THEN lease_expires_at < now() ELSE lease_expires_at >= now() END
       FOR UPDATE
), counted AS (
    -- The attempt counted in its queue's activity of this minute (migration 4), when it counts.
    INSERT INTO activity (minute, queue, bucket, completed, failed)
    SELECT to_timestamp(floor(extract(epoch FROM now()) / 60) * 60), queue,
           %(bucket)s, %(completed)s, %(failed)s
      FROM owned
     WHERE %(counted)s
)
INSERT INTO attempts (
    job_seq, number, worker_id, host, pid, started_at, ended_at,
    exit_code, signal, outcome, error, stdout, stderr
)
SELECT seq, run_count, worker_id, worker_host, %(pid)s, %(started_at)s, %(ended_at)s,
       %(exit_code)s, %(signal)s, %(outcome)s, %(error)s, %(stdout)s, %(stderr)s
  FROM owned;

-- name: finish_job :rowcount
-- Apply the decided transition, only while the claim still owns the job. A cancel that came
-- while the attempt ended wins over a retry: the job is cancelled, not run again.
UPDATE jobs
   SET state            = CASE WHEN control = 'cancel' AND %(state)s IN ('pending', 'failed')
                               THEN 'cancelled' ELSE %(state)s END,
       attempts         = %(attempts)s,
       run_at           = COALESCE(%(run_at)s, run_at),
       last_error       = %(last_error)s,
       worker_id        = NULL,
       worker_host      = NULL,
       claimed_at       = NULL,
       lease_expires_at = NULL,
       control          = NULL,
       updated_at       = now()
 WHERE seq = %(seq)s
   AND state = 'processing'
   AND worker_id = %(worker_id)s
   AND run_count = %(run_count)s;

-- name: delete_live_output :exec
-- The attempt is recorded with its output: what it showed while running is spent.
DELETE FROM live_output WHERE job_seq = %(seq)s;

-- name: upsert_live_output :rowcount
-- Save a running attempt's output so far, only while its claim owns the job.
INSERT INTO live_output (job_seq, number, pid, stdout, stderr, stdout_total, stderr_total)
SELECT seq, run_count, %(pid)s, %(stdout)s, %(stderr)s, %(stdout_total)s, %(stderr_total)s
  FROM jobs
 WHERE seq = %(seq)s
   AND state = 'processing'
   AND worker_id = %(worker_id)s
   AND run_count = %(run_count)s
    ON CONFLICT (job_seq) DO UPDATE SET number       = excluded.number,
                                        pid          = excluded.pid,
                                        stdout       = excluded.stdout,
                                        stderr       = excluded.stderr,
                                        stdout_total = excluded.stdout_total,
                                        stderr_total = excluded.stderr_total,
                                        updated_at   = now();

-- name: select_live_output :one
-- A running job's output so far (its attempt number tells which attempt).
SELECT o.*
  FROM live_output AS o
  JOIN jobs AS j ON j.seq = o.job_seq
 WHERE j.id = %(job_id)s
   AND j.state = 'processing'
   AND o.number = j.run_count;

-- name: select_expired_claims :many
-- Claims whose lease ran out: their worker is presumed dead.
SELECT *
  FROM jobs
 WHERE state = 'processing'
   AND lease_expires_at < now()
 ORDER BY lease_expires_at
 LIMIT %(limit)s;

-- name: expire_worker_leases :exec
-- A worker is known dead: make its claims rescuable at once instead of at lease expiry.
UPDATE jobs
   SET lease_expires_at = now() - interval '1 microsecond'
 WHERE state = 'processing'
   AND worker_id = %(worker_id)s;

-- name: select_job :one
-- One job by id.
SELECT * FROM jobs WHERE id = %(job_id)s;

-- name: mark_waited :exec
-- Someone waits for this job's end: migration 5's trigger will notify it.
UPDATE jobs SET waited = true WHERE id = %(job_id)s AND NOT waited;

-- name: select_job_states :many
-- The states of the jobs named (the id index, once an id).
SELECT id, state FROM jobs WHERE id = ANY(%(ids)s);

-- name: select_existing_ids :many
-- Which of these ids are taken (to name a batch's duplicate after its COPY failed).
SELECT id FROM jobs WHERE id = ANY (%(ids)s::text[]);

-- name: list_jobs :many
-- Jobs newest first, optionally of one state and one queue: a walk back from the newest job.
SELECT *
  FROM jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
 ORDER BY seq DESC
 LIMIT %(limit)s;

-- name: list_problem_jobs :many
-- Failed or dead jobs (:state), newest first: few among many, so from their own index.
SELECT *
  FROM jobs
 WHERE state IN ('failed', 'dead')
   AND state = %(state)s
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
 ORDER BY seq DESC
 LIMIT %(limit)s;

-- name: list_processing_jobs :many
-- Jobs being run, newest first: from the lease index (one entry a busy worker).
SELECT *
  FROM jobs
 WHERE state = 'processing'
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
 ORDER BY seq DESC
 LIMIT %(limit)s;

-- name: select_attempts :many
-- A job's attempts, oldest first.
SELECT j.id AS job_id, a.*
  FROM attempts AS a
  JOIN jobs AS j ON j.seq = a.job_seq
 WHERE j.id = %(job_id)s
 ORDER BY a.number;

-- name: count_jobs :many
-- Job counts per queue and state: the sum of their log (migration 3), a few rows however many
-- jobs (workers fold it every second), and how many rows each took, so that the caller can fold
-- a long one. Pairs summing to 0 (a queue emptied) are left out by the caller, not here: their
-- rows count as work to fold too.
SELECT queue, state, sum(delta)::bigint AS n, count(*) AS deltas
  FROM count_deltas
 GROUP BY queue, state;

-- name: compact_counts :exec
-- Fold the count log into one row per queue and state (none for a pair that sums to 0), in one
-- statement: the rows it deletes are the rows it sums, and what it inserts it cannot see. Only
-- pairs with more than one row are touched, so a folded log is not rewritten every time. Rows
-- another compaction is folding are skipped, not waited for: two at once never block or
-- deadlock each other, and each moves only the rows it holds.
WITH gone AS (
    DELETE FROM count_deltas
     WHERE id IN (SELECT id
                    FROM count_deltas
                   WHERE (queue, state) IN (SELECT queue, state
                                              FROM count_deltas
                                             GROUP BY queue, state
                                            HAVING count(*) > 1)
                     FOR UPDATE SKIP LOCKED)
    RETURNING queue, state, delta
)
INSERT INTO count_deltas (queue, state, delta)
SELECT queue, state, sum(delta)
  FROM gone
 GROUP BY queue, state
HAVING sum(delta) <> 0;

-- name: select_activity_minutes :many
-- Attempts per queue and minute from %(since)s (migration 4): a range of the minute index.
SELECT minute, queue, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed
  FROM activity
 WHERE minute >= %(since)s
 GROUP BY minute, queue;

-- name: select_activity_durations :many
-- Attempts per queue and duration bucket from %(since)s, those without a duration left out.
SELECT queue, bucket, sum(completed + failed)::bigint AS n
  FROM activity
 WHERE minute >= %(since)s
   AND bucket >= 0
 GROUP BY queue, bucket;

-- name: compact_activity :exec
-- Fold the activity log of the last ten minutes into one row per key, as compact_counts folds
-- the count log (rows another fold holds are skipped). Older minutes are left as they are: only
-- a transaction that ran for minutes counts an attempt that late, and retention drops them.
WITH gone AS (
    DELETE FROM activity
     WHERE minute >= now() - interval '10 minutes'
       AND id IN (SELECT id
                    FROM activity
                   WHERE minute >= now() - interval '10 minutes'
                     AND (minute, queue, bucket) IN (SELECT minute, queue, bucket
                                                       FROM activity
                                                      WHERE minute >= now() - interval '10 minutes'
                                                      GROUP BY minute, queue, bucket
                                                     HAVING count(*) > 1)
                     FOR UPDATE SKIP LOCKED)
    RETURNING minute, queue, bucket, completed, failed
)
INSERT INTO activity (minute, queue, bucket, completed, failed)
SELECT minute, queue, bucket, sum(completed), sum(failed)
  FROM gone
 GROUP BY minute, queue, bucket;

-- name: prune_activity :rowcount
-- Retention: forget the activity of minutes before %(before)s.
DELETE FROM activity WHERE minute < %(before)s;

-- name: select_named_ids :many
-- Which of these ids name jobs in one of :states.
SELECT id
  FROM jobs
 WHERE id = ANY (%(ids)s::text[])
   AND state = ANY (%(states)s::text[]);

-- name: select_matching_ids :many
-- The ids of jobs in one of :states, of :queue and last changed before :before when given.
SELECT id
  FROM jobs
 WHERE state = ANY (%(states)s::text[])
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(before)s::timestamptz IS NULL OR updated_at < %(before)s::timestamptz)
 ORDER BY seq;

-- name: retry_jobs :many
-- Finished jobs back to pending with their retry budget restored; history stays.
UPDATE jobs
   SET state      = 'pending',
       attempts   = 0,
       run_at     = now(),
       control    = NULL,
       updated_at = now()
 WHERE id = ANY (%(ids)s::text[])
   AND state = ANY (%(states)s::text[])
RETURNING id;

-- name: cancel_jobs :many
-- Cancel waiting jobs at once; ask the workers of running ones to stop them (the finish then
-- records the cancel). Returns each job's id and its state now. A row a claim holds locked is
-- waited for, then seen as it is after that claim.
UPDATE jobs
   SET state      = CASE WHEN state = 'processing' THEN state ELSE 'cancelled' END,
       control    = CASE WHEN state = 'processing' THEN 'cancel' ELSE NULL END,
       updated_at = now()
 WHERE id = ANY (%(ids)s::text[])
   AND state IN ('pending', 'failed', 'processing')
RETURNING id, state;

-- name: signal_job :rowcount
-- Ask a running job's worker to send it a signal; a cancel under way is not replaced.
UPDATE jobs
   SET control = %(control)s
 WHERE id = %(job_id)s
   AND state = 'processing'
   AND control IS DISTINCT FROM 'cancel';

-- name: delete_jobs :many
-- Remove jobs that are not running, with their attempts (ON DELETE CASCADE).
DELETE FROM jobs
 WHERE id = ANY (%(ids)s::text[])
   AND state = ANY (%(states)s::text[])
RETURNING id;

-- name: pause_queue :exec
-- Claims pass over a paused queue's jobs.
INSERT INTO paused_queues (queue) VALUES (%(queue)s)
ON CONFLICT (queue) DO NOTHING;

-- name: resume_queues :many
-- Resume these queues, or every paused one when :queues is NULL.
DELETE FROM paused_queues
 WHERE %(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[])
RETURNING queue;

-- name: select_paused_queues :many
-- The paused queues, by name.
SELECT queue, paused_at FROM paused_queues ORDER BY queue;

-- name: upsert_worker :exec
-- Register a worker, or re-register one that was pruned while it was frozen.
INSERT INTO workers (id, host, pid, queues, started_at, heartbeat_at, expires_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, now(), now(),
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                               expires_at   = excluded.expires_at;

-- name: delete_worker :exec
-- Deregister a worker.
DELETE FROM workers WHERE id = %(worker_id)s;

-- name: select_expired_worker :one
-- Whether any worker but :exclude is past its own deadline (so that pruning need not write).
SELECT id
  FROM workers
 WHERE expires_at < now()
   AND (%(exclude)s::text IS NULL OR id <> %(exclude)s::text)
 LIMIT 1;

-- name: prune_workers :rowcount
-- Forget workers past their own deadline (they died without deregistering), never the caller.
DELETE FROM workers
 WHERE expires_at < now()
   AND (%(exclude)s::text IS NULL OR id <> %(exclude)s::text);

-- name: list_workers :many
-- Every registered worker, oldest first, with the job it runs (derived, so claims write less).
SELECT w.*,
       (SELECT j.id
          FROM jobs AS j
         WHERE j.state = 'processing'
           AND j.worker_id = w.id
         LIMIT 1) AS job_id
  FROM workers AS w
 ORDER BY w.started_at, w.id;

-- name: request_stop :many
-- Ask workers to stop ('graceful' or 'now').
UPDATE workers
   SET stop = %(mode)s
 WHERE (%(ids)s::text[] IS NULL OR id = ANY (%(ids)s::text[]))
RETURNING id;

-- name: listen :exec
-- Start receiving wake-ups on this connection ({channel}: composed as a quoted identifier).
LISTEN {channel};

-- name: wake_workers :exec
-- Wake idle workers: delivered to every LISTENing worker when the transaction commits.
-- The payload says why (notify.WORK or notify.STOP), so a worker woken by new work only can
-- claim at once without first asking whether it was told to stop.
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: select_clock :one
-- The server's clock, now.
SELECT clock_timestamp() AS clock;

-- name: select_config :many
-- Every stored config value.
SELECT key, value FROM config;

-- name: upsert_config :exec
-- Store one config value.
INSERT INTO config (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: purge_finished :rowcount
-- Retention: delete completed and cancelled jobs in one seq window that finished before their
-- state's cutoff (NULL: keep them), with their attempts. A window of the primary key bounds
-- the work of one transaction, however many jobs the table holds.
DELETE FROM jobs
 WHERE seq > %(after)s
   AND seq <= %(upto)s
   AND ((state = 'completed' AND updated_at < %(completed_before)s::timestamptz)
        OR (state = 'cancelled' AND updated_at < %(cancelled_before)s::timestamptz));

-- name: select_created_after :one
-- When the first job past a seq was created (a job created after a cutoff finished after it).
SELECT created_at FROM jobs WHERE seq > %(upto)s ORDER BY seq LIMIT 1;

-- name: list_jobs_matching :many
-- Jobs newest first in any of :states and :queues (NULL: any), carrying :tag and with :search
-- in their id or command, when given: a walk back from the newest job.
SELECT *
  FROM jobs
 WHERE (%(states)s::text[] IS NULL OR state = ANY (%(states)s::text[]))
   AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))
   AND (%(tag)s::text IS NULL OR %(tag)s::text = ANY (tags))
   AND (%(search)s::text IS NULL OR strpos(id, %(search)s::text) > 0
        OR strpos(command, %(search)s::text) > 0)
 ORDER BY seq DESC
 LIMIT %(limit)s;
