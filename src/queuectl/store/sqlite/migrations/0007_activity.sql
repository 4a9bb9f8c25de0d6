-- What the queues did lately (issue 10: `status` shows, per queue over the last hour, completed
-- and failed attempts per minute and attempt duration p50 / p95). Every recorded attempt that
-- counts adds one to its row here, in the transaction that records it (count_attempt), so that
-- `status` reads a few rows per queue and minute instead of the attempts. minute: whole minutes
-- since the Unix epoch, by the store's clock; bucket: queuectl.activity's duration bucket (-1:
-- no duration). The key leads with the minute: the last hour is one range, and the workers'
-- retention pass drops old minutes from the front.
CREATE TABLE queuectl_activity (
    minute    INTEGER NOT NULL,
    queue     TEXT    NOT NULL,
    bucket    INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, bucket)
) WITHOUT ROWID;
