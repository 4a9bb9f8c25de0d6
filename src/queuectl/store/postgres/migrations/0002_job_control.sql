-- Job control: requests to a running job's worker (cancel, a signal), tags, paused queues, the
-- running attempt's output so far, and a `cancelled` state for jobs and attempts. As SQLite's
-- migration 0005.
ALTER TABLE jobs ADD COLUMN control text;
ALTER TABLE jobs ADD COLUMN tags text[];

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead', 'cancelled'));

ALTER TABLE attempts DROP CONSTRAINT attempts_outcome_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'not_found', 'worker_lost', 'shutdown',
                       'cancelled'));

CREATE TABLE paused_queues (
    queue     text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE live_output (
    job_seq      bigint      PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    number       integer     NOT NULL,
    pid          integer,
    stdout       bytea       NOT NULL,
    stderr       bytea       NOT NULL,
    stdout_total bigint      NOT NULL,
    stderr_total bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
