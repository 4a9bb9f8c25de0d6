-- The initial schema. Times are integer Unix microseconds.
CREATE TABLE queuectl_jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    command          TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    timeout          REAL,
    cwd              TEXT,
    env              TEXT,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    run_count        INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    worker_host      TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    last_error       TEXT
);

-- The claim's index: runnable jobs in claim order.
CREATE INDEX queuectl_jobs_runnable
    ON queuectl_jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');

-- An idle worker sleeps until the earliest waiting job falls due.
CREATE INDEX queuectl_jobs_due
    ON queuectl_jobs (run_at)
    WHERE state IN ('pending', 'failed');

-- Rescue finds expired leases without scanning finished jobs.
CREATE INDEX queuectl_jobs_leased
    ON queuectl_jobs (lease_expires_at)
    WHERE state = 'processing';

-- `list --state dead` finds a few dead jobs among millions without a scan. Listing by queue
-- alone scans newest first and stops at --limit: no index, so every insert stays cheaper.
CREATE INDEX queuectl_jobs_state ON queuectl_jobs (state, seq);

CREATE TABLE queuectl_attempts (
    job_seq    INTEGER NOT NULL REFERENCES queuectl_jobs (seq) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    worker_id  TEXT,
    host       TEXT,
    pid        INTEGER,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NOT NULL,
    exit_code  INTEGER,
    signal     INTEGER,
    outcome    TEXT    NOT NULL
               CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'not_found', 'worker_lost', 'shutdown')),
    error      TEXT,
    stdout     BLOB    NOT NULL DEFAULT x'',
    stderr     BLOB    NOT NULL DEFAULT x'',
    PRIMARY KEY (job_seq, number)
) WITHOUT ROWID;

CREATE TABLE queuectl_workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stop         TEXT CHECK (stop IN ('graceful', 'now')),
    wake_addr    TEXT
);

CREATE TABLE queuectl_config (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
