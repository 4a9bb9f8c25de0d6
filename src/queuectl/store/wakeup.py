"""Wake idle workers at once when work arrives, without polling.

Each worker listens on a Unix datagram socket in Linux's abstract namespace (no file to clean up);
whoever adds work sends one empty datagram to each listener. Where abstract sockets do not exist,
there is no listener and workers fall back to polling every poll_interval.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket


class Listener:
    """One worker's wake-up socket."""

    def __init__(self) -> None:
        self.address: str | None = None
        self._sock: socket.socket | None = None
        if sys.platform.startswith("linux"):
            import socket  # only workers and notifiers need it: keep it off the CLI's start-up

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = f"\0queuectl-{os.urandom(8).hex()}"
            sock.bind(name)
            sock.setblocking(False)
            self._sock, self.address = sock, name[1:]

    def wait(self, timeout: float) -> bool:
        """Block until a wake-up arrives or `timeout` passes; True when woken."""
        if self._sock is None:
            time.sleep(max(timeout, 0.0))
            return False
        ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while True:  # drain: many wake-ups while busy mean one look at the queue
                self._sock.recv(16)
        return True

    def close(self) -> None:
        """Stop listening."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify(addresses: Iterable[str | None]) -> None:
    """Send a wake-up to each address; a gone or full listener is skipped silently."""
    targets = [a for a in addresses if a]
    if not targets or not sys.platform.startswith("linux"):
        return
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for address in targets:
            with contextlib.suppress(OSError):
                sock.sendto(b"", f"\0{address}")
