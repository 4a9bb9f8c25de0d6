"""Directories queuectl creates are private at every level, even under umask 000.

The CLI side of paths.make_private_dirs: the store (for --db) and the supervisor (for --log)
call it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import QUEUECTL, run_cli, wait_until


def run_open_umask(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the console script with umask 000, as a careless shell or service manager might."""
    return subprocess.run(
        [QUEUECTL, *args], capture_output=True, text=True, timeout=timeout, check=False, umask=0
    )


def modes(top: Path, leaf: Path) -> dict[str, int]:
    """The mode of every directory from `top` down to `leaf`, by path relative to top's parent."""
    found = {}
    level = leaf
    while True:
        found[str(level.relative_to(top.parent))] = stat.S_IMODE(level.stat().st_mode)
        if level == top:
            return found
        level = level.parent


def test_db_in_new_nested_directories_is_private_at_every_level(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "c" / "q.db"
    result = run_open_umask("--db", str(db), "enqueue", "--", "true")
    assert result.returncode == 0, result.stderr
    assert modes(tmp_path / "a", db.parent) == {"a": 0o700, "a/b": 0o700, "a/b/c": 0o700}


def _pids_using(db: Path) -> list[int]:
    """The processes whose command line names this test's store: its supervisor and workers."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if str(db).encode() in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry))
    return found


@pytest.fixture
def detached_db(tmp_path: Path) -> Iterator[Path]:
    """A store for a detached supervisor, which is stopped (or killed) afterwards."""
    db = tmp_path / "queue.db"
    yield db
    run_cli(db, "worker", "stop", "--now", "--timeout", "10")
    with contextlib.suppress(AssertionError):  # what is still there after 10 s is killed
        wait_until(lambda: not _pids_using(db), 10, "the detached workers to exit")
    for pid in _pids_using(db):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_detached_log_in_new_nested_directories_is_private_at_every_level(
    tmp_path: Path, detached_db: Path
) -> None:
    log = tmp_path / "d" / "e" / "w.log"
    run_open_umask(
        "--db", str(detached_db), "worker", "start", "--detach", "--log", str(log), timeout=60
    )
    assert log.parent.is_dir()
    assert modes(tmp_path / "d", log.parent) == {"d": 0o700, "d/e": 0o700}
