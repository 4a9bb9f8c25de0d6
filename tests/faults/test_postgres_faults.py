"""PostgreSQL faults: server restarts, a stopped server and killed connections under running
workers.

Each test has a cluster of its own (restarting the session's would disturb nothing else, but a
failed restart must not take the rest of the suite down with it). poll_interval is set to a
minute, so a job picked up within seconds after a restart proves that the workers' LISTEN
connections came back, not their polling.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from queuectl import api
from queuectl.models import AttemptEnd, JobSpec, JobState
from queuectl.store import open_store
from tests import pgcluster
from tests.helpers import WorkerPool, alive, ok, run_cli, wait_until

POLL = "60"
"""poll_interval during these tests: far longer than any wait below."""
PICKUP = 10.0
"""Seconds within which a job enqueued after a fault must complete: LISTEN, not polling."""
DRAINED = 1_000
"""Jobs four workers drain through two server restarts."""
OUTAGE = 30.0
"""Seconds the server stays stopped."""
OUTAGE_LEASE = "90"
"""The lease while the server is stopped: longer than the outage, so that a job that finished
meanwhile still holds its claim when the server is back and is recorded, not run again."""
FAILED = re.compile(r"worker (w-\w+): the store failed")
BACK = re.compile(r"worker (w-\w+): the store works again after")


@pytest.fixture
def url(cluster: pgcluster.PgCluster) -> str:
    cluster.create_database("faults")
    location = cluster.url("faults")
    ok(run_cli(location, "config", "set", "poll_interval", POLL))
    ok(run_cli(location, "config", "set", "backoff_base", "1"))
    return location


def _marker_jobs(tmp_path: Path, count: int, prefix: str, work: float = 0.01) -> list[JobSpec]:
    markers = tmp_path / "markers"
    return [
        JobSpec(id=f"{prefix}{n}", command=f'echo "$QUEUECTL_JOB_ID" >> {markers}; sleep {work}')
        for n in range(count)
    ]


def _ran(tmp_path: Path) -> int:
    """How many runs the markers file counts so far."""
    markers = tmp_path / "markers"
    return len(markers.read_text().split()) if markers.exists() else 0


def _workers_of(url: str, count: int) -> list[dict[str, Any]]:
    """The workers `status --json` lists, once there are `count` of them (else [])."""
    workers: list[dict[str, Any]] = json.loads(ok(run_cli(url, "status", "--json")))["workers"]
    return workers if len(workers) == count else []


def _all_completed(location: str, count: int) -> bool:
    store = open_store(location)
    try:
        completed = store.counts().by_queue.get("default", {}).get(JobState.COMPLETED, 0)
        return completed == count
    finally:
        store.close()


def _check_ran_once(location: str, tmp_path: Path, ids: list[str]) -> None:
    """Every job completed with exactly one succeeded attempt, and ran exactly once."""
    runs = Counter((tmp_path / "markers").read_text().split())
    assert {job_id for job_id, n in runs.items() if n != 1} == set()
    assert set(runs) == set(ids)
    store = open_store(location)
    try:
        for job_id in ids:
            ends = [a.end for a in store.attempts(job_id)]
            assert ends.count(AttemptEnd.SUCCEEDED) == 1, (job_id, ends)
    finally:
        store.close()


def _listening(cluster: pgcluster.PgCluster) -> int:
    """How many connections to the test's database sit in LISTEN (one per idle worker)."""
    rows = cluster.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = 'faults' AND state = 'idle' AND query LIKE 'LISTEN %'"
    )
    return int(rows[0][0])


def _enqueue(location: str, specs: list[JobSpec]) -> list[str]:
    store = open_store(location)
    try:
        return api.enqueue(store, specs)
    finally:
        store.close()


def test_two_restarts_while_four_workers_drain_lose_nothing_and_run_nothing_twice(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    ids = _enqueue(url, _marker_jobs(tmp_path, DRAINED, "r"))
    with WorkerPool(url, 4, log=tmp_path / "workers.log") as pool:
        markers = tmp_path / "markers"

        def ran(count: int) -> bool:
            return markers.exists() and len(markers.read_text().split()) >= count

        for threshold in (DRAINED // 6, DRAINED // 2):
            wait_until(lambda: ran(threshold), timeout=60, message=f"{threshold} jobs ran")  # noqa: B023
            cluster.restart("fast")
        wait_until(lambda: _all_completed(url, DRAINED), 120, "all jobs completed")
        # The listeners came back: a new job is taken at once, not at the next poll.
        wait_until(lambda: _listening(cluster) == 4, timeout=30, message="4 listeners back")
        late = _enqueue(url, _marker_jobs(tmp_path, 1, "late"))
        wait_until(lambda: _all_completed(url, DRAINED + 1), PICKUP, "pickup via LISTEN")
        assert pool.stop() == 0
    _check_ran_once(url, tmp_path, ids + late)
    assert "works again" in pool.log_text()  # each outage logged, and its end


def test_a_server_stopped_for_30_seconds_then_started_again(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    ok(run_cli(url, "config", "set", "lease", OUTAGE_LEASE))
    log = tmp_path / "workers.log"
    before = _enqueue(url, _marker_jobs(tmp_path, 200, "a", work=0.05))
    with WorkerPool(url, 2, log=log) as pool:
        workers = wait_until(lambda: _workers_of(url, 2), 20, "two workers registered")
        ids = {w["id"] for w in workers}
        wait_until(lambda: _ran(tmp_path) >= 20, 30, "the first jobs to run")
        cluster.stop("fast")
        # The fault is the server's absence for OUTAGE seconds: a real wait, watched meanwhile.
        deadline = time.monotonic() + OUTAGE
        failed: Counter[str] = Counter()
        while time.monotonic() < deadline:
            assert pool.proc is not None and pool.proc.poll() is None, pool.log_text()
            assert all(alive(int(w["pid"])) for w in workers), pool.log_text()
            failed = Counter(FAILED.findall(log.read_text()))
            assert set(failed.values()) <= {1}, log.read_text()  # once, not once per retry
            time.sleep(0.5)
        assert failed == dict.fromkeys(ids, 1), log.read_text()
        assert not BACK.search(log.read_text()), log.read_text()
        assert sorted(pool.worker_pids()) == sorted(int(w["pid"]) for w in workers)
        cluster.start()
        after = _enqueue(url, _marker_jobs(tmp_path, 100, "b"))
        wait_until(lambda: _all_completed(url, 300), 60, "every job, before and after")
        wait_until(
            lambda: Counter(BACK.findall(log.read_text())) == dict.fromkeys(ids, 1),
            30,
            "each worker to log the end of the outage",
        )
        assert pool.stop() == 0
    text = log.read_text()
    assert Counter(FAILED.findall(text)) == dict.fromkeys(ids, 1), text
    assert Counter(BACK.findall(text)) == dict.fromkeys(ids, 1), text
    assert "Traceback" not in text, text
    _check_ran_once(url, tmp_path, before + after)


def test_killed_connections_are_reopened_and_the_listener_comes_back(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    with WorkerPool(url, 2, log=tmp_path / "workers.log") as pool:
        wait_until(
            lambda: len(json.loads(ok(run_cli(url, "status", "--json")))["workers"]) == 2,
            message="two workers registered",
        )
        wait_until(lambda: _listening(cluster) == 2, message="2 listeners")
        killed = cluster.terminate("faults", application_name="queuectl")
        assert killed >= 2 * 2  # at least each worker's main and listening connections
        wait_until(lambda: _listening(cluster) == 2, timeout=30, message="2 listeners back")
        jobs = _enqueue(url, _marker_jobs(tmp_path, 3, "k"))
        wait_until(lambda: _all_completed(url, 3), timeout=PICKUP, message="pickup via LISTEN")
        assert pool.stop() == 0
    _check_ran_once(url, tmp_path, jobs)
