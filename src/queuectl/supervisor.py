"""`worker start`: run N worker processes, forward stop signals to them, restart any that crash.

Workers are fresh interpreters (`python -m queuectl worker run`), each in its own session so that
a terminal's Ctrl+C reaches only the supervisor, which forwards it once: the first signal asks for
a graceful stop, the second for an immediate one. `--detach` runs this supervisor in the
background with its log in a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from queuectl import store, worker

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
"""Seconds before restarting a worker that crashed soon after it started."""
REAP_INTERVAL = 0.1
DETACH_TIMEOUT = 15.0
"""Seconds `worker start --detach` waits for its workers to register."""


def worker_command(db: str, queues: Sequence[str], worker_id: str) -> list[str]:
    """The command line of one worker process."""
    args = [sys.executable, "-m", "queuectl", "--db", db, "worker", "run", "--id", worker_id]
    for queue in queues:
        args += ["--queue", queue]
    return args


@dataclass
class Slot:
    """One worker slot: its current process and when it started."""

    proc: subprocess.Popen[bytes]
    worker_id: str
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Keeps `count` workers running until they are stopped."""

    def __init__(self, db: str, count: int, queues: Sequence[str]) -> None:
        self.db, self.count, self.queues = db, count, tuple(queues)
        self.slots: list[Slot] = []
        self.signals = 0

    def _spawn(self) -> Slot:
        worker_id = worker.new_worker_id()
        proc = subprocess.Popen(
            worker_command(self.db, self.queues, worker_id),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return Slot(proc, worker_id)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        for slot in self.slots:
            if slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    def run(self) -> int:
        """Start the workers and wait until all have exited; return 0."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._forward)
        self.slots = [self._spawn() for _ in range(self.count)]
        log.info("supervisor: started %d worker(s) (pid %d)", self.count, os.getpid())
        while self.slots:
            time.sleep(REAP_INTERVAL)
            self.slots = [self._check(slot) for slot in self.slots]
            self.slots = [slot for slot in self.slots if slot.proc.returncode is None]
        log.info("supervisor: all workers stopped")
        return 0

    def _check(self, slot: Slot) -> Slot:
        """Leave a running or cleanly exited worker alone; replace one that crashed."""
        code = slot.proc.poll()
        if code is None or code == 0 or self.signals:
            return slot
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.warning("supervisor: worker pid %d died (%s); starting another", slot.proc.pid, how)
        self._clean_up_after(slot.worker_id)
        if time.monotonic() - slot.started < RESTART_DELAY * 5:
            time.sleep(RESTART_DELAY)
        return self._spawn()

    def _clean_up_after(self, worker_id: str) -> None:
        """Kill what the dead worker's job left running, then let another worker rescue the job.

        The job ran in its own session, so it outlives its worker; killing it first means the
        rescued job never runs twice at the same time.
        """
        killed = kill_job_processes(worker_id)
        if killed:
            log.warning("supervisor: killed %d process(es) left by worker %s", killed, worker_id)
        db = store.open_store(self.db)
        try:
            db.release_worker(worker_id)
        finally:
            db.close()


def kill_job_processes(worker_id: str) -> int:
    """SIGKILL every process whose environment marks it as started by worker `worker_id`.

    Jobs inherit QUEUECTL_WORKER_ID, so this finds a job's whole tree, whatever sessions or
    groups its processes moved to, and nothing else. Linux /proc only; elsewhere it finds nothing.
    """
    marker = f"QUEUECTL_WORKER_ID={worker_id}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def detach(db: str, count: int, queues: Sequence[str], log_path: Path) -> int:
    """Start a supervisor in the background and wait until its workers have registered.

    Returns the supervisor's pid. Raises StoreUnavailable when the workers do not come up.
    """
    from queuectl import errors

    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "queuectl", "--db", db, "worker", "start", "--count", str(count)]
    for queue in queues:
        args += ["--queue", queue]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True
        )
    finally:
        os.close(fd)
    db_store = store.open_store(db)
    try:
        deadline = time.monotonic() + DETACH_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            registered = {w.pid for w in db_store.list_workers()}
            if len(children & registered) >= count:
                return proc.pid
            time.sleep(0.05)
    finally:
        db_store.close()
    raise errors.StoreUnavailable(f"workers did not start; see {log_path}")


def _children(pid: int) -> set[int]:
    """Pids whose parent is `pid` (Linux /proc; elsewhere, an empty set)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}
