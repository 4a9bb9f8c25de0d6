"""A worker's heartbeat thread: keep its registration and its claim's lease alive.

It beats on its own connection, often enough for both deadlines it keeps:
- the worker's row, presumed dead after `lease` s (the config value at the beat) and so beaten
  every lease / 3;
- the running claim's lease, taken for `claim.lease` s and so extended every claim.lease / 3,
  whatever the config says meanwhile.
A beat checks the claim's lease whether or not the row was there (a frozen worker's row may have
been pruned; the beat registers it again), and stops the job as soon as the lease is lost; it
records when the lease runs out, and the worker's main thread stops the job at that moment if no
beat has extended it (a beat may be stuck waiting for the store). While a job runs, the thread
also looks for requests every TICK: the worker's stop, and its job's control (`queuectl cancel`,
`queuectl kill`), and saves the job's output so far at most once every OUTPUT_EVERY seconds
while it changes (`queuectl logs`). It survives any error: it logs once and tries again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

from queuectl import config, executor, models, outage, store, storethread

log = logging.getLogger(__name__)

TICK = storethread.TICK
"""Seconds between the thread's looks at its deadlines and, while a job runs, at requests."""
OUTPUT_EVERY = 1.0
"""Seconds between two saves of a running job's output."""
LIVE_OUTPUT_LIMIT = 256 * 1024
"""Bytes of each stream a save keeps at most (and never more than output_limit)."""


class Lease:
    """The worker's running claim and the heartbeat's bookkeeping of it (monotonic times)."""

    __slots__ = ("claim", "ended", "held_until", "next_beat", "next_save", "progress", "saved")

    def __init__(self, claim: models.Claim, taken_at: float) -> None:
        self.claim = claim
        self.progress = executor.Progress()
        """The running command's output, filled by the executor."""
        self.next_save = taken_at + OUTPUT_EVERY
        self.saved = (-1, -1)
        """How much of stdout and stderr the last save had seen (none yet: the first save
        records the pid, even of a silent job)."""
        self.held_until = taken_at + claim.lease
        """When the lease runs out unless a beat extends it."""
        self.next_beat = taken_at + claim.lease / 3
        self.ended = False
        """The job has ended and its finish is being recorded: nothing is left to stop (a beat
        racing the finish sees the lease gone because the finish took it)."""


class Owner(Protocol):
    """What the heartbeat needs of its worker."""

    info: models.WorkerInfo
    cfg: config.Config
    exiting: threading.Event
    store_outage: outage.Outage

    def current(self) -> Lease | None:
        """The running claim, if any."""

    def abort_if_current(self, claim: models.Claim, why: str) -> None:
        """Stop the job of `claim` if it is still the running one."""

    def request_stop(self, mode: str) -> None:
        """Stop claiming ('graceful'), and stop the running job too ('now')."""

    def control(self, claim: models.Claim, request: str) -> None:
        """Act on a control request for the job of `claim` (cancel it, or send a signal)."""

    def poll_signals(self) -> None:
        """Act on stop signals that arrived."""


class Heartbeat(storethread.StoreThread):
    """The heartbeat thread of one worker (start(), then join() once owner.exiting is set)."""

    part = "heartbeat"

    def __init__(self, owner: Owner, location: str) -> None:
        self.name = f"worker {owner.info.id}: heartbeat"
        super().__init__(owner.exiting, location, owner.store_outage)
        self.owner = owner
        self.next_row_beat = 0.0
        self._parent = os.getppid()

    def start(self) -> None:
        """Start beating (the worker has registered, so the first beat is due in lease / 3)."""
        self.next_row_beat = time.monotonic() + self.owner.cfg.lease / 3
        super().start()

    def ready(self) -> bool:
        """Act on signals and on a dead supervisor first: neither needs the store."""
        self.owner.poll_signals()
        if os.getppid() != self._parent:
            self.owner.request_stop("graceful")  # the supervisor is gone
        return True

    def step(self, db: store.Store) -> bool:
        """Beat when a deadline needs it; else, while a job runs, look for a stop request."""
        lease = self.owner.current()
        now = time.monotonic()
        if now >= self.next_row_beat or (lease is not None and now >= lease.next_beat):
            self.beat(db, lease)
            return True
        if lease is None:
            return False
        asked = db.requests(lease.claim)
        if asked.stop is not None:
            self.owner.request_stop(asked.stop)
        if asked.control is not None and not lease.ended:
            self.owner.control(lease.claim, asked.control)
            if asked.control != models.CANCEL:
                db.clear_control(lease.claim, asked.control)  # a signal is sent once
        if now >= lease.next_save and not lease.ended:
            self.save_output(db, lease)
        return True

    def save_output(self, db: store.Store, lease: Lease) -> None:
        """Save the running job's output so far, if it has changed since the last save."""
        lease.next_save = time.monotonic() + OUTPUT_EVERY
        limit = min(self.owner.cfg.output_limit, LIVE_OUTPUT_LIMIT)
        snapshot = lease.progress.snapshot(limit)
        if snapshot is None:
            return
        stdout, stderr, out_total, err_total = snapshot
        if (out_total, err_total) == lease.saved:
            return
        output = models.LiveOutput(
            number=lease.claim.job.run_count,
            stdout=stdout,
            stderr=stderr,
            stdout_total=out_total,
            stderr_total=err_total,
            updated_at=db.now(),
            pid=lease.progress.pid,
        )
        db.save_output(lease.claim, output)
        lease.saved = (out_total, err_total)

    def beat(self, db: store.Store, lease: Lease | None) -> None:
        """One heartbeat: the row, the claim's lease, and the stop request it returns."""
        ttl = self.owner.cfg.lease
        started = time.monotonic()
        reply = db.heartbeat(self.owner.info, None if lease is None else lease.claim, ttl)
        self.next_row_beat = started + ttl / 3
        if reply.registered_again:
            log.warning(
                "worker %s: registered again (it was silent past its deadline, so it had been "
                "forgotten; was it frozen?)",
                self.owner.info.id,
            )
        if lease is not None:
            if reply.lease_held:
                lease.held_until = started + lease.claim.lease
                lease.next_beat = started + lease.claim.lease / 3
            else:
                self.owner.abort_if_current(lease.claim, "its lease was lost (it was rescued)")
        if reply.stop is not None:
            self.owner.request_stop(reply.stop)
