-- The due index held every waiting job, so every enqueue wrote it and every claim rewrote it.
-- It serves one question: when does the earliest job scheduled for later fall due (an idle
-- worker sleeps until then)? Jobs due on enqueue never need it: they are claimable at once, and
-- their enqueue wakes idle workers. Only delayed jobs and jobs waiting for a retry stay in it.
DROP INDEX queuectl_jobs_due;

CREATE INDEX queuectl_jobs_due
    ON queuectl_jobs (run_at)
    WHERE state IN ('pending', 'failed') AND run_at > created_at;
