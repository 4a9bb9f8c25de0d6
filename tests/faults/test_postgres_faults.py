"""PostgreSQL faults: server restarts and killed connections under running workers.

Each test has a cluster of its own (restarting the session's would disturb nothing else, but a
failed restart must not take the rest of the suite down with it). poll_interval is set to a
minute, so a job picked up within seconds after a restart proves that the workers' LISTEN
connections came back, not their polling.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from queuectl import api
from queuectl.models import AttemptEnd, JobSpec, JobState
from queuectl.store import open_store
from tests import pgcluster
from tests.helpers import WorkerPool, ok, run_cli, wait_until

POLL = "60"
"""poll_interval during these tests: far longer than any wait below."""
PICKUP = 10.0
"""Seconds within which a job enqueued after a fault must complete: LISTEN, not polling."""


@pytest.fixture
def url(cluster: pgcluster.PgCluster) -> str:
    cluster.create_database("faults")
    location = cluster.url("faults")
    ok(run_cli(location, "config", "set", "poll_interval", POLL))
    ok(run_cli(location, "config", "set", "backoff_base", "1"))
    return location


def _marker_jobs(tmp_path: Path, count: int, prefix: str) -> list[JobSpec]:
    markers = tmp_path / "markers"
    return [
        JobSpec(id=f"{prefix}{n}", command=f'echo "$QUEUECTL_JOB_ID" >> {markers}; sleep 0.01')
        for n in range(count)
    ]


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
    ids = _enqueue(url, _marker_jobs(tmp_path, 600, "r"))
    with WorkerPool(url, 4, log=tmp_path / "workers.log") as pool:
        markers = tmp_path / "markers"

        def ran(count: int) -> bool:
            return markers.exists() and len(markers.read_text().split()) >= count

        for threshold in (100, 300):
            wait_until(lambda: ran(threshold), timeout=60, message=f"{threshold} jobs ran")  # noqa: B023
            cluster.restart("fast")
        wait_until(lambda: _all_completed(url, 600), timeout=120, message="all jobs completed")
        # The listeners came back: a new job is taken at once, not at the next poll.
        wait_until(lambda: _listening(cluster) == 4, timeout=30, message="4 listeners back")
        late = _enqueue(url, _marker_jobs(tmp_path, 1, "late"))
        wait_until(lambda: _all_completed(url, 601), timeout=PICKUP, message="pickup via LISTEN")
        assert pool.stop() == 0
    _check_ran_once(url, tmp_path, ids + late)
    assert "works again" in pool.log_text()  # each outage logged, and its end


def test_a_server_stopped_for_a_while_then_started_again(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    with WorkerPool(url, 2, log=tmp_path / "workers.log") as pool:
        first = _enqueue(url, _marker_jobs(tmp_path, 5, "a"))
        wait_until(lambda: _all_completed(url, 5), timeout=PICKUP, message="first jobs")
        cluster.stop("fast")
        wait_until(lambda: "failed" in pool.log_text(), timeout=30, message="the outage noticed")
        cluster.start()
        later = _enqueue(url, _marker_jobs(tmp_path, 5, "b"))
        wait_until(lambda: _all_completed(url, 10), timeout=30, message="jobs after the outage")
        assert pool.stop() == 0
    _check_ran_once(url, tmp_path, first + later)


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
