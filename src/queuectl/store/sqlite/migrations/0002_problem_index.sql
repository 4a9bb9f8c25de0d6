-- The index on (state, seq) changed on every claim and every finish: three of the eight or so
-- pages a busy worker's transaction wrote (docs/benchmarks.md). Only the states a healthy queue
-- rarely enters keep one; `list --state` finds the others by the indexes the workers need
-- anyway (processing: the lease index) or newest first (pending, completed).
DROP INDEX queuectl_jobs_state;

CREATE INDEX queuectl_jobs_problems
    ON queuectl_jobs (state, seq)
    WHERE state IN ('failed', 'dead');
