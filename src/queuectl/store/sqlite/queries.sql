-- SQLite queries of queuectl. Times are integer Unix microseconds; lists are JSON arrays.

-- name: create_schema_version :exec
-- The table of applied migrations; created before anything else.
CREATE TABLE IF NOT EXISTS queuectl_schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
);

-- name: select_schema_versions :many
-- Versions already applied.
SELECT version FROM queuectl_schema_version;

-- name: insert_schema_version :exec
-- Record one applied migration.
INSERT INTO queuectl_schema_version (version, name, applied_at) VALUES (:version, :name, :now);

-- name: insert_jobs :exec
-- Insert new jobs from a JSON array of [id, command, queue, priority, max_retries, timeout,
-- cwd, env, run_at, tags] rows: one statement a batch, a third faster than one a job for 100,000
-- jobs. json_each walks the array in order, so seq follows it (an ORDER BY key would sort a
-- copy of every row). The UNIQUE id raises on a duplicate.
INSERT INTO queuectl_jobs (
    id, command, queue, priority, state, attempts, max_retries, timeout, cwd, env,
    run_at, created_at, updated_at, tags
)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), 'pending', 0, json_extract(value, '$[4]'),
       json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),
       json_extract(value, '$[8]'), :now, :now, json_extract(value, '$[9]')
  FROM json_each(:rows);

-- name: count_new_jobs :exec
-- Add a batch's new pending jobs to the kept counts, in insert_jobs' transaction: :counts is a
-- JSON object of jobs per queue, counted by the caller from the same batch (counting :rows here
-- parses its JSON again: 110-160 ms of a 100,000-job enqueue's ~750). One statement a batch,
-- where an insert trigger would run once a job. (WHERE true: SQLite's parser needs it before an
-- upsert's ON CONFLICT when the rows come from a SELECT.)
INSERT INTO queuectl_counts (queue, state, n)
SELECT key, 'pending', value
  FROM json_each(:counts)
 WHERE true
    ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n;

-- name: claim_job :one
-- Lease the best runnable job of a queue not paused to one worker. Runs inside BEGIN
-- IMMEDIATE, so it is atomic. A request left from an earlier attempt is spent.
UPDATE queuectl_jobs
   SET state            = 'processing',
       attempts         = attempts + 1,
       run_count        = run_count + 1,
       worker_id        = :worker_id,
       worker_host      = :host,
       claimed_at       = :now,
       lease_expires_at = :lease_expires_at,
       control          = NULL,
       updated_at       = :now
 WHERE seq = (
        SELECT seq
          FROM queuectl_jobs INDEXED BY queuectl_jobs_runnable  -- else a sort of every waiting job
         WHERE state IN ('pending', 'failed')
           AND run_at <= :now
           AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
           AND queue NOT IN (SELECT queue FROM queuectl_paused_queues)
         ORDER BY priority DESC, run_at, seq
         LIMIT 1)
RETURNING *;

-- name: select_next_run_at :one
-- When the earliest job scheduled for later becomes runnable (NULL when none waits); a paused
-- queue's jobs wait for its resume, which wakes the workers.
SELECT min(run_at) AS run_at
  FROM queuectl_jobs INDEXED BY queuectl_jobs_due
 WHERE state IN ('pending', 'failed')
   AND run_at > created_at
   AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
   AND queue NOT IN (SELECT queue FROM queuectl_paused_queues);

-- name: extend_lease :rowcount
-- Push a claim's lease forward; 0 rows means the claim no longer owns the job. A lease that ran
-- out stays out: a rescuer may be killing the job's processes already.
UPDATE queuectl_jobs
   SET lease_expires_at = :lease_expires_at
 WHERE seq = :seq
   AND state = 'processing'
   AND worker_id = :worker_id
   AND run_count = :run_count
   AND lease_expires_at >= :now;

-- name: touch_worker :one
-- Mark a worker alive until :expires_at and return its pending stop request; no row means it
-- was pruned (it was frozen or cut off past its deadline).
UPDATE queuectl_workers
   SET heartbeat_at = :now,
       expires_at   = :expires_at
 WHERE id = :worker_id
RETURNING stop;

-- name: select_worker_stop :one
-- A worker's pending stop request, without writing.
SELECT stop FROM queuectl_workers WHERE id = :worker_id;

-- name: select_requests :one
-- A busy worker's stop request and its job's control request, in one look, without writing.
SELECT (SELECT stop FROM queuectl_workers WHERE id = :worker_id) AS stop,
       (SELECT control
          FROM queuectl_jobs
         WHERE seq = :seq
           AND state = 'processing'
           AND worker_id = :worker_id
           AND run_count = :run_count) AS control;

-- name: clear_control :exec
-- A request the worker has acted on (a signal sent) is spent, unless another replaced it.
UPDATE queuectl_jobs
   SET control = NULL
 WHERE seq = :seq
   AND worker_id = :worker_id
   AND run_count = :run_count
   AND control = :control;

-- name: insert_attempt :rowcount
-- Record a claim's attempt, only while the claim still owns the job (0 rows = lease lost): a
-- finish (:live_at = now) only while its lease runs, a rescue (:expired_before = now) only once
-- it has run out, so the two never both happen.
INSERT INTO queuectl_attempts (
    job_seq, number, worker_id, host, pid, started_at, ended_at,
    exit_code, signal, outcome, error, stdout, stderr
)
SELECT seq, run_count, worker_id, worker_host, :pid, :started_at, :ended_at,
       :exit_code, :signal, :outcome, :error, :stdout, :stderr
  FROM queuectl_jobs
 WHERE seq = :seq
   AND state = 'processing'
   AND worker_id = :worker_id
   AND run_count = :run_count
   AND (:live_at IS NULL OR lease_expires_at >= :live_at)
   AND (:expired_before IS NULL OR lease_expires_at < :expired_before);

-- name: finish_job :rowcount
-- Apply the decided transition, only while the claim still owns the job. A cancel that came
-- while the attempt ended wins over a retry: the job is cancelled, not run again.
UPDATE queuectl_jobs
   SET state            = CASE WHEN control = 'cancel' AND :state IN ('pending', 'failed')
                               THEN 'cancelled' ELSE :state END,
       attempts         = :attempts,
       run_at           = COALESCE(:run_at, run_at),
       last_error       = :last_error,
       worker_id        = NULL,
       worker_host      = NULL,
       claimed_at       = NULL,
       lease_expires_at = NULL,
       control          = NULL,
       updated_at       = :now
 WHERE seq = :seq
   AND state = 'processing'
   AND worker_id = :worker_id
   AND run_count = :run_count;

-- name: count_attempt :exec
-- Count a recorded attempt in its queue's activity of this minute (migration 7), in the
-- transaction that recorded it (a job's queue never changes while it runs).
INSERT INTO queuectl_activity (minute, queue, bucket, completed, failed)
VALUES (:minute, :queue, :bucket, :completed, :failed)
    ON CONFLICT (minute, queue, bucket) DO UPDATE SET completed = completed + excluded.completed,
                                                      failed    = failed + excluded.failed;

-- name: delete_live_output :exec
-- The attempt is recorded with its output: what it showed while running is spent.
DELETE FROM queuectl_live_output WHERE job_seq = :seq;

-- name: upsert_live_output :rowcount
-- Save a running attempt's output so far, only while its claim owns the job.
INSERT INTO queuectl_live_output (
    job_seq, number, pid, stdout, stderr, stdout_total, stderr_total, updated_at
)
SELECT seq, run_count, :pid, :stdout, :stderr, :stdout_total, :stderr_total, :now
  FROM queuectl_jobs
 WHERE seq = :seq
   AND state = 'processing'
   AND worker_id = :worker_id
   AND run_count = :run_count
    ON CONFLICT (job_seq) DO UPDATE SET number       = excluded.number,
                                        pid          = excluded.pid,
                                        stdout       = excluded.stdout,
                                        stderr       = excluded.stderr,
                                        stdout_total = excluded.stdout_total,
                                        stderr_total = excluded.stderr_total,
                                        updated_at   = excluded.updated_at;

-- name: select_live_output :one
-- A running job's output so far (its attempt number tells which attempt).
SELECT o.*
  FROM queuectl_live_output AS o
  JOIN queuectl_jobs AS j ON j.seq = o.job_seq
 WHERE j.id = :job_id
   AND j.state = 'processing'
   AND o.number = j.run_count;

-- name: select_expired_claims :many
-- Claims whose lease ran out: their worker is presumed dead.
SELECT *
  FROM queuectl_jobs INDEXED BY queuectl_jobs_leased
 WHERE state = 'processing'
   AND lease_expires_at < :now
 ORDER BY lease_expires_at
 LIMIT :limit;

-- name: expire_worker_leases :exec
-- A worker is known dead: make its claims rescuable at once instead of at lease expiry.
UPDATE queuectl_jobs
   SET lease_expires_at = :now - 1
 WHERE state = 'processing'
   AND worker_id = :worker_id;

-- name: select_job :one
-- One job by id.
SELECT * FROM queuectl_jobs WHERE id = :job_id;

-- name: select_job_states :many
-- The states of the jobs named in a JSON array of ids (the id index, once an id).
SELECT id, state FROM queuectl_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: list_jobs :many
-- Jobs newest first, optionally of one state and one queue: a walk back from the newest job,
-- for any state but those below (pending and completed jobs are mostly the newest).
SELECT *
  FROM queuectl_jobs
 WHERE (:state IS NULL OR state = :state)
   AND (:queue IS NULL OR queue = :queue)
 ORDER BY seq DESC
 LIMIT :limit;

-- name: list_problem_jobs :many
-- Failed or dead jobs (:state), newest first: few among many, so from their own index.
SELECT *
  FROM queuectl_jobs INDEXED BY queuectl_jobs_problems
 WHERE state IN ('failed', 'dead')
   AND state = :state
   AND (:queue IS NULL OR queue = :queue)
 ORDER BY seq DESC
 LIMIT :limit;

-- name: list_processing_jobs :many
-- Jobs being run, newest first: from the lease index (one entry a busy worker).
SELECT *
  FROM queuectl_jobs INDEXED BY queuectl_jobs_leased
 WHERE state = 'processing'
   AND (:queue IS NULL OR queue = :queue)
 ORDER BY seq DESC
 LIMIT :limit;

-- name: select_attempts :many
-- A job's attempts, oldest first.
SELECT j.id AS job_id, a.*
  FROM queuectl_attempts AS a
  JOIN queuectl_jobs AS j ON j.seq = a.job_seq
 WHERE j.id = :job_id
 ORDER BY a.number;

-- name: count_jobs :many
-- Job counts per queue and state: the kept counts (migration 6), a few rows however many jobs.
SELECT queue, state, n FROM queuectl_counts WHERE n > 0;

-- name: select_activity_minutes :many
-- Attempts per queue and minute from :since (migration 7): one range of the primary key, summed
-- as it is read, in its order.
SELECT minute, queue, sum(completed) AS completed, sum(failed) AS failed
  FROM queuectl_activity
 WHERE minute >= :since
 GROUP BY minute, queue;

-- name: select_activity_durations :many
-- Attempts per queue and duration bucket from :since, those without a duration left out: the
-- same range, summed in a small temporary tree (a row per queue and bucket).
SELECT queue, bucket, sum(completed + failed) AS n
  FROM queuectl_activity
 WHERE minute >= :since
   AND bucket >= 0
 GROUP BY queue, bucket;

-- name: prune_activity :rowcount
-- Retention: forget the activity of minutes before :before.
DELETE FROM queuectl_activity WHERE minute < :before;

-- name: select_named_ids :many
-- Which of these ids (a JSON array) name jobs in one of :states (a JSON array).
SELECT id
  FROM queuectl_jobs
 WHERE id IN (SELECT value FROM json_each(:ids))
   AND state IN (SELECT value FROM json_each(:states));

-- name: select_matching_ids :many
-- The ids of jobs in one of :states, of :queue and last changed before :before when given.
SELECT id
  FROM queuectl_jobs
 WHERE state IN (SELECT value FROM json_each(:states))
   AND (:queue IS NULL OR queue = :queue)
   AND (:before IS NULL OR updated_at < :before)
 ORDER BY seq;

-- name: retry_jobs :many
-- Finished jobs back to pending with their retry budget restored; history stays.
UPDATE queuectl_jobs
   SET state      = 'pending',
       attempts   = 0,
       run_at     = :now,
       control    = NULL,
       updated_at = :now
 WHERE id IN (SELECT value FROM json_each(:ids))
   AND state IN (SELECT value FROM json_each(:states))
RETURNING id;

-- name: cancel_jobs :many
-- Cancel waiting jobs at once; ask the workers of running ones to stop them (the finish then
-- records the cancel). Returns each job's id and its state now.
UPDATE queuectl_jobs
   SET state      = CASE WHEN state = 'processing' THEN state ELSE 'cancelled' END,
       control    = CASE WHEN state = 'processing' THEN 'cancel' ELSE NULL END,
       updated_at = :now
 WHERE id IN (SELECT value FROM json_each(:ids))
   AND state IN ('pending', 'failed', 'processing')
RETURNING id, state;

-- name: signal_job :rowcount
-- Ask a running job's worker to send it a signal; a cancel under way is not replaced.
UPDATE queuectl_jobs
   SET control = :control
 WHERE id = :job_id
   AND state = 'processing'
   AND control IS NOT 'cancel';

-- name: delete_jobs :many
-- Remove jobs that are not running, with their attempts (ON DELETE CASCADE).
DELETE FROM queuectl_jobs
 WHERE id IN (SELECT value FROM json_each(:ids))
   AND state IN (SELECT value FROM json_each(:states))
RETURNING id;

-- name: pause_queue :exec
-- Claims pass over a paused queue's jobs.
INSERT INTO queuectl_paused_queues (queue, paused_at) VALUES (:queue, :now)
ON CONFLICT (queue) DO NOTHING;

-- name: resume_queues :many
-- Resume these queues (a JSON array), or every paused one when :queues is NULL.
DELETE FROM queuectl_paused_queues
 WHERE :queues IS NULL OR queue IN (SELECT value FROM json_each(:queues))
RETURNING queue;

-- name: select_paused_queues :many
-- The paused queues, by name.
SELECT queue, paused_at FROM queuectl_paused_queues ORDER BY queue;

-- name: upsert_worker :exec
-- Register a worker, or re-register one that was pruned while it was frozen.
INSERT INTO queuectl_workers (
    id, host, pid, queues, started_at, heartbeat_at, expires_at, wake_addr
)
VALUES (:id, :host, :pid, :queues, :started_at, :now, :expires_at, :wake_addr)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                               expires_at   = excluded.expires_at,
                               wake_addr    = excluded.wake_addr;

-- name: delete_worker :exec
-- Deregister a worker.
DELETE FROM queuectl_workers WHERE id = :worker_id;

-- name: select_expired_worker :one
-- Whether any worker but :exclude is past its own deadline (so that pruning need not write).
SELECT id
  FROM queuectl_workers
 WHERE expires_at < :now
   AND (:exclude IS NULL OR id != :exclude)
 LIMIT 1;

-- name: prune_workers :rowcount
-- Forget workers past their own deadline (they died without deregistering), never the caller.
DELETE FROM queuectl_workers
 WHERE expires_at < :now
   AND (:exclude IS NULL OR id != :exclude);

-- name: list_workers :many
-- Every registered worker, oldest first, with the job it runs (derived, so claims write less).
SELECT w.*,
       (SELECT j.id
          FROM queuectl_jobs AS j INDEXED BY queuectl_jobs_leased
         WHERE j.state = 'processing'
           AND j.worker_id = w.id
         LIMIT 1) AS job_id
  FROM queuectl_workers AS w
 ORDER BY w.started_at, w.id;

-- name: request_stop :many
-- Ask workers to stop ('graceful' or 'now'); returns their wake-up addresses.
UPDATE queuectl_workers
   SET stop = :mode
 WHERE (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id, wake_addr;

-- name: wake_workers :many
-- Where to send a wake-up datagram after new work arrives (a busy worker just looks once more).
SELECT wake_addr FROM queuectl_workers WHERE wake_addr IS NOT NULL;

-- name: select_config :many
-- Every stored config value.
SELECT key, value FROM queuectl_config;

-- name: upsert_config :exec
-- Store one config value.
INSERT INTO queuectl_config (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: purge_finished :rowcount
-- Retention: delete completed and cancelled jobs in one seq window that finished before their
-- state's cutoff (NULL: keep them), with their attempts. A window of the primary key bounds
-- the work of one transaction, however many jobs the table holds.
DELETE FROM queuectl_jobs
 WHERE seq > :after
   AND seq <= :upto
   AND ((state = 'completed' AND updated_at < :completed_before)
        OR (state = 'cancelled' AND updated_at < :cancelled_before));

-- name: select_created_after :one
-- When the first job past a seq was created (a job created after a cutoff finished after it).
SELECT created_at FROM queuectl_jobs WHERE seq > :upto ORDER BY seq LIMIT 1;

-- name: list_jobs_matching :many
-- Jobs newest first in any of :states and :queues (JSON arrays; NULL: any), carrying :tag and
-- with :search in their id or command, when given: a walk back from the newest job.
SELECT *
  FROM queuectl_jobs
 WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
   AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
   AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(tags) WHERE value = :tag))
   AND (:search IS NULL OR instr(id, :search) > 0 OR instr(command, :search) > 0)
 ORDER BY seq DESC
 LIMIT :limit;
