"""Many hosts on one PostgreSQL queue: three supervisors, 3,000 jobs from four enqueuers, one stop.

Three supervisors (`worker start --count 2`), each with a host name of its own
(QUEUECTL_HOSTNAME host-a, host-b, host-c), drain 3,000 jobs that four `queuectl enqueue --file`
processes add at the same time, two from files and two on stdin. Each job appends its id to a
markers file, a line per run, so the file says how often each job ran. Afterwards every job ran
exactly once and completed after exactly one attempt, which succeeded; every host ran some of
them. `status --json` lists the six workers on their three hosts, and one `queuectl worker stop`
from the CLI (no signal) stops all three supervisors, which exit 0 within seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from queuectl.models import AttemptEnd, JobState
from queuectl.store import open_store
from tests import pgcluster
from tests.conftest import TEMPLATE
from tests.helpers import QUEUECTL, WorkerPool, ok, run_cli, wait_until

HOSTS = ("host-a", "host-b", "host-c")
WORKERS_PER_HOST = 2
JOBS = 3_000
ENQUEUERS = 4
STOPPED_WITHIN = 10.0
"""Seconds within which one `worker stop` must have ended every supervisor."""


@pytest.fixture
def url(pg_cluster: pgcluster.PgCluster) -> Iterator[str]:
    """A fresh database on the session's cluster (this test is about PostgreSQL alone)."""
    location = pgcluster.fresh_database(pg_cluster, TEMPLATE)
    yield location
    pg_cluster.drop_database(pgcluster.dbname_of(location))


def _workers(url: str) -> list[dict[str, object]]:
    workers: list[dict[str, object]] = json.loads(ok(run_cli(url, "status", "--json")))["workers"]
    return workers


def _write_batches(tmp_path: Path, markers: Path) -> list[list[str]]:
    """The JSON lines of each enqueuer's batch; returns the ids of each."""
    batches: list[list[str]] = []
    for n in range(ENQUEUERS):
        ids = [f"m{n}-{i:04d}" for i in range(JOBS // ENQUEUERS)]
        lines = [
            json.dumps({"id": job_id, "command": f'echo "$QUEUECTL_JOB_ID" >> {markers}'})
            for job_id in ids
        ]
        (tmp_path / f"batch{n}.jsonl").write_text("\n".join(lines) + "\n")
        batches.append(ids)
    return batches


def _enqueue_concurrently(url: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """Four `queuectl enqueue` processes at once: two read a file, two read their stdin."""
    procs: list[tuple[subprocess.Popen[str], str | None]] = []
    for n in range(ENQUEUERS):
        batch = tmp_path / f"batch{n}.jsonl"
        on_stdin = n % 2 == 1
        proc = subprocess.Popen(
            [QUEUECTL, "--db", url, "enqueue", "--file", "-" if on_stdin else str(batch)],
            stdin=subprocess.PIPE if on_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((proc, batch.read_text() if on_stdin else None))
    results = []
    for proc, text in procs:
        stdout, stderr = proc.communicate(text, timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


@pytest.mark.timeout(300)
def test_three_hosts_share_one_queue_run_each_job_once_and_stop_together(
    url: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    batches = _write_batches(tmp_path, markers)
    ids = [job_id for batch in batches for job_id in batch]
    with ExitStack() as stack:
        pools = [
            stack.enter_context(
                WorkerPool(
                    url,
                    WORKERS_PER_HOST,
                    log=tmp_path / f"{host}.log",
                    env={"QUEUECTL_HOSTNAME": host},
                )
            )
            for host in HOSTS
        ]
        expected = len(HOSTS) * WORKERS_PER_HOST
        wait_until(lambda: len(_workers(url)) == expected, 30, f"{expected} workers registered")

        # The four enqueuers run while the six workers drain what the first ones added.
        for result in _enqueue_concurrently(url, tmp_path):
            assert (result.returncode, result.stderr) == (0, ""), result
            assert len(result.stdout.split()) == JOBS // ENQUEUERS, result  # the ids, one a line

        def completed() -> int:
            store = open_store(url)
            try:
                return store.counts().total(JobState.COMPLETED)
            finally:
                store.close()

        wait_until(lambda: completed() == JOBS, 180, f"all {JOBS} jobs completed", interval=0.2)

        # status --json: six workers, two on each host, each one of the pools' processes.
        workers = _workers(url)
        assert Counter(w["host"] for w in workers) == dict.fromkeys(HOSTS, WORKERS_PER_HOST)
        for host, pool in zip(HOSTS, pools, strict=True):
            listed = {w["pid"] for w in workers if w["host"] == host}
            assert listed == set(pool.worker_pids()), (host, workers)

        # One stop, from the CLI, for every host.
        started = time.monotonic()
        stopped = run_cli(url, "worker", "stop", "--timeout", str(STOPPED_WITHIN))
        assert ok(stopped) == f"stopped {expected} of {expected} worker(s)\n"
        wait_until(
            lambda: all(pool.proc is not None and pool.proc.poll() is not None for pool in pools),
            STOPPED_WITHIN,
            "the three supervisors to exit",
        )
        took = time.monotonic() - started
        codes = [pool.proc.returncode for pool in pools if pool.proc is not None]
        assert codes == [0] * len(HOSTS), [pool.log_text()[-2000:] for pool in pools]
    assert took < STOPPED_WITHIN
    assert _workers(url) == []

    runs = Counter(markers.read_text().split())
    assert {job_id: n for job_id, n in runs.items() if n != 1} == {}
    assert set(runs) == set(ids)
    store = open_store(url)
    try:
        assert store.counts().total(JobState.COMPLETED) == JOBS
        hosts: Counter[str | None] = Counter()
        for job_id in ids:
            attempts = store.attempts(job_id)
            assert [a.end for a in attempts] == [AttemptEnd.SUCCEEDED], (job_id, attempts)
            hosts[attempts[0].host] += 1
    finally:
        store.close()
    assert set(hosts) == set(HOSTS), hosts  # every host took part
