"""A worker whose wall clock is an hour off, on PostgreSQL: the database's clock decides.

Workers on many hosts share one queue; their clocks drift, and a host can be set wrong by hours.
Leases, run_at and retry times are compared with the server's now(), and a worker's own idea of
"now" is the server's clock read at connect plus its monotonic clock, so a skewed host neither
steals a job whose worker is alive (its clock ahead) nor keeps a dead worker's job or misses a
due one (its clock behind), and the times it records are the server's.

The skew is real: libfaketime (a dev dependency, from PyPI) is preloaded into the skewed worker,
shifting every wall-clock call of it and of its jobs, not its monotonic clock. On SQLite every
process of a queue shares one host's clock, so these tests run on PostgreSQL only.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from queuectl.models import AttemptEnd, JobState
from queuectl.store import Store
from tests.helpers import WorkerPool, enqueue_one, ok, run_cli, state_of, wait_until

LEASE = 3.0
"""Seconds a claim lives without a heartbeat: short, so that the rescue comes soon."""
SHIFTS = {"+1h": 3600.0, "-1h": -3600.0}
TOLERANCE = timedelta(seconds=1)
"""How far a worker's reckoning of the server's clock may drift from it in a test."""


def faketime_library() -> str:
    """The libfaketime shared object bundled in PyPI's libfaketime package."""
    found = importlib.util.find_spec("libfaketime")
    assert found is not None and found.origin, "libfaketime is a dev dependency: make test"
    library = Path(found.origin).parent / "vendor/libfaketime/src/libfaketime.so.1"
    assert library.is_file(), f"no {library} in the libfaketime package"
    return str(library)


def skewed_environment(host: str, shift: str) -> dict[str, str]:
    """A worker pool's environment with its wall clock moved by `shift` ("+1h")."""
    return {
        "QUEUECTL_HOSTNAME": host,
        "LD_PRELOAD": faketime_library(),
        "FAKETIME": shift,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _kill(pool: WorkerPool) -> None:
    """SIGKILL a pool's supervisor and workers: the host died (its jobs' processes live on)."""
    workers = pool.worker_pids()
    for pid in [pool.pid, *workers]:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_a_skewed_worker_neither_steals_nor_keeps_nor_misses_jobs(
    db: str, store: Store, shift: str
) -> None:
    ok(run_cli(db, "config", "set", "lease", str(LEASE)))
    ok(run_cli(db, "config", "set", "poll_interval", "60"))  # a due job wakes it, not a poll
    honest_env = {"QUEUECTL_HOSTNAME": "honest"}
    with WorkerPool(db, 1, "--queue", "a", env=honest_env, db_in_env=True) as honest:
        # A live job of the honest host, running past several of its leases.
        live = enqueue_one(store, id="live", command="sleep 4", queue="a")
        wait_until(lambda: state_of(store, live) is JobState.PROCESSING, 20, "the live job")
        skewed_env = skewed_environment("skewed", shift)
        with WorkerPool(db, 1, "--queue", "default", env=skewed_env, db_in_env=True) as skewed:
            wait_until(
                lambda: any(w.host == "skewed" for w in store.list_workers()), 20, "skewed worker"
            )
            # A job due two seconds from now (the server's now) for the skewed worker only.
            due_at = store.now() + timedelta(seconds=2)
            due = enqueue_one(store, id="due", command="date +%s", run_at=due_at.isoformat())
            wait_until(lambda: state_of(store, due) is JobState.COMPLETED, 20, "the due job")
            [ran] = store.attempts(due)
            assert ran.host == "skewed"
            # Not before it was due, and not missed until a poll: at its time.
            assert due_at - TOLERANCE <= ran.started_at <= due_at + timedelta(seconds=5), ran
            # Recorded in the server's time, not the host's...
            assert ran.started_at <= ran.ended_at <= store.now() + TOLERANCE, ran
            # ...although the job itself saw the skewed clock: the fault was real.
            seen = datetime.fromtimestamp(int(ran.stdout), due_at.tzinfo)
            assert abs((seen - due_at).total_seconds() - SHIFTS[shift]) < 60, (seen, due_at)

            # The skewed worker's rescue sweeps ran all along; the live job was not taken.
            wait_until(lambda: state_of(store, live) is JobState.COMPLETED, 20, "the live job")
            [only] = store.attempts(live)
            assert (only.host, only.end) == ("honest", AttemptEnd.SUCCEEDED), only

            # The honest host dies mid-job: the skewed worker recovers it at lease expiry.
            orphan = enqueue_one(store, id="orphan", command="sleep 60", queue="a")
            wait_until(lambda: state_of(store, orphan) is JobState.PROCESSING, 20, "the orphan")
            _kill(honest)
            lost = wait_until(lambda: store.attempts(orphan), LEASE + 20, "the orphan's rescue")
            assert [a.end for a in lost] == [AttemptEnd.WORKER_LOST], lost
            assert skewed.proc is not None and skewed.proc.poll() is None
