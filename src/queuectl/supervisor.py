"""`worker start`: run N worker processes, forward stop signals to them, restart any that crash.

Workers are fresh interpreters (`python -m queuectl worker run`), each in its own session so that
a terminal's Ctrl+C reaches only the supervisor, which forwards it: the first signal asks for a
graceful stop, the second for an immediate one. A worker that crashes has its job's processes
killed and is replaced, later and later while it keeps dying at start, until the supervisor gives
up. `--detach` runs this supervisor in the background with its log in a file.
"""

from __future__ import annotations

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

from queuectl import errors, paths, proctree, store, worker

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
"""Seconds before restarting a worker that died soon after it started; doubled for each such
death in a row, up to MAX_RESTART_DELAY."""
MAX_RESTART_DELAY = 30.0
QUICK_DEATH = 5.0
"""A worker that dies within this many seconds of its start counts towards a crash loop."""
MAX_QUICK_DEATHS = 5
"""Quick deaths in a row after which the supervisor gives up: it stops the others, exits 1."""
REAP_INTERVAL = 0.1
DETACH_TIMEOUT = 15.0
"""Seconds `worker start --detach` waits for its workers to register."""


def worker_command(queues: Sequence[str], worker_id: str, burst: bool = False) -> list[str]:
    """The command line of one worker process (its store comes in child_environment())."""
    args = [sys.executable, "-m", "queuectl", "worker", "run", "--id", worker_id]
    for queue in queues:
        args += ["--queue", queue]
    return [*args, "--burst"] if burst else args


def child_environment(db: str) -> dict[str, str]:
    """The environment of a worker or supervisor process started by this one: ours, plus its store.

    The store goes in QUEUECTL_DB, not on the command line, where `ps` would show any other user
    a password in a PostgreSQL URL. Jobs inherit it, so a job's `queuectl enqueue` adds to the
    queue it came from.
    """
    return {**os.environ, paths.ENV_VAR: db}


@dataclass
class Slot:
    """One worker slot: its current process, when it started, how far it was asked to stop."""

    proc: subprocess.Popen[bytes] | None
    worker_id: str = ""
    started: float = field(default_factory=time.monotonic)
    signalled: int = 0
    """Stop signals sent to this process (1: graceful, 2: now)."""
    restart_at: float | None = None
    """When an empty slot gets its next worker (after a crash)."""


class Supervisor:
    """Keeps `count` workers running until they are stopped.

    Signal handlers only count; each tick of the loop delivers the stop level reached to every
    live worker that has not had it yet, so a worker started while a signal arrived gets it too,
    and no worker is started once a stop was asked for.
    """

    def __init__(self, db: str, count: int, queues: Sequence[str], burst: bool = False) -> None:
        self.db, self.count, self.queues = db, count, tuple(queues)
        self.burst = burst
        """Workers exit once no job is due; the supervisor exits when all have."""
        self.slots: list[Slot] = []
        self.signals = 0
        self.quick_deaths = 0
        self.exit_code = 0
        self.giving_up = False

    def _spawn(self) -> Slot:
        worker_id = worker.new_worker_id()
        proc = subprocess.Popen(
            worker_command(self.queues, worker_id, self.burst),
            stdin=subprocess.DEVNULL,
            env=child_environment(self.db),
            start_new_session=True,
        )
        return Slot(proc, worker_id)

    def _count_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1  # only count: see the class docstring

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (a signal, or giving up)."""
        return self.signals > 0 or self.giving_up

    def run(self) -> int:
        """Start the workers and wait until all have exited; return the exit code.

        0 when they stopped as asked; 1 when the supervisor gave up on workers that kept dying
        at start, or when the store was deleted or replaced.
        """
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._count_signal)
        self.slots = [self._spawn() for _ in range(self.count)]
        log.info("supervisor: started %d worker(s) (pid %d)", self.count, os.getpid())
        while self.slots:
            time.sleep(REAP_INTERVAL)
            self._deliver_stop()
            self.slots = [self._check(slot) for slot in self.slots]
            self.slots = [slot for slot in self.slots if slot.proc is not None or self._waits(slot)]
        log.info("supervisor: all workers stopped")
        return self.exit_code

    def _waits(self, slot: Slot) -> bool:
        return slot.restart_at is not None and not self.stopping

    def _deliver_stop(self) -> None:
        level = max(min(self.signals, 2), 1 if self.giving_up else 0)
        for slot in self.slots:
            while slot.proc is not None and slot.signalled < level and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)  # the worker counts: 1 graceful, 2 now
                slot.signalled += 1

    def _check(self, slot: Slot) -> Slot:
        """Leave a running worker alone; clean up after one that died; restart when due."""
        if slot.proc is None:
            if slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                return self._spawn()
            return slot
        code = slot.proc.poll()
        if code is None:
            return slot
        if code == worker.EXIT_STORE_GONE:
            log.error("supervisor: the store was deleted or replaced; stopping every worker")
            self._give_up()
            return Slot(None)
        if code == 0:
            return Slot(None)  # stopped as asked (a signal, or `worker stop`)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        self._clean_up_after(slot.worker_id)
        if self.stopping:
            log.warning("supervisor: worker pid %d died (%s)", slot.proc.pid, how)
            return Slot(None)
        return self._schedule_restart(slot.proc.pid, slot.started, how)

    def _schedule_restart(self, pid: int, started: float, how: str) -> Slot:
        quick = time.monotonic() - started < QUICK_DEATH
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            log.error(
                "supervisor: workers died %d times in a row within %gs of starting (last: "
                "%s); giving up (see the lines above for why)",
                self.quick_deaths,
                QUICK_DEATH,
                how,
            )
            self._give_up()
            return Slot(None)
        delay = min(RESTART_DELAY * 2 ** (self.quick_deaths - 1), MAX_RESTART_DELAY) if quick else 0
        log.warning(
            "supervisor: worker pid %d died (%s); starting another%s",
            pid,
            how,
            f" in {delay:g}s" if delay else "",
        )
        return Slot(None, restart_at=time.monotonic() + delay)

    def _give_up(self) -> None:
        self.exit_code = 1
        self.giving_up = True  # the others stop gracefully, none is restarted

    def _clean_up_after(self, worker_id: str) -> None:
        """Kill what the dead worker's job left running, then let another worker rescue the job.

        The job ran in its own session, so it outlives its worker; killing it first means the
        rescued job never runs twice at the same time.
        """
        killed = proctree.kill_marked({"QUEUECTL_WORKER_ID": worker_id})
        if killed:
            log.warning("supervisor: killed %d process(es) left by worker %s", killed, worker_id)
        try:
            db = store.open_store(self.db, create=False)  # a deleted store stays deleted
        except errors.StoreUnavailable as exc:
            log.warning("supervisor: cannot release worker %s: %s", worker_id, exc)
            return
        try:
            db.release_worker(worker_id)
        except errors.StoreUnavailable as exc:
            log.warning("supervisor: cannot release worker %s: %s", worker_id, exc)
        finally:
            db.close()


def detach(db: str, count: int, queues: Sequence[str], log_path: Path, burst: bool = False) -> int:
    """Start a supervisor in the background and wait until its workers have registered.

    Returns the supervisor's pid. Raises StoreUnavailable when the workers do not come up.
    """
    paths.make_private_dirs(str(log_path.parent))
    args = [sys.executable, "-m", "queuectl", "worker", "start", "--count", str(count)]
    for queue in queues:
        args += ["--queue", queue]
    if burst:
        args.append("--burst")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            env=child_environment(db),
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
