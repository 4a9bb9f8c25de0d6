"""Log a failure that repeats once, when it starts, and once more when it ends.

A worker retries what fails (a full disk, a locked or vanished file) every fraction of a second;
a line per try would bury the log. Shared by the worker's threads, each with its own Outage.
"""

from __future__ import annotations

import logging
import time

from queuectl import errors

RETRY_FIRST = 0.05
"""Seconds before the first retry of an outage: a dropped connection is often back at once."""
RETRY_CAP = 1.0
"""The longest wait between two retries (the wait doubles from RETRY_FIRST up to it)."""


class Outage:
    """One kind of failure of one thread: quiet between its first line and its recovery."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.since: float | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        """Note a failure; only the first of an outage is logged (a bug with its traceback)."""
        self.failures += 1
        if self.since is not None:
            return
        self.since = time.monotonic()
        expected = isinstance(exc, errors.QueuectlError)
        self.log.error(
            "%s failed: %s; retrying, quietly until it works again",
            self.what,
            exc if expected else f"{type(exc).__name__}: {exc}",
            exc_info=not expected,
        )

    def retry_delay(self) -> float:
        """Seconds to wait before the next try: doubling with each failure, capped."""
        if self.failures == 0:
            return 0.0
        return float(min(RETRY_CAP, RETRY_FIRST * 2 ** min(self.failures - 1, 32)))

    def recovered(self) -> None:
        """Note a success; logged when it ends an outage."""
        if self.since is None:
            return
        self.log.warning(
            "%s works again after %.1fs (%d failed tries)",
            self.what,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since = None
        self.failures = 0
