"""Wake idle workers at once when work arrives, without polling (the SQLite backend's mechanism).

Each worker process listens on one Unix datagram socket; whoever adds work sends an empty
datagram to each listener. The sockets live in a directory only their owner can enter
(`$XDG_RUNTIME_DIR/queuectl`, else `/tmp/queuectl-UID`), so no other user can flood a worker
with wake-ups (abstract sockets, used before, have no permissions at all). Where that directory
cannot be had safely, or Unix sockets do not exist, there is no listener and workers poll every
poll_interval.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

log = logging.getLogger(__name__)


def socket_dir() -> str:
    """Where this user's wake-up sockets live."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):  # noqa: PTH117 - see socket_dir's PTH118
        return os.path.join(runtime, "queuectl")  # noqa: PTH118 - pathlib costs the CLI 4 ms
    return f"/tmp/queuectl-{os.getuid()}"  # noqa: S108 - checked to be ours and private below


def _private_dir(path: str) -> bool:
    """Create `path` owner-only if missing; True when it is a real directory only we can enter.

    A directory someone else made (say, another user pre-creating /tmp/queuectl-UID) or one
    others may write is refused, never repaired: its sockets could be theirs.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)  # noqa: PTH102
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


class Listener:
    """One worker process's wake-up socket (see listener())."""

    def __init__(self) -> None:
        self.address: str | None = None
        self._sock: socket.socket | None = None
        if not sys.platform.startswith("linux"):
            return
        directory = socket_dir()
        if not _private_dir(directory):
            log.warning("wake-ups off: %s is not a private directory of ours; polling", directory)
            return
        import socket  # only workers and notifiers need it: keep it off the CLI's start-up

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = os.path.join(directory, f"w-{os.getpid()}-{os.urandom(4).hex()}")  # noqa: PTH118
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            log.warning("wake-ups off: cannot bind %s: %s; polling", path, exc)
            return
        sock.setblocking(False)
        self._sock, self.address = sock, path

    def wait(self, timeout: float, interrupt: int | None = None) -> bool:
        """Block until a wake-up arrives, `interrupt` is readable, or `timeout` passes.

        Returns True when woken by a datagram. The interrupt descriptor is left for its owner
        to drain.
        """
        fds: list[int | socket.socket] = [] if interrupt is None else [interrupt]
        if self._sock is not None:
            fds.append(self._sock)
        ready, _, _ = select.select(fds, [], [], max(timeout, 0.0))
        if self._sock is None or self._sock not in ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while True:  # drain: many wake-ups while busy mean one look at the queue
                self._sock.recv(16)
        return True

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.address is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.address)  # noqa: PTH108
            self.address = None


def sleep(timeout: float, interrupt: int | None = None) -> None:
    """Sleep `timeout` seconds, or until `interrupt` is readable (no listener to wait on)."""
    select.select([] if interrupt is None else [interrupt], [], [], max(timeout, 0.0))


_listener: Listener | None = None


def listener() -> Listener:
    """This process's one listener, made on first use.

    One per process, not per connection: a worker's heartbeat thread may register the worker
    again (on its own connection) and must record the address the main thread waits on.
    """
    global _listener
    if _listener is None:
        _listener = Listener()
    return _listener


def close_listener() -> None:
    """Close this process's listener, if it has one."""
    global _listener
    if _listener is not None:
        _listener.close()
        _listener = None


def notify(addresses: Iterable[str | None]) -> None:
    """Send a wake-up to each socket path; a gone, full or foreign listener is skipped silently.

    A socket nobody listens on any more (its worker was killed) is removed when it lies in
    this user's own directory. Addresses of older versions (abstract names) are ignored.
    """
    targets = [a for a in addresses if a and a.startswith("/")]
    if not targets or not sys.platform.startswith("linux"):
        return
    import socket

    own = socket_dir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for address in targets:
            try:
                sock.sendto(b"", address)
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED and os.path.dirname(address) == own:  # noqa: PTH120
                    with contextlib.suppress(OSError):
                        os.unlink(address)  # noqa: PTH108
