-- A worker's row says itself when the worker is presumed dead: each beat sets expires_at from
-- the worker's own beat interval. Before, every worker pruned every other at twice the lease *it*
-- read from config, so lowering the lease under load made workers prune live ones (and
-- themselves). Rows of workers running an older version get a minute.
ALTER TABLE queuectl_workers ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;

UPDATE queuectl_workers SET expires_at = heartbeat_at + 60000000;
