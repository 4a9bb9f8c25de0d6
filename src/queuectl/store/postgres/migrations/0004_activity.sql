-- What the queues did lately (issue 10: `status` shows, per queue over the last hour, completed
-- and failed attempts per minute and attempt duration p50 / p95), as SQLite's migration 0007,
-- and as a log for the reason count_deltas is one (migration 3): a row per queue, minute and
-- bucket updated in place would be taken by every worker's finish in turn. So insert_attempt
-- appends a row with every attempt that counts, in its own statement, and compact_activity
-- (workers' maintenance, every second) folds the recent minutes into a row per key;
-- select_activity_minutes and _durations sum what is left. minute: the minute's start by the
-- server's clock; bucket: queuectl.activity's duration bucket (-1: no duration).
CREATE TABLE activity (
    id        bigint      GENERATED ALWAYS AS IDENTITY,
    minute    timestamptz NOT NULL,
    queue     text        NOT NULL,
    bucket    integer     NOT NULL,
    completed bigint      NOT NULL,
    failed    bigint      NOT NULL
);

-- The last hour is one range of it; so are the minutes a fold looks at and those retention drops.
CREATE INDEX activity_minute ON activity (minute);
