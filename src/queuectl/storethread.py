"""A worker's background thread on a store connection of its own, that survives any error.

The heartbeat and the maintenance threads share this shape: every TICK, a step on their own
connection (a worker's connections are not shared between threads), opened when needed, never
creating a store that is gone; any exception is noted in the worker's shared outage.Outage (one
line when the store fails, one when it works again) and the step is tried again at the next
tick, on a fresh connection unless the store merely said it is unavailable. A thread that died
would let leases lapse or dead workers' jobs wait forever.
"""

from __future__ import annotations

import threading

from queuectl import errors, outage, store

TICK = 0.2
"""Seconds between two steps of a worker's background thread."""


class StoreThread:
    """One background thread of a worker: override step(); start(), then join() after `exiting`."""

    name = "store-thread"
    part = "thread"
    """What the shared outage's first line says failed: "heartbeat", "maintenance"."""

    def __init__(self, exiting: threading.Event, location: str, failures: outage.Outage) -> None:
        self.exiting = exiting
        self.location = location
        self.outage = failures
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to end (after `exiting` was set)."""
        if self._thread.is_alive():
            self._thread.join()

    def ready(self) -> bool:
        """Called each tick before step(); False skips the step (no connection needed)."""
        return True

    def step(self, db: store.Store) -> bool:
        """One tick's work on this thread's connection; True when it used the store.

        Only such a success ends an outage: a tick that did nothing proves nothing.
        """
        return False

    def _run(self) -> None:
        db: store.Store | None = None
        try:
            while not self.exiting.wait(TICK):
                try:
                    if self.ready():
                        db = db or store.open_store(self.location, create=False)
                        if self.step(db):
                            self.outage.recovered(self.part)
                except Exception as exc:  # noqa: BLE001 - the thread must outlive any error
                    self.outage.failed(exc, self.part)
                    if db is not None and not isinstance(exc, errors.StoreUnavailable):
                        db.close()  # something unexpected: start again on a fresh connection
                        db = None
        finally:
            if db is not None:
                db.close()
