"""`wait` woken by its jobs' ends: Store.wait_for_jobs on each backend.

SQLite polls the file every 50 ms. PostgreSQL marks the waited jobs and LISTENs; migration 5's
trigger notifies when a waited job reaches a final state or is deleted, and only then. The
fallback interval is raised to an hour in these tests, so a return within the test's timeouts
can only be a notification.
"""

from __future__ import annotations

import threading

import pytest

from queuectl import api, models
from queuectl.models import JobState, Selection
from queuectl.store import Store, is_postgres, location, open_store
from queuectl.store.postgres import notify
from queuectl.store.postgres import store as pg
from tests import pgcluster
from tests.store.test_counts import raw
from tests.store.test_store import finish, must_claim, new_job

LONG = 3600.0


@pytest.fixture(autouse=True)
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL wait that is not notified would sleep for an hour."""
    monkeypatch.setattr(pg, "WAIT_FALLBACK", LONG)


def returns_soon(call: threading.Thread, within: float = 30.0) -> None:
    call.join(within)
    assert not call.is_alive(), f"still waiting after {within}s: no wake-up came"


def waiting(store: Store, job_ids: list[str]) -> threading.Thread:
    """wait_for_jobs in a thread of its own, started."""
    thread = threading.Thread(target=store.wait_for_jobs, args=(job_ids, LONG), daemon=True)
    thread.start()
    return thread


def test_a_wait_wakes_when_its_job_ends_elsewhere(store: Store, db: str) -> None:
    store.enqueue([new_job("j")])
    c = must_claim(store)
    store.wait_for_jobs(["j"], LONG)  # PostgreSQL: listens and marks the job, returns at once
    other = open_store(db)
    try:
        assert finish(other, c)[0]  # ends before or after the wait below starts: either wakes it
    finally:
        other.close()
    returns_soon(waiting(store, ["j"]))
    assert store.job_states(["j"]) == {"j": JobState.COMPLETED}


def test_a_wait_wakes_when_its_job_is_deleted(store: Store) -> None:
    store.enqueue([new_job("j")])
    store.wait_for_jobs(["j"], LONG)
    store.delete(Selection(ids=("j",)))
    returns_soon(waiting(store, ["j"]))


def test_api_wait_returns_on_the_end_not_a_poll(store: Store, db: str) -> None:
    store.enqueue([new_job("a"), new_job("b")])
    ca = must_claim(store)
    cb = must_claim(store)
    done: list[api.WaitResult] = []
    thread = threading.Thread(target=lambda: done.append(api.wait(store, ["a", "b"])))
    other = open_store(db)
    try:
        thread.start()
        assert finish(other, ca)[0]
        assert finish(other, cb, models.AttemptEnd.FAILED)[0]  # retried: not an end yet
        other.cancel(Selection(ids=("b",)))
    finally:
        other.close()
    returns_soon(thread)
    assert done[0].states == {"a": JobState.COMPLETED, "b": JobState.CANCELLED}


# --- PostgreSQL: what the trigger sends -----------------------------------------------------------


@pytest.fixture
def pg_db(db: str) -> str:
    if not is_postgres(db):
        pytest.skip("SQLite's wait polls: no notifications")
    return db


def test_only_waited_jobs_notify_and_only_when_they_end(store: Store, pg_db: str) -> None:
    schema = location.parse_postgres(pg_db).schema
    store.enqueue([new_job("plain"), new_job("waited")])
    store.wait_for_jobs(["waited"], LONG)
    with raw(pg_db) as listener:
        listener.execute(f'LISTEN "{notify.done_channel(schema)}"')
        plain = must_claim(store)
        waited = must_claim(store)
        assert plain.job.id == "plain"
        assert finish(store, plain)[0]  # nobody waits on it: nothing is sent
        assert finish(store, waited)[0]
        # Notifications come in commit order: the first one is the waited job's.
        first = next(listener.notifies(timeout=30))
        assert first.payload == "waited"


def test_a_wait_comes_back_after_its_connection_is_killed(
    store: Store, pg_db: str, pg_cluster: pgcluster.PgCluster
) -> None:
    store.enqueue([new_job("j")])
    c = must_claim(store)
    store.wait_for_jobs(["j"], LONG)
    dbname = pgcluster.dbname_of(pg_db)
    with raw(pg_db) as conn:
        [(pid,)] = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'LISTEN%%'",
            [dbname],
        ).fetchall()
    assert pg_cluster.terminate(pid=pid) == 1
    returns_soon(waiting(store, ["j"]))  # the lost listener: back at once (one maybe missed)
    assert finish(store, c)[0]  # and heard on the new connection
    returns_soon(waiting(store, ["j"]))


def test_a_second_wait_on_one_store_is_woken_for_its_new_jobs(store: Store, db: str) -> None:
    # A long-lived store (the dashboard's) waits for one job, then for another.
    store.enqueue([new_job("a"), new_job("b")])
    ca = must_claim(store)
    cb = must_claim(store)
    other = open_store(db)
    try:
        first = threading.Thread(target=lambda: api.wait(store, ["a"]))
        first.start()
        assert finish(other, ca)[0]
        returns_soon(first)
        done: list[api.WaitResult] = []
        second = threading.Thread(target=lambda: done.append(api.wait(store, ["b"])))
        second.start()
        assert finish(other, cb)[0]
    finally:
        other.close()
    returns_soon(second)
    assert done[0].states == {"b": JobState.COMPLETED}
