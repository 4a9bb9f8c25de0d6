"""A full disk while a worker records an attempt loses no job, and is logged once, not a dozen
times a second.

The queue lives on a real, small tmpfs (mounting needs root; CI runs as root), filled up while a
job runs, so the finish, the heartbeats and the checkpoints all fail with SQLite's "database or
disk is full" until space comes back.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl import api, spec
from queuectl.models import JobState
from queuectl.store import Store, open_store
from tests.helpers import WorkerPool, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.getuid() != 0:
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(disk)], check=True
    )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:  # until the file system says "no space left on device"
            out.write(b"\0" * 65536)
    return filler


def _state(store: Store, job_id: str) -> JobState | None:
    job = store.get_job(job_id)
    return None if job is None else job.state


def test_a_full_disk_during_a_finish_loses_no_job_and_is_logged_once(
    small_disk: Path, tmp_path: Path
):
    db_path = small_disk / "queue.db"
    flag = tmp_path / "release"
    store = open_store(db_path)
    try:
        api.set_config(store, "lease", "20")
        job = api.enqueue(
            store, [spec.from_mapping({"command": f"while [ ! -e {flag} ]; do sleep 0.05; done"})]
        )[0]
        log = tmp_path / "workers.log"
        with WorkerPool(db_path, 1, log=log):
            wait_until(lambda: _state(store, job) is JobState.PROCESSING, 20, "the start")
            filler = _fill(small_disk)
            flag.touch()  # the job ends now, and its finish meets the full disk
            wait_until(lambda: "the store failed: " in log.read_text(), 20, "the finish to fail")
            # Let it retry for a while: the heartbeat (every lease / 3), the finish (every
            # second) and the checkpoints (every 0.2 s) all fail meanwhile.
            wait_until(
                lambda: log.read_text().count("queue.db") and _quiet_for(log, 3.0), 20, "time"
            )
            assert _state(store, job) is JobState.PROCESSING  # not lost, not finished
            filler.unlink()
            wait_until(lambda: _state(store, job) is JobState.COMPLETED, 30, "completion")
        text = log.read_text()
    finally:
        store.close()
    failures = [line for line in text.splitlines() if " failed" in line and "retrying" in line]
    # Once for the store (whichever of the loop and the threads failed first) and once for the
    # checkpoints, not once per thread or per try.
    assert 1 <= len(failures) <= 2, failures
    assert "the store works again" in text
    assert len(store_attempts(db_path, job)) == 1


def _quiet_for(log: Path, seconds: float) -> bool:
    """Whether the log has not changed for `seconds` (it was written to at least once)."""
    return time.time() - log.stat().st_mtime >= seconds


def store_attempts(db_path: Path, job: str) -> list[object]:
    db = open_store(db_path)
    try:
        return list(db.attempts(job))
    finally:
        db.close()
