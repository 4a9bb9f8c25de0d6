"""Activity kept with every recorded attempt, on each backend: what `status` shows for the hour.

Each finish or rescue counts its attempt in its queue's row of the store's current minute, in
its own transaction; a finish that lost its lease counts nothing. On PostgreSQL the rows are a
log that compact_counts() folds: folding keeps the sums. Retention drops old minutes.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from queuectl import activity, api, models, retry
from queuectl.store import Store, is_postgres, sqlfile
from queuectl.store.postgres.store import PostgresStore
from tests.helpers import WorkerPool, wait_until
from tests.store.test_counts import pg_store, pg_url, raw
from tests.store.test_store import CFG, finish, lost, must_claim, new_job, outcome

__all__ = ["pg_store", "pg_url"]  # fixtures of the PostgreSQL-only tests below


Totals = tuple[dict[str, tuple[int, int]], dict[tuple[str, int], int]]


def totals(store: Store) -> Totals:
    """Over every kept minute: queue -> (completed, failed), and (queue, bucket) -> attempts."""
    seen = store.activity(store.now() - activity.KEEP)
    counts: dict[str, tuple[int, int]] = {}
    for m in seen.minutes:
        c, f = counts.get(m.queue, (0, 0))
        counts[m.queue] = (c + m.completed, f + m.failed)
    durations: dict[tuple[str, int], int] = {}
    for d in seen.durations:
        durations[(d.queue, d.bucket)] = durations.get((d.queue, d.bucket), 0) + d.n
    return counts, durations


def run_one(store: Store, job_id: str, end: models.AttemptEnd, queue: str = "default") -> None:
    store.enqueue([new_job(job_id, queue=queue, max_retries=0)])
    c = must_claim(store, queues=[queue])
    ok, _ = finish(store, c, end)
    assert ok


ONE_SECOND = activity.bucket(1.0)  # test_store.outcome: every attempt ran for one second


def test_each_finish_counts_its_attempt_in_its_queue(store):
    run_one(store, "ok1", models.AttemptEnd.SUCCEEDED)
    run_one(store, "ok2", models.AttemptEnd.SUCCEEDED)
    run_one(store, "bad", models.AttemptEnd.FAILED)
    run_one(store, "slow", models.AttemptEnd.TIMEOUT, queue="mail")
    run_one(store, "stopped", models.AttemptEnd.SHUTDOWN, queue="mail")
    run_one(store, "cancelled", models.AttemptEnd.CANCELLED, queue="mail")
    assert totals(store) == (
        {"default": (2, 1), "mail": (0, 1)},
        {("default", ONE_SECOND): 3, ("mail", ONE_SECOND): 1},
    )


def test_the_minute_is_the_stores_own(store):
    before = store.now()
    run_one(store, "j", models.AttemptEnd.SUCCEEDED)
    after = store.now()
    [row] = store.activity(before - timedelta(minutes=1)).minutes
    assert activity.minute_of(before) <= activity.minute_of(row.minute) <= activity.minute_of(after)
    assert row.minute == activity.minute_start(activity.minute_of(row.minute))


def test_a_finish_that_lost_its_lease_counts_nothing(store):
    store.enqueue([new_job("j")])
    c = must_claim(store, lease=0.001)
    [e] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(e, *lost(e, store))
    ok, _ = finish(store, c)  # the old worker reports, too late
    assert not ok
    # The rescue counted one failure, with no duration (a lost worker's end says nothing).
    assert totals(store) == ({"default": (0, 1)}, {})


def test_finish_and_claim_counts_the_finished_attempt(store):
    store.enqueue([new_job("a"), new_job("b")])
    c = must_claim(store)
    out = outcome(models.AttemptEnd.SUCCEEDED)
    transition = retry.next_transition(c.job, out, CFG, store.now())
    finished, following = store.finish_and_claim(c, out, transition, None, 60.0)
    assert finished and following is not None
    assert totals(store) == ({"default": (1, 0)}, {("default", ONE_SECOND): 1})


def test_since_leaves_earlier_minutes_out_and_prune_forgets_them(store):
    run_one(store, "j", models.AttemptEnd.SUCCEEDED)
    now = store.now()
    nothing = models.Activity(minutes=[], durations=[])
    assert store.activity(now + timedelta(minutes=2)) == nothing
    assert store.prune_activity(now - timedelta(minutes=5)) == 0
    kept = store.activity(now - timedelta(minutes=5))
    assert (len(kept.minutes), len(kept.durations)) == (1, 1)
    assert store.prune_activity(now + timedelta(minutes=2)) >= 1
    assert store.activity(now - timedelta(minutes=5)) == nothing


def test_status_summarises_the_last_hour(store):
    for index in range(3):
        run_one(store, f"ok{index}", models.AttemptEnd.SUCCEEDED)
    run_one(store, "bad", models.AttemptEnd.FAILED, queue="mail")
    snapshot = api.status(store)
    assert set(snapshot.activity) == {"default", "mail"}
    default = snapshot.activity["default"]
    assert (default.completed, default.failed) == (3, 0)
    assert default.minutes[-1].completed + default.minutes[-2].completed == 3
    assert default.p50 == default.p95 == pytest.approx(1.0, rel=0.045)
    assert (snapshot.activity["mail"].completed, snapshot.activity["mail"].failed) == (0, 1)


def test_workers_forget_activity_older_than_two_hours(store, db):
    old, new = activity.minute_of(store.now() - activity.KEEP) - 5, activity.minute_of(store.now())
    with raw(db) as conn:
        if is_postgres(db):
            conn.execute(
                "INSERT INTO activity (minute, queue, bucket, completed, failed)"
                " VALUES (%s, 'old', 3, 7, 0), (%s, 'new', 3, 1, 0)",
                [activity.minute_start(old), activity.minute_start(new)],
            )
        else:
            conn.execute(
                "INSERT INTO queuectl_activity VALUES (?, 'old', 3, 7, 0), (?, 'new', 3, 1, 0)",
                [old, new],
            )

    def queues() -> list[str]:
        return sorted(m.queue for m in store.activity(activity.minute_start(old)).minutes)

    assert queues() == ["new", "old"]
    with WorkerPool(db, 1):  # a worker's retention pass comes at its first sweep
        wait_until(lambda: queues() == ["new"], timeout=20, message="the old minute forgotten")


# --- PostgreSQL's activity log ------------------------------------------------------------------


def log_rows(url: str) -> int:
    with raw(url) as conn:
        return int(conn.execute("SELECT count(*) FROM activity").fetchone()[0])


def test_folding_the_log_keeps_the_sums(pg_store: PostgresStore, pg_url: str) -> None:
    for index in range(20):
        run_one(pg_store, f"j{index}", models.AttemptEnd.SUCCEEDED)
        run_one(pg_store, f"f{index}", models.AttemptEnd.FAILED, queue="mail")
    before = totals(pg_store)
    assert log_rows(pg_url) == 40
    pg_store.compact_counts()
    assert totals(pg_store) == before
    assert log_rows(pg_url) <= 2 * 2  # a row per key (a minute may have turned: two)
    run_one(pg_store, "late", models.AttemptEnd.SUCCEEDED)  # added on top, folded next time
    pg_store.compact_counts()
    assert totals(pg_store) == (
        {"default": (21, 0), "mail": (0, 20)},
        {("default", ONE_SECOND): 21, ("mail", ONE_SECOND): 20},
    )
    assert log_rows(pg_url) <= 2 * 2


def test_a_fold_skips_rows_another_is_folding_and_never_waits(
    pg_store: PostgresStore, pg_url: str
) -> None:
    for index in range(5):
        run_one(pg_store, f"a{index}", models.AttemptEnd.SUCCEEDED)
    with raw(pg_url) as other, other.transaction():
        other.execute(sqlfile.load("queuectl.store.postgres")["compact_activity"].sql)
        for index in range(5):
            run_one(pg_store, f"b{index}", models.AttemptEnd.SUCCEEDED)
        done = threading.Event()

        def fold() -> None:
            pg_store.compact_counts()
            done.set()

        thread = threading.Thread(target=fold)
        thread.start()
        assert done.wait(10), "a fold waited for another"
        thread.join()
    assert totals(pg_store) == ({"default": (10, 0)}, {("default", ONE_SECOND): 10})
    pg_store.compact_counts()
    assert log_rows(pg_url) <= 2
