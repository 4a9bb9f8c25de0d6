"""A worker's maintenance thread: config, rescue, pruning, storage upkeep, a replaced store.

Every worker runs it, busy or idle, on its own connection, so a dead worker's job is recovered
within a second of its lease running out even while every live worker is busy:
- every SWEEP_INTERVAL: reload the config (running workers pick up changes); rescue expired
  claims, first killing what is left of their jobs on this host, so a job never runs twice at
  the same time here; forget workers past their own deadline (never this one); fold the logs of
  job count changes and activity (PostgreSQL), so that `status` sums a few rows;
- every PURGE_INTERVAL: retention, forgetting activity older than activity.KEEP and deleting
  completed and cancelled jobs older than keep_completed / keep_cancelled in windows of
  PURGE_WINDOW seqs, for at most PURGE_BUDGET;
- every TICK: stop the worker when its store was deleted or replaced; the storage upkeep
  (SQLite: checkpoints) that the claim-run-finish connection leaves to this thread.
Like the heartbeat, it survives any error: it logs once and tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Protocol

from queuectl import activity, config, errors, models, outage, proctree, retry, store, storethread

log = logging.getLogger(__name__)

TICK = storethread.TICK
"""Seconds between storage upkeep calls."""
SWEEP_INTERVAL = 1.0
"""Seconds between looks for expired leases, dead workers, config changes and a replaced store."""
RESCUE_BATCH = 20
PURGE_INTERVAL = 10.0
"""Seconds between two retention passes of one worker."""
PURGE_WINDOW = 2000
"""Seqs one retention transaction looks at: it deletes at most as many jobs."""
PURGE_BUDGET = 0.05
"""Seconds one retention pass may take, window after window, before it yields till the next."""


class Owner(Protocol):
    """What maintenance needs of its worker."""

    info: models.WorkerInfo
    cfg: config.Config
    exiting: threading.Event
    store_outage: outage.Outage

    def store_gone(self) -> None:
        """The store was deleted or replaced: stop at once."""

    def still_current(self) -> bool:
        """Whether the worker's own connection still reaches the store its location names."""


def job_markers(claim: models.Claim) -> dict[str, str]:
    """The environment entries that every process of a claim's attempt carries.

    The worker sets them on the command (after the job's own env, so they win); a rescue finds
    the attempt's processes by them.
    """
    return {
        "QUEUECTL_WORKER_ID": claim.worker_id,
        "QUEUECTL_JOB_ID": claim.job.id,
        "QUEUECTL_ATTEMPT": str(claim.job.run_count),
    }


class Maintenance(storethread.StoreThread):
    """The maintenance thread of one worker (start(), then join() once owner.exiting is set)."""

    part = "maintenance"

    def __init__(self, owner: Owner, location: str) -> None:
        self.name = f"worker {owner.info.id}: maintenance"
        super().__init__(owner.exiting, location, owner.store_outage)
        self.owner = owner
        self.next_sweep = 0.0
        self.next_purge = 0.0  # at the first sweep: a worker started to clean up does at once
        self.purge_after = 0
        """The seq after which the next retention step looks."""
        self._upkeep_outage = outage.Outage(log, f"worker {owner.info.id}: checkpoint")

    def ready(self) -> bool:
        """Look at the store's file first: a replaced one needs no connection to notice."""
        if self.owner.still_current():
            return True
        self.owner.store_gone()
        return False

    def step(self, db: store.Store) -> bool:
        """Upkeep now; the sweep when it is due (upkeep's failures are an outage of their own)."""
        self.upkeep(db)
        if time.monotonic() < self.next_sweep:
            return False
        self.next_sweep = time.monotonic() + SWEEP_INTERVAL
        self.sweep(db)
        return True

    def upkeep(self, db: store.Store) -> None:
        """Storage upkeep; its failures (a full disk) are logged apart and never stop the sweep."""
        try:
            db.upkeep()
            self._upkeep_outage.recovered()
        except errors.StoreUnavailable as exc:
            self._upkeep_outage.failed(exc)

    def sweep(self, db: store.Store) -> None:
        """Config, expired claims, dead workers, the count log; retention when it is due."""
        self.owner.cfg = config.from_stored(db.get_config())
        for claim in db.expired_claims(RESCUE_BATCH):
            self.rescue(db, claim)
        db.prune_workers(exclude=self.owner.info.id)
        db.compact_counts()
        if time.monotonic() >= self.next_purge:
            self.next_purge = time.monotonic() + PURGE_INTERVAL
            self.purge(db)

    def purge(self, db: store.Store) -> int:
        """Forget old activity; delete finished jobs past their retention, a window at a time."""
        cfg = self.owner.cfg
        now = db.now()
        db.prune_activity(now - activity.KEEP)
        keep = {
            models.JobState.COMPLETED: cfg.keep_completed,
            models.JobState.CANCELLED: cfg.keep_cancelled,
        }
        before = {state: now - timedelta(seconds=s) for state, s in keep.items() if s > 0}
        if not before:
            return 0
        deleted = 0
        ends = time.monotonic() + PURGE_BUDGET
        while True:
            step = db.purge_finished(self.purge_after, PURGE_WINDOW, before)
            deleted += step.deleted
            self.purge_after = step.next_after
            if step.next_after == 0 or time.monotonic() >= ends:
                break
        if deleted:
            log.debug(
                "worker %s: deleted %d finished job(s) past retention", self.owner.info.id, deleted
            )
        return deleted

    def rescue(self, db: store.Store, claim: models.Claim) -> bool:
        """Recover one expired claim: kill what is left of its attempt here, then retry it."""
        if claim.host == self.owner.info.host:
            killed = proctree.kill_marked(job_markers(claim))
            if killed:
                log.warning(
                    "job %s attempt %d: killed %d process(es) left by worker %s",
                    claim.job.id,
                    claim.job.run_count,
                    killed,
                    claim.worker_id,
                )
        now = db.now()
        lost = models.Outcome(
            end=models.AttemptEnd.WORKER_LOST,
            started_at=claim.claimed_at,
            ended_at=now,
            error=f"worker {claim.worker_id} lost (its lease expired)",
        )
        transition = retry.next_transition(claim.job, lost, self.owner.cfg, now)
        rescued = db.rescue(claim, lost, transition)
        if rescued:
            log.warning(
                "job %s attempt %d: worker %s lost -> %s",
                claim.job.id,
                claim.job.run_count,
                claim.worker_id,
                retry.describe(claim.job, transition),
            )
        return rescued
