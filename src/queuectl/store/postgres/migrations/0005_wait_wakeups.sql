-- `wait` woken when its jobs end (issue 10: a waiter costs < 1 % of a core and returns within
-- 100 ms of the last job's end), instead of polling the server every 50 ms. A waiter marks its
-- jobs `waited`; a row trigger then sends NOTIFY on the schema's `done` channel (payload: the
-- job's id) when such a job reaches a final state or is deleted. Its WHEN clause is checked
-- for every changed row before anything runs: the finish of a job nobody waits on fires
-- nothing and queues no notification (whose commit would take the server's notify lock). The
-- mark stays: a later finish of the same job (after a retry) notifies too, which costs a
-- NOTIFY nobody may hear, and only on jobs once waited on.
ALTER TABLE jobs ADD COLUMN waited boolean NOT NULL DEFAULT false;

-- search_path fixed to this schema (as count_job_changes'), which names the channel.
CREATE FUNCTION notify_job_done() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('queuectl_' || current_schema() || '_done', OLD.id);
    ELSE
        PERFORM pg_notify('queuectl_' || current_schema() || '_done', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_done
AFTER UPDATE OF state ON jobs
FOR EACH ROW
WHEN (NEW.waited AND NEW.state IN ('completed', 'dead', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION notify_job_done();

CREATE TRIGGER jobs_done_deleted
AFTER DELETE ON jobs
FOR EACH ROW
WHEN (OLD.waited)
EXECUTE FUNCTION notify_job_done();
