-- Job control: requests to a running job's worker (cancel, a signal), tags, paused queues, the
-- running attempt's output so far, and a `cancelled` state for jobs and attempts.
ALTER TABLE queuectl_jobs ADD COLUMN control TEXT;
ALTER TABLE queuectl_jobs ADD COLUMN tags TEXT;

CREATE TABLE queuectl_paused_queues (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE queuectl_live_output (
    job_seq      INTEGER PRIMARY KEY REFERENCES queuectl_jobs (seq) ON DELETE CASCADE,
    number       INTEGER NOT NULL,
    pid          INTEGER,
    stdout       BLOB    NOT NULL,
    stderr       BLOB    NOT NULL,
    stdout_total INTEGER NOT NULL,
    stderr_total INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- The two CHECK constraints are widened in place: SQLite's documented way for a change every
-- stored row already satisfies (lang_altertable.html, "Making Other Kinds Of Table Schema
-- Changes"). Copying the tables instead would rewrite every attempt's output. Last, because
-- ALTER TABLE above edits this same text; the runner then bumps the schema version, so that
-- every connection reads the new schema.
PRAGMA writable_schema = ON;

UPDATE sqlite_master
   SET sql = replace(sql, '''failed'', ''dead'')', '''failed'', ''dead'', ''cancelled'')')
 WHERE type = 'table' AND name = 'queuectl_jobs';

UPDATE sqlite_master
   SET sql = replace(sql, '''shutdown'')', '''shutdown'', ''cancelled'')')
 WHERE type = 'table' AND name = 'queuectl_attempts';

PRAGMA writable_schema = OFF;
