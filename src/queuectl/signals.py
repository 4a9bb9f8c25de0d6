"""SIGTERM and SIGINT for a worker: handlers that only count, and a pipe that wakes its loop.

A handler runs between two bytecodes of the main thread, which may hold any lock at that moment
(a threading.Event's, the logging module's): so it only adds one to a counter. The signal module
also writes the signal's number to a pipe (set_wakeup_fd), which ends the worker's idle wait at
once; the worker's threads read the count and act on it. Other threads wake the loop through the
same pipe (wake()).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Counts stop signals while active; `fd` becomes readable on each signal and wake()."""

    def __init__(self) -> None:
        self.count = 0
        self._read: int | None = None
        self._write: int | None = None
        self._previous: dict[int, object] = {}
        self._previous_wakeup: int | None = None

    @property
    def fd(self) -> int | None:
        """Readable when a signal arrived or wake() was called; None outside the `with` block."""
        return self._read

    def _count(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1  # nothing else: see the module docstring

    def __enter__(self) -> StopSignals:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        # Only the main thread may install handlers; a worker run in a thread (tests) has none.
        if threading.current_thread() is threading.main_thread():
            self._previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            self._previous = {sig: signal.signal(sig, self._count) for sig in STOP_SIGNALS}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
        for fd in (self._read, self._write):
            if fd is not None:
                os.close(fd)
        self._read = self._write = None

    def wake(self) -> None:
        """Make `fd` readable (from any thread), so the main loop looks at its stop state."""
        if self._write is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write, b"\0")

    def drain(self) -> None:
        """Empty the pipe after a wake-up."""
        if self._read is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._read, 512):
                    pass
