"""PostgreSQL faults: server restarts, a stopped server, killed connections, killed workers and a
dead host, under running workers.

Each test has a cluster of its own (restarting the session's would disturb nothing else, but a
failed restart must not take the rest of the suite down with it). poll_interval is set to a
minute, so a job picked up within seconds after a restart proves that the workers' LISTEN
connections came back, not their polling. Where a job may run twice, it takes an exclusive flock
on a file of its own for as long as any of its processes lives, so a second run that starts
while an earlier one still runs cannot get it and writes "overlap": the kernel says whether two
runs of one job overlapped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from queuectl import api, proctree
from queuectl.models import Attempt, AttemptEnd, JobSpec, JobState
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
BUSY_WORK = "sleep 10"
"""The surviving host's jobs: they still run well after the dead host's leases ran out (2 s)
and its jobs were rescued (within a sweep, 1 s, of that)."""
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


def _locked_job(tmp_path: Path, job_id: str, work: str, queue: str = "default") -> JobSpec:
    """A job that holds a flock of its own while it runs, and notes each start and end in
    `history` ("start ID ATTEMPT PID", "end ID ATTEMPT"), or "overlap ID ATTEMPT" and exit 99
    when an earlier run of it still holds the lock."""
    history = tmp_path / "history"
    command = (
        f"exec 9>{tmp_path / job_id}.lock; flock -n 9 || "
        f"{{ echo overlap $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT >> {history}; exit 99; }}; "
        f"echo start $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ >> {history}; {work}; "
        f"echo end $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT >> {history}"
    )
    return JobSpec(id=job_id, command=command, queue=queue, max_retries=3)


def _history(tmp_path: Path, job_id: str | None = None) -> list[list[str]]:
    """The lines of `history` (of one job when given), split into words."""
    path = tmp_path / "history"
    lines = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if job_id is None or line[1] == job_id]


def _started(tmp_path: Path, job_ids: list[str]) -> bool:
    """Whether each of these jobs has written its (latest) start line."""
    starts = {line[1] for line in _history(tmp_path) if line[0] == "start"}
    return starts.issuperset(job_ids)


def _workers_of(url: str, count: int) -> list[dict[str, Any]]:
    """The workers `status --json` lists, once there are `count` of them (else [])."""
    workers: list[dict[str, Any]] = json.loads(ok(run_cli(url, "status", "--json")))["workers"]
    return workers if len(workers) == count else []


def _attempts(location: str, job_id: str) -> list[Attempt]:
    store = open_store(location)
    try:
        return store.attempts(job_id)
    finally:
        store.close()


def _state(location: str, job_id: str) -> JobState:
    store = open_store(location)
    try:
        job = store.get_job(job_id)
        assert job is not None, job_id
        return job.state
    finally:
        store.close()


def _completed_total(location: str) -> int:
    store = open_store(location)
    try:
        return store.counts().total(JobState.COMPLETED)
    finally:
        store.close()


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


def test_a_worker_killed_mid_job_is_replaced_and_its_job_rescued_never_twice_at_once(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    ok(run_cli(url, "config", "set", "lease", "2"))  # a lost claim not released is rescued soon
    with WorkerPool(url, 2, log=tmp_path / "workers.log") as pool:
        wait_until(lambda: _workers_of(url, 2), 20, "two workers registered")
        [job] = _enqueue(url, [_locked_job(tmp_path, "victim", "sleep 3")])
        wait_until(lambda: _started(tmp_path, [job]), 10, "the job to start")
        shown = json.loads(ok(run_cli(url, "show", job, "--json")))
        assert shown["state"] == "processing", shown
        [runner] = [w for w in _workers_of(url, 2) if w["id"] == shown["worker_id"]]
        [[_, _, _, first_run]] = _history(tmp_path, job)
        os.kill(int(runner["pid"]), signal.SIGKILL)
        # The supervisor kills what the job left and releases its claim; the other worker
        # rescues it, and the supervisor starts a worker in the dead one's place.
        wait_until(lambda: len(_attempts(url, job)) >= 1, 15, "the job to be rescued")
        assert not alive(int(first_run)), "the first run outlived its rescue"
        wait_until(lambda: _completed_total(url) == 1, 30, "the rescued job to complete")
        replaced = wait_until(lambda: _workers_of(url, 2), 20, "two workers again")
        assert runner["id"] not in {w["id"] for w in replaced}
        assert sorted(pool.worker_pids()) == sorted(int(w["pid"]) for w in replaced)
        assert "died (signal 9); starting another" in pool.log_text()
        assert pool.stop() == 0
    ends = [a.end for a in _attempts(url, job)]
    assert ends == [AttemptEnd.WORKER_LOST, AttemptEnd.SUCCEEDED], ends
    assert [line[:3] for line in _history(tmp_path)] == [
        ["start", job, "1"],
        ["start", job, "2"],
        ["end", job, "2"],
    ]


def test_a_dead_hosts_jobs_are_rescued_by_another_hosts_busy_workers(
    cluster: pgcluster.PgCluster, url: str, tmp_path: Path
):
    ok(run_cli(url, "config", "set", "lease", "2"))
    survivor_log = tmp_path / "host-b.log"
    # host-a takes only queue "a", so the survivor's jobs go to host-b and host-a's to host-a.
    doomed = WorkerPool(
        url, 2, "--queue", "a", log=tmp_path / "host-a.log", env={"QUEUECTL_HOSTNAME": "host-a"}
    )
    survivor = WorkerPool(url, 2, log=survivor_log, env={"QUEUECTL_HOSTNAME": "host-b"})
    with survivor, doomed:
        wait_until(lambda: _workers_of(url, 4), 20, "four workers registered")
        busy = _enqueue(url, [_locked_job(tmp_path, f"busy{n}", BUSY_WORK) for n in range(2)])
        wait_until(lambda: _started(tmp_path, busy), 10, "host-b's workers to be busy")
        lost = _enqueue(url, [_locked_job(tmp_path, f"lost{n}", "sleep 3", "a") for n in range(2)])
        waiting = _enqueue(
            url, [_locked_job(tmp_path, f"waiting{n}", "sleep 0.1", "a") for n in range(10)]
        )
        wait_until(lambda: _started(tmp_path, lost), 10, "host-a's workers to run its jobs")
        # host-a dies: its supervisor, its workers and their jobs, all at once.
        assert proctree.kill_marked({"QUEUECTL_TEST_POOL": doomed.mark}) >= 1 + 2 + 2
        assert doomed.proc is not None and doomed.proc.wait(timeout=5) == -signal.SIGKILL
        # host-b's maintenance threads rescue the jobs once their leases run out, while its
        # workers are still busy.
        wait_until(lambda: all(_attempts(url, job_id) for job_id in lost), 15, "the rescues")
        assert all(_state(url, job_id) is JobState.PROCESSING for job_id in busy)
        wait_until(lambda: _completed_total(url) == 14, 60, "every job to complete")
        survivors = wait_until(lambda: _workers_of(url, 2), 15, "the dead host to be forgotten")
        assert {w["host"] for w in survivors} == {"host-b"}
        assert survivor.stop() == 0
    rescues = {
        m.group(1)
        for m in re.finditer(r"job (\S+) attempt 1: worker \S+ lost", survivor_log.read_text())
    }
    assert rescues == set(lost), survivor_log.read_text()
    busy_ended = min(_attempts(url, job_id)[0].ended_at for job_id in busy)
    for job_id in lost:
        first, second = _attempts(url, job_id)
        assert (first.end, first.host) == (AttemptEnd.WORKER_LOST, "host-a")
        assert (second.end, second.host) == (AttemptEnd.SUCCEEDED, "host-b")
        assert first.ended_at < busy_ended, "rescued only once host-b's workers were free"
    for job_id in busy + waiting:
        attempts = _attempts(url, job_id)
        assert [(a.end, a.host) for a in attempts] == [(AttemptEnd.SUCCEEDED, "host-b")]
    history = _history(tmp_path)
    assert not [line for line in history if line[0] == "overlap"], history
    for job_id in lost:
        assert [line[:3] for line in _history(tmp_path, job_id)] == [
            ["start", job_id, "1"],
            ["start", job_id, "2"],
            ["end", job_id, "2"],
        ]
