"""Deferred storage upkeep: a worker's hot connection never checkpoints, and upkeep() keeps the
SQLite write-ahead log short even while another connection writes without pause.

SQLite's own (db_path). On PostgreSQL upkeep() and defer_upkeep() do nothing: the server's
autovacuum does the equivalent work. The upkeep both stores share, pruning dead workers and
rescuing expired claims, is tested on both in test_store.py."""

from __future__ import annotations

import threading
from pathlib import Path

from queuectl import models, retry
from queuectl.config import Config
from queuectl.store import Store, open_store
from queuectl.store.sqlite.store import DEFERRED_CHECKPOINT_FRAMES, RESTART_LOG_FRAMES
from tests.helpers import sqlite_row

PAGE = 4096
CFG = Config()


def _wal_size(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _run_jobs(store: Store, count: int, prefix: str = "j") -> None:
    """Enqueue, claim and finish `count` jobs, one transaction at a time."""
    store.enqueue(
        [
            models.NewJob(id=f"{prefix}{i}", command="true", queue="default", priority=0,
                          run_at=store.now(), max_retries=0, timeout=None, cwd=None, env={})
            for i in range(count)
        ]
    )  # fmt: skip
    claim = store.claim("w", "h", None, 60)
    while claim is not None:
        now = store.now()
        out = models.Outcome(end=models.AttemptEnd.SUCCEEDED, started_at=now, ended_at=now)
        transition = retry.next_transition(claim.job, out, CFG, now)
        _, claim = store.finish_and_claim(claim, out, transition, None, 60)


def _log_frames(db_path: Path) -> int:
    """Pages in the write-ahead log (asking checkpoints what it can, which changes no length)."""
    _, frames, _ = sqlite_row(db_path, "PRAGMA wal_checkpoint(PASSIVE)")
    return int(frames)


def test_a_deferring_connection_leaves_the_log_to_upkeep(db_path: Path):
    hot = open_store(db_path)
    hot.defer_upkeep()
    _run_jobs(hot, 600)  # about 3,200 pages: below the safety net
    # SQLite's own checkpoints would have started the log over at 1,000 pages.
    assert 2 * RESTART_LOG_FRAMES < _log_frames(db_path) < DEFERRED_CHECKPOINT_FRAMES
    keeper = open_store(db_path)
    keeper.upkeep()
    _run_jobs(hot, 10, "k")  # the first write after upkeep starts the log over
    assert _log_frames(db_path) < RESTART_LOG_FRAMES
    keeper.close()
    hot.close()


def test_upkeep_keeps_the_log_short_under_constant_writes(db_path: Path):
    keeper = open_store(db_path)
    done = threading.Event()
    largest = 0

    def write() -> None:
        hot = open_store(db_path)  # a connection belongs to its thread
        try:
            hot.defer_upkeep()
            _run_jobs(hot, 6000)
        finally:
            hot.close()
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.wait(0.02):
        keeper.upkeep()
        largest = max(largest, _wal_size(db_path))
    writer.join()
    # Never started over, the log would hold every page written: about 44,000 here. A writer
    # this relentless leaves upkeep() no moment for RESTART, so the writer's own checkpoint at
    # DEFERRED_CHECKPOINT_FRAMES bounds it, late by what it writes while upkeep() holds the
    # checkpoint lock (more on a loaded machine).
    assert largest < 3 * DEFERRED_CHECKPOINT_FRAMES * (PAGE + 24)
    keeper.close()
