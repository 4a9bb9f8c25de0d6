"""Log a failure that repeats once, when it starts, and once more when it ends.

A worker retries what fails (a full disk, a locked or vanished file, a server that went away)
every fraction of a second, from its loop and from its threads; a line per try, or per thread,
would bury the log. One Outage is shared by the parts of a worker that reach the same thing
(its store): the first part to fail logs the outage, and the last part to recover logs its end.
"""

from __future__ import annotations

import logging
import threading
import time

from queuectl import errors

RETRY_FIRST = 0.05
"""Seconds before the first retry of an outage: a dropped connection is often back at once."""
RETRY_CAP = 1.0
"""The longest wait between two retries (the wait doubles from RETRY_FIRST up to it)."""
MAIN = ""
"""The part of an outage that needs no name (the worker's own loop, or the only one)."""


class Outage:
    """One kind of failure, shared by the parts (threads) that meet it; thread-safe."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.since: float | None = None
        self.failures = 0
        """Failed tries during the current outage, of every part."""
        self._failing: dict[str, int] = {}
        """Each part failing now, with its failed tries in a row."""
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, part: str = MAIN) -> None:
        """Note a failure of `part`; only an outage's first is logged (a bug's with a traceback)."""
        with self._lock:
            self.failures += 1
            self._failing[part] = self._failing.get(part, 0) + 1
            if self.since is not None:
                return
            self.since = time.monotonic()
        expected = isinstance(exc, errors.QueuectlError)
        self.log.error(
            "%s failed%s: %s; retrying, quietly until it works again",
            self.what,
            f" ({part})" if part else "",
            exc if expected else f"{type(exc).__name__}: {exc}",
            exc_info=not expected,
        )

    def retry_delay(self, part: str = MAIN) -> float:
        """Seconds `part` waits before its next try: doubling with its failures, capped."""
        with self._lock:
            failures = self._failing.get(part, 0)
        if failures == 0:
            return 0.0
        return float(min(RETRY_CAP, RETRY_FIRST * 2 ** min(failures - 1, 32)))

    def recovered(self, part: str = MAIN) -> None:
        """Note a success of `part`; logged when it was the last part still failing."""
        with self._lock:
            if self._failing.pop(part, None) is None or self._failing or self.since is None:
                return
            elapsed, failures = time.monotonic() - self.since, self.failures
            self.since = None
            self.failures = 0
        self.log.warning(
            "%s works again after %.1fs (%d failed tries)", self.what, elapsed, failures
        )
