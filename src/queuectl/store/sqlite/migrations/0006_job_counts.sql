-- Job counts per queue and state, kept with every change in the change's own transaction, so
-- that `status` reads a few rows instead of counting every job (issue 10: <= 50 ms at 10,000,000
-- jobs). Changes of state or queue and deletions keep them through the triggers below. Inserts
-- do not: a trigger a row would cost every bulk enqueue, so insert_jobs' transaction adds its
-- batch's counts in one statement instead (count_new_jobs). A row whose n fell to 0 stays: it
-- is rewritten in place when the pair comes back, and there are only (queues x states) rows.
CREATE TABLE queuectl_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

-- Writers are serialised (BEGIN IMMEDIATE), so nothing changes between this count and the
-- triggers' first firing.
INSERT INTO queuectl_counts (queue, state, n)
SELECT queue, state, count(*) FROM queuectl_jobs GROUP BY queue, state;

-- Only an UPDATE that sets state or queue fires it (leases, heartbeats and requests do not),
-- and only one that changed them counts (a cancel leaves a running job's state as it is).
CREATE TRIGGER queuectl_jobs_count_update
AFTER UPDATE OF state, queue ON queuectl_jobs
WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue
BEGIN
    INSERT INTO queuectl_counts (queue, state, n) VALUES (OLD.queue, OLD.state, -1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n - 1;
    INSERT INTO queuectl_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER queuectl_jobs_count_delete
AFTER DELETE ON queuectl_jobs
BEGIN
    INSERT INTO queuectl_counts (queue, state, n) VALUES (OLD.queue, OLD.state, -1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n - 1;
END;
