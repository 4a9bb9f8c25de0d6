-- The schema, equal to SQLite's after its migrations 0001-0004. Created inside the schema that
-- the connection's search_path names (queuectl unless the URL says otherwise), so no name here
-- is qualified. Times are timestamptz from the server's clock.
CREATE TABLE jobs (
    seq              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text        NOT NULL UNIQUE,
    command          text        NOT NULL,
    queue            text        NOT NULL,
    priority         integer     NOT NULL DEFAULT 0,
    state            text        NOT NULL
                     CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    max_retries      integer     NOT NULL,
    timeout          double precision,
    cwd              text,
    env              jsonb,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    run_count        integer     NOT NULL DEFAULT 0,
    worker_id        text,
    worker_host      text,
    claimed_at       timestamptz,
    lease_expires_at timestamptz,
    last_error       text
);

-- The claim's index: runnable jobs in claim order (SKIP LOCKED walks it past claimed rows).
CREATE INDEX jobs_runnable
    ON jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');

-- An idle worker sleeps until the earliest job scheduled for later falls due.
CREATE INDEX jobs_due
    ON jobs (run_at)
    WHERE state IN ('pending', 'failed') AND run_at > created_at;

-- Rescue finds expired leases, and `list --state processing` running jobs, without a scan.
CREATE INDEX jobs_leased
    ON jobs (lease_expires_at)
    WHERE state = 'processing';

-- `list --state failed|dead` finds a few problems among millions.
CREATE INDEX jobs_problems
    ON jobs (state, seq)
    WHERE state IN ('failed', 'dead');

CREATE TABLE attempts (
    job_seq    bigint      NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    number     integer     NOT NULL,
    worker_id  text,
    host       text,
    pid        integer,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    exit_code  integer,
    signal     integer,
    outcome    text        NOT NULL
               CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'not_found', 'worker_lost',
                                  'shutdown')),
    error      text,
    stdout     bytea       NOT NULL DEFAULT '',
    stderr     bytea       NOT NULL DEFAULT '',
    PRIMARY KEY (job_seq, number)
);

CREATE TABLE workers (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    stop         text        CHECK (stop IN ('graceful', 'now'))
);

CREATE TABLE config (
    key   text PRIMARY KEY,
    value text NOT NULL
);
