"""Log a failure that repeats once, when it starts, and once more when it ends.

A worker retries what fails (a full disk, a locked or vanished file) every fraction of a second;
a line per try would bury the log. Shared by the worker's threads, each with its own Outage.
"""

from __future__ import annotations

import logging
import time

from queuectl import errors


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
