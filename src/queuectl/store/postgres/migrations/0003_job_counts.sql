-- Job counts per queue and state, kept with every change in the change's own transaction, so
-- that `status` sums a few rows instead of counting every job (issue 10: <= 50 ms at 10,000,000
-- jobs). As SQLite's migration 0006, but as a log: a table of counts updated in place would
-- have one row per queue and state that every claim and every finish updates, so busy workers
-- would queue on its row locks, and a finish-and-claim (two rows) could deadlock with another
-- taking the same two rows the other way round. Appending only ever inserts: no row is shared.
-- count_jobs sums the log; compact_counts folds it into a row per queue and state (workers'
-- maintenance, every second).
CREATE TABLE count_deltas (
    id    bigint GENERATED ALWAYS AS IDENTITY,
    queue text   NOT NULL,
    state text   NOT NULL,
    delta bigint NOT NULL
);

-- One row per queue and state a statement changed, whatever the number of jobs it changed:
-- statement-level triggers with transition tables (an INSERT's covers COPY too). An UPDATE that
-- moved no job between states (a lease, a heartbeat, a request) appends nothing. The function's
-- search_path is fixed here, to the schema this migration runs in: a session that reaches the
-- jobs some other way (schema-qualified) still finds its log.
CREATE FUNCTION count_job_changes() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO count_deltas (queue, state, delta)
        SELECT queue, state, count(*) FROM new_jobs GROUP BY queue, state;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO count_deltas (queue, state, delta)
        SELECT queue, state, -count(*) FROM old_jobs GROUP BY queue, state;
    ELSE
        INSERT INTO count_deltas (queue, state, delta)
        SELECT queue, state, sum(change)
          FROM (SELECT queue, state, -1 AS change FROM old_jobs
                UNION ALL
                SELECT queue, state, 1 FROM new_jobs) AS changes
         GROUP BY queue, state
        HAVING sum(change) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- Before the first count: CREATE TRIGGER locks out every writer of jobs until this migration
-- commits, so no change falls between the count below and the triggers.
CREATE TRIGGER jobs_count_insert
AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();

CREATE TRIGGER jobs_count_update
AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();

CREATE TRIGGER jobs_count_delete
AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();

INSERT INTO count_deltas (queue, state, delta)
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;
