"""A worker logs a store outage once when it starts and once when it ends, whatever its threads do.

A worker reaches its store from three places (its loop, its heartbeat thread, its maintenance
thread) and, on PostgreSQL, a fourth connection that LISTENs. When the server goes away all of
them fail, many times a second; the log must say so in one line, and in one more when the
store is back, with no traceback for what is an expected failure.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from queuectl.models import JobState
from queuectl.store import open_store
from tests import pgcluster
from tests.helpers import WorkerPool, enqueue_one, ok, run_cli, state_of, wait_until

FAILED = re.compile(r"worker w-\w+: the store failed")
BACK = re.compile(r"worker w-\w+: the store works again after [\d.]+s")
OUTAGE = 3.0
"""Seconds the server stays down: every part of the worker fails many times meanwhile."""


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_a_server_outage_is_logged_once_and_its_end_once(
    cluster: pgcluster.PgCluster, tmp_path: Path, busy: bool
) -> None:
    cluster.create_database("outage")
    url = cluster.url("outage")
    ok(run_cli(url, "config", "set", "lease", "30"))
    log = tmp_path / "worker.log"
    with WorkerPool(url, 1, log=log, db_in_env=True) as pool:
        store = open_store(url)
        try:
            wait_until(lambda: store.list_workers(), 20, "the worker")
            if busy:
                job = enqueue_one(store, command="sleep 4")
                wait_until(lambda: state_of(store, job) is JobState.PROCESSING, 20, "the job")
        finally:
            store.close()
        cluster.stop("fast")
        wait_until(lambda: FAILED.search(log.read_text()), 20, "the outage to be logged")
        time.sleep(OUTAGE)  # the fault's length, not a wait for something to happen
        cluster.start()
        wait_until(lambda: BACK.search(log.read_text()), 30, "the recovery to be logged")
        _enqueue_and_wait(url)
        assert pool.stop() == 0
    text = log.read_text()
    assert len(FAILED.findall(text)) == 1, text
    assert len(BACK.findall(text)) == 1, text
    assert "Traceback" not in text, text


def _enqueue_and_wait(url: str) -> None:
    """A job enqueued once the server is back completes (the worker really recovered)."""
    store = open_store(url)
    try:
        job = enqueue_one(store, command="true")
        wait_until(lambda: state_of(store, job) is JobState.COMPLETED, 30, "a job after")
    finally:
        store.close()
