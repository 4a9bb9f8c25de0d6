"""The SQLite engine under the store: a version past the WAL-reset bug, reached one way only, and
a damaged file reported as such.

A chaos run on the system's SQLite 3.40.1 (through the standard library's sqlite3) ended with a
file whose workers index had lost an entry: SQLite's WAL-reset bug (sqlite.org/wal.html,
"walresetbug"), a race of a checkpoint with a commit, in every version from 3.7.0 to 3.51.2.
Workers checkpoint several times a second, which makes the race likely enough to be met. The store
now uses APSW's bundled SQLite (store/sqlite/store.py).
"""

from __future__ import annotations

import ast
import multiprocessing
import time
from pathlib import Path

import apsw
import pytest

import queuectl
from queuectl import errors, models, retry
from queuectl.config import Config
from queuectl.store import open_store
from tests.helpers import run_cli, sqlite_row, sqlite_value
from tests.store.test_store import new_job, worker_info

FIXED = {(3, 44): 6, (3, 50): 7}
"""Older release lines that got the fix as a backport: the patch level that has it."""


def _has_the_fix(version: str) -> bool:
    major, minor, patch = (int(part) for part in version.split(".")[:3])
    if (major, minor) in FIXED:
        return patch >= FIXED[major, minor]
    return (major, minor, patch) >= (3, 51, 3)


def test_the_version_check_knows_the_fixed_releases():
    assert not _has_the_fix("3.40.1")
    assert not _has_the_fix("3.51.2")
    assert not _has_the_fix("3.50.6")
    assert _has_the_fix("3.44.6")
    assert _has_the_fix("3.50.7")
    assert _has_the_fix("3.51.3")
    assert _has_the_fix("3.54.1")


def test_the_sqlite_in_use_has_the_wal_reset_fix():
    assert _has_the_fix(apsw.sqlite_lib_version()), apsw.sqlite_lib_version()


def test_queuectl_never_imports_the_standard_librarys_sqlite3():
    # Two SQLite libraries in one process, on one file, break each other's locks (closing a file
    # drops every POSIX lock the process holds on it), and the system's may have the bug.
    root = Path(queuectl.__file__).parent
    importers = []
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "sqlite3" for name in names):
                importers.append(str(source.relative_to(root)))
    assert importers == []


def _damage_the_id_index(path: Path) -> None:
    """Overwrite the root page of the jobs' id index with zeros, as a lost write would leave it."""
    page_size: int = sqlite_value(path, "PRAGMA page_size")
    root: int = sqlite_value(
        path, "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_queuectl_jobs_1'"
    )
    sqlite_row(path, "PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the file itself
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\0" * page_size)


def test_a_damaged_file_is_an_unavailable_store_and_a_one_line_error(db_path: Path):
    store = open_store(db_path)
    store.enqueue([new_job(f"j{i}") for i in range(300)])
    store.close()
    _damage_the_id_index(db_path)
    damaged = open_store(db_path)
    try:
        with pytest.raises(errors.StoreUnavailable, match="malformed"):
            damaged.get_job("j7")
    finally:
        damaged.close()
    result = run_cli(db_path, "show", "j7")
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "malformed" in result.stderr


CFG = Config()
STRESS_SECONDS = 8.0


def _busy_worker(path: str, number: int, until: float) -> None:
    """Claim, finish, heartbeat and check the log as fast as one process can, until `until`."""
    store = open_store(path)
    store.defer_upkeep()
    info = worker_info(f"w{number}")
    store.register_worker(info, 5.0)
    while time.time() < until:
        store.enqueue([new_job(f"w{number}-{time.time_ns()}")])
        claim = store.claim(info.id, info.host, None, 60.0)
        if claim is not None:
            now = store.now()
            out = models.Outcome(end=models.AttemptEnd.SUCCEEDED, started_at=now, ended_at=now)
            store.finish(claim, out, retry.next_transition(claim.job, out, CFG, now))
        store.heartbeat(info, None, 5.0)
        store.upkeep()
        store.prune_workers(exclude=info.id)
    store.close()


def test_commits_racing_checkpoints_leave_the_file_intact(db_path: Path):
    open_store(db_path).close()
    until = time.time() + STRESS_SECONDS
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_busy_worker, args=(str(db_path), n, until)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=STRESS_SECONDS + 60)
        assert proc.exitcode == 0
    assert sqlite_value(db_path, "PRAGMA integrity_check") == "ok"
    done: int = sqlite_value(
        db_path, "SELECT count(*) FROM queuectl_jobs WHERE state = 'completed'"
    )
    assert done > 100  # the processes did work, and raced
