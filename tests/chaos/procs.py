"""Linux /proc helpers: find a run's processes and signal only those.

Nothing here may signal a process the run did not start: `send()` goes through a pidfd, after
checking that the process carries the run's marker in its environment.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from pathlib import Path


def children(pid: int) -> list[int]:
    """The children of every thread of `pid` (a child belongs to the thread that forked it)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree, as it is now."""
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def is_alive(pid: int) -> bool:
    """Whether `pid` exists and is neither a zombie nor dying."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "x")


def environ(pid: int) -> list[bytes]:
    """The environment `pid` started with (empty for a zombie or a vanished process)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def marked(marker: str) -> list[int]:
    """The live processes whose environment holds `marker` (`NAME=VALUE`)."""
    wanted = marker.encode()
    own = os.getpid()
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and int(entry) != own and wanted in environ(int(entry))
    ]


def describe(pid: int) -> str:
    """A process's command line and, for a job's process, which job and attempt it belongs to."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid} (gone)"
    env = dict(item.partition(b"=")[::2] for item in environ(pid))
    job = env.get(b"QUEUECTL_JOB_ID", b"").decode()
    attempt = env.get(b"QUEUECTL_ATTEMPT", b"").decode()
    command = " ".join(a.decode(errors="replace") for a in argv if a)
    return f"pid {pid}: {command}" + (f" (job {job} attempt {attempt})" if job else "")


def worker_id_of(pid: int) -> str | None:
    """The `--id` a supervisor gave the worker process `pid`, when its command line has one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, UnicodeDecodeError):
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == "--id":
            return value
    return None


def send(pid: int, sig: int, marker: str) -> bool:
    """Send `sig` to `pid` only if it carries `marker`: never to a process of someone else.

    The pidfd pins the process, so a pid reused after the marker check cannot be hit.
    """
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if marker.encode() not in environ(pid):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
