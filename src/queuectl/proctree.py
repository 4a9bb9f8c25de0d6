"""Find and kill a job's processes, wherever they moved: descendants, orphans, marked processes.

A job's processes can leave its process group (`setsid cmd &`) and lose their parent, so no one
signal reaches them all. Three ways find them (Linux /proc; elsewhere each finds nothing):
- descendants: the children of a process, recursively (/proc/PID/task/TID/children);
- orphans: with adopt_orphans(), processes whose parent exits are re-parented to this process
  (PR_SET_CHILD_SUBREAPER) instead of init, so a worker finds what its job left behind among its
  own children;
- marked: every job inherits QUEUECTL_WORKER_ID, QUEUECTL_JOB_ID and QUEUECTL_ATTEMPT, so once
  its worker is dead its processes are found by their environment (kill_marked).
Only the executor starts processes; this module only finds and signals them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping

_PR_SET_CHILD_SUBREAPER = 36
SWEEP_PASSES = 20
"""Most passes of kill_marked(); each finds what forked during the one before."""

_adopting = False


def adopt_orphans() -> bool:
    """Make this process the parent of its descendants' orphans; True when it took effect.

    For a worker, whose only children are the jobs it runs one at a time: any child of it that
    is not the running command is then an orphan of that command's job.
    """
    global _adopting
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _adopting = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _adopting = False
    return _adopting


def adopting() -> bool:
    """Whether adopt_orphans() took effect in this process."""
    return _adopting


def children(pid: int) -> list[int]:
    """The children of `pid` (of all its threads); empty when it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")  # noqa: PTH208 - once a job: no Path objects
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:  # noqa: PTH123
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def descendants(roots: Iterable[int]) -> list[int]:
    """Every process below `roots` (not the roots themselves), parents before children."""
    found: list[int] = []
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children(stack.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found


def orphans(leader: int) -> list[int]:
    """This process's children other than `leader`, when it adopts orphans; else none.

    Read from the main thread's list alone: the executor starts commands from the main thread
    (adopt_orphans() is for a process whose main thread runs the jobs), and the kernel hands
    orphans to a subreaper's first live thread, the main one. One small file a job: reading
    every thread's list cost 0.15 ms, a quarter of a worker's time per job.
    """
    if not _adopting:
        return []
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children", "rb") as handle:  # noqa: PTH123
            found = handle.read().split()
    except OSError:
        return []
    return [pid for pid in map(int, found) if pid != leader]


def is_zombie(pid: int) -> bool:
    """Whether `pid` has exited (or is gone) but may not be reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:  # noqa: PTH123
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send `sig` to each process, skipping those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap_orphans(leader: int) -> None:
    """Collect the exit status of this process's exited children other than `leader`."""
    for pid in orphans(leader):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _marked(markers: Mapping[str, str]) -> list[int]:
    wanted = {f"{key}={value}".encode() for key, value in markers.items()}
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):  # noqa: PTH208 - thousands of entries: plain strings
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:  # noqa: PTH123
                environ = handle.read()
        except OSError:
            continue
        if wanted.issubset(environ.split(b"\0")):
            found.append(int(entry))
    return found


def kill_marked(markers: Mapping[str, str]) -> int:
    """SIGKILL every process whose environment holds all of `markers`; return how many.

    Passes repeat until one finds nothing, so a process forked while the last pass ran is
    found too (a killed process cannot fork again). A zombie's environment reads as empty.
    """
    if not markers or not os.path.isdir("/proc"):  # noqa: PTH112
        return 0
    killed: set[int] = set()
    for _ in range(SWEEP_PASSES):
        found = _marked(markers)
        if not found:
            break
        signal_all(found, signal.SIGKILL)
        if killed.issuperset(found):
            time.sleep(0.01)  # killed, not yet dead: give them a moment to go
        killed.update(found)
    return len(killed)
