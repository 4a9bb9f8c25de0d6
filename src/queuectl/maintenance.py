"""A worker's maintenance thread: config, rescue, pruning, storage upkeep, a replaced store.

Every worker runs it, busy or idle, on its own connection, so a dead worker's job is recovered
within a second of its lease running out even while every live worker is busy:
- every SWEEP_INTERVAL: reload the config (running workers pick up changes); rescue expired
  claims, first killing what is left of their jobs on this host, so a job never runs twice at
  the same time here; forget workers past their own deadline (never this one);
- every TICK: stop the worker when its store was deleted or replaced; the storage upkeep
  (SQLite: checkpoints) that the claim-run-finish connection leaves to this thread.
Like the heartbeat, it survives any error: it logs once and tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from queuectl import config, errors, models, outage, proctree, retry, store, storethread

log = logging.getLogger(__name__)

TICK = storethread.TICK
"""Seconds between storage upkeep calls."""
SWEEP_INTERVAL = 1.0
"""Seconds between looks for expired leases, dead workers, config changes and a replaced store."""
RESCUE_BATCH = 20


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
        """Config, expired claims, dead workers."""
        self.owner.cfg = config.from_stored(db.get_config())
        for claim in db.expired_claims(RESCUE_BATCH):
            self.rescue(db, claim)
        db.prune_workers(exclude=self.owner.info.id)

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
