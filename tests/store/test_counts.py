"""Job counts kept with every change, so that `status` never counts the jobs table.

On each backend (`db`): after any sequence of the Store's verbs, counts() equals a GROUP BY over
the jobs table asked directly, and a bulk enqueue that fails leaves them as they were. On
PostgreSQL the counts are a log of deltas that compact_counts() folds: folding keeps the counts,
leaves at most one row per queue and state, and two foldings at once still keep them right.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuectl import config, errors, models, retry, worker
from queuectl.store import Store, is_postgres, location, open_store, sqlfile
from queuectl.store.postgres import store as pg
from queuectl.store.postgres.store import PostgresStore
from tests import pgcluster
from tests.conftest import TEMPLATE
from tests.helpers import wait_until

CFG = config.Config(max_backoff=0.0)  # a failed job is due again at once
QUEUES = ("default", "mail", "batch")
FAR = datetime(2999, 1, 1, tzinfo=UTC)
Counted = dict[str, dict[models.JobState, int]]


@contextlib.contextmanager
def raw(db: str) -> Iterator[Any]:
    """A connection of the test's own to the store's database (not through the store)."""
    if is_postgres(db):
        where = location.parse_postgres(db)
        with psycopg.connect(
            where.conninfo, options=f"-c search_path={where.schema}", autocommit=True
        ) as conn:
            yield conn
        return
    con = apsw.Connection(db)
    try:
        yield con
    finally:
        con.close()


def grouped(db: str) -> Counted:
    """What `status` used to count: a GROUP BY over every job."""
    table = "jobs" if is_postgres(db) else "queuectl_jobs"
    found: Counted = {}
    with raw(db) as conn:
        rows = conn.execute(f"SELECT queue, state, count(*) FROM {table} GROUP BY queue, state")  # noqa: S608
        for queue, state, n in rows.fetchall():
            found.setdefault(queue, {})[models.JobState(state)] = n
    return found


def delta_rows(db: str) -> list[tuple[str, str, int]]:
    """PostgreSQL's log of count deltas, as (queue, state, rows)."""
    with raw(db) as conn:
        rows = conn.execute(
            "SELECT queue, state, count(*) FROM count_deltas GROUP BY queue, state"
        ).fetchall()
    return [(str(q), str(s), int(n)) for q, s, n in rows]


def new_job(
    job_id: str, queue: str = "default", delay: float = -1.0, **extra: Any
) -> models.NewJob:
    fields: dict[str, Any] = {"max_retries": 1, "priority": 0, **extra}
    return models.NewJob(
        id=job_id,
        command="true",
        queue=queue,
        run_at=datetime.now(UTC) + timedelta(seconds=delay),
        timeout=None,
        cwd=None,
        env={},
        **fields,
    )


def outcome(end: models.AttemptEnd) -> models.Outcome:
    now = datetime.now(UTC)
    code = {models.AttemptEnd.SUCCEEDED: 0, models.AttemptEnd.FAILED: 1}.get(end)
    return models.Outcome(end=end, started_at=now, ended_at=now, exit_code=code)


ENDS = (
    models.AttemptEnd.SUCCEEDED,
    models.AttemptEnd.FAILED,
    models.AttemptEnd.TIMEOUT,
    models.AttemptEnd.NOT_FOUND,
    models.AttemptEnd.SHUTDOWN,
    models.AttemptEnd.CANCELLED,
)
"""Every way an attempt of a worker ends (worker_lost is a rescue's, below)."""

_ids = itertools.count()


def fresh(db: str, name: str) -> str:
    """Another, empty queue beside `db`: a new file, or a new schema in the same database."""
    return f"{db}?schema={name}" if is_postgres(db) else str(Path(db).with_name(f"{name}.db"))


class Verbs(RuleBasedStateMachine):
    """Every verb that changes a job's state, at random, on a real store of its own.

    No model of the jobs is needed: the invariant compares the store's counts with its own
    jobs table.
    """

    beside: str
    """The test's store location: each example's store is a fresh one beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.db = fresh(self.beside, f"example_{next(_ids)}")
        self.store = open_store(self.db)
        self.ids: list[str] = []
        self.claims: list[models.Claim] = []
        self.worker = f"w{next(_ids)}"

    def teardown(self) -> None:
        self.store.close()

    # --- helpers --------------------------------------------------------------------------------
    def pick_ids(self, picks: list[int]) -> tuple[str, ...]:
        return tuple(self.ids[p % len(self.ids)] for p in picks) if self.ids else ()

    def select(self, picks: list[int], whole: models.Selection | None) -> models.Selection:
        """`whole` (a selection by state) when drawn, else the jobs `picks` names."""
        return whole if whole is not None else models.Selection(ids=self.pick_ids(picks))

    def transition(
        self, claim: models.Claim, end: models.AttemptEnd
    ) -> tuple[models.Outcome, models.Transition]:
        out = outcome(end)
        return out, retry.next_transition(claim.job, out, CFG, self.store.now())

    # --- rules ----------------------------------------------------------------------------------
    @rule(queue=st.sampled_from(QUEUES), delayed=st.booleans())
    def enqueue_one(self, queue: str, delayed: bool) -> None:
        job_id = f"j{next(_ids)}"
        self.store.enqueue([new_job(job_id, queue, delay=3600.0 if delayed else -1.0)])
        self.ids.append(job_id)

    @rule(
        queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=12),
        clash=st.sampled_from([None, "within", "stored"]),
    )
    def enqueue_batch(self, queues: list[str], clash: str | None) -> None:
        batch = [new_job(f"j{next(_ids)}", queue) for queue in queues]
        if clash == "within":
            batch.append(new_job(batch[0].id, "mail"))
        elif clash == "stored" and (stored := self.store.list_jobs(models.JobFilter(), 1)):
            batch.append(new_job(stored[0].id, "batch"))
        else:
            clash = None
        if clash is None:
            self.store.enqueue(batch)
            self.ids.extend(job.id for job in batch)
            return
        before = self.store.counts()
        with pytest.raises(errors.DuplicateJob):
            self.store.enqueue(batch)
        assert self.store.counts() == before

    @rule(
        queues=st.sampled_from([None, ["mail"], ["default", "batch"]]),
        lease=st.sampled_from([60.0, 0.0]),
    )
    def claim(self, queues: list[str] | None, lease: float) -> None:
        got = self.store.claim(self.worker, "host", queues, lease)
        if got is not None:
            self.claims.append(got)

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 100), end=st.sampled_from(ENDS), and_claim=st.booleans())
    def finish(self, pick: int, end: models.AttemptEnd, and_claim: bool) -> None:
        claim = self.claims.pop(pick % len(self.claims))  # stale claims change nothing: fine
        out, transition = self.transition(claim, end)
        if not and_claim:
            self.store.finish(claim, out, transition)
            return
        _, following = self.store.finish_and_claim(claim, out, transition, None, 60.0)
        if following is not None:
            self.claims.append(following)

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 100))
    def heartbeat(self, pick: int) -> None:
        claim = self.claims[pick % len(self.claims)]
        info = models.WorkerInfo(
            id=claim.worker_id,
            host="host",
            pid=1,
            queues=(),
            started_at=datetime.now(UTC),
            heartbeat_at=datetime.now(UTC),
        )
        self.store.heartbeat(info, claim, 60.0)

    @rule()
    def rescue_expired(self) -> None:
        self.store.release_worker(self.worker)  # its leases run out at once
        for claim in self.store.expired_claims(10):
            out, transition = self.transition(claim, models.AttemptEnd.WORKER_LOST)
            self.store.rescue(claim, out, transition)

    @rule(picks=st.lists(st.integers(0, 1000), max_size=4), by_state=st.booleans())
    def cancel(self, picks: list[int], by_state: bool) -> None:
        pending = models.Selection(states=(models.JobState.PENDING,), queue="mail")
        self.store.cancel(self.select(picks, pending if by_state else None))

    @rule(picks=st.lists(st.integers(0, 1000), max_size=4), dlq=st.booleans())
    def retry(self, picks: list[int], dlq: bool) -> None:
        dead = models.Selection(states=(models.JobState.DEAD,))
        self.store.retry(self.select(picks, dead if dlq else None))

    @rule(picks=st.lists(st.integers(0, 1000), max_size=3), by_state=st.booleans())
    def delete(self, picks: list[int], by_state: bool) -> None:
        cancelled = models.Selection(states=(models.JobState.CANCELLED,))
        self.store.delete(self.select(picks, cancelled if by_state else None))

    @rule()
    def purge_finished(self) -> None:
        cutoffs = {models.JobState.COMPLETED: FAR, models.JobState.CANCELLED: FAR}
        self.store.purge_finished(0, 1_000_000, cutoffs)

    @rule()
    def compact(self) -> None:
        self.store.compact_counts()

    # --- invariants -----------------------------------------------------------------------------
    @invariant()
    def counts_match_the_jobs_table(self) -> None:
        assert self.store.counts().by_queue == grouped(self.db)


@pytest.mark.timeout(600)
def test_counts_equal_a_group_by_after_any_sequence_of_verbs(db: str) -> None:
    class OnThisStore(Verbs):
        beside = db

    examples = 12 if is_postgres(db) else 25
    run_state_machine_as_test(
        OnThisStore,
        settings=settings(max_examples=examples, stateful_step_count=30, deadline=None),
    )


def test_a_bulk_enqueue_that_fails_leaves_counts_unchanged(store: Store, db: str) -> None:
    store.enqueue([new_job(f"a{i}", QUEUES[i % 3]) for i in range(30)])
    before = store.counts()
    assert before.total(models.JobState.PENDING) == 30
    for clash in ("a7", "new-twice"):
        batch = [new_job(f"b{i}", QUEUES[i % 3]) for i in range(1000)]
        batch[500:500] = [new_job("new-twice", "other"), new_job(clash, "other")]
        with pytest.raises(errors.DuplicateJob):
            store.enqueue(batch)
        assert store.counts() == before
        assert grouped(db) == before.by_queue


def test_a_change_of_queue_moves_its_count(store: Store, db: str) -> None:
    store.enqueue([new_job("a"), new_job("b")])
    table = "jobs" if is_postgres(db) else "queuectl_jobs"
    with raw(db) as conn:
        conn.execute(f"UPDATE {table} SET queue = 'moved' WHERE id = 'a'")  # noqa: S608
    assert store.counts().by_queue == {
        "default": {models.JobState.PENDING: 1},
        "moved": {models.JobState.PENDING: 1},
    }


def test_counts_of_many_jobs_in_many_queues(store: Store, db: str) -> None:
    store.enqueue([new_job(f"m{i}", f"q{i % 40}") for i in range(20_000)])
    claimed = [store.claim("w", "h", None, 60.0) for _ in range(50)]
    for c in claimed:
        assert c is not None
        out = outcome(models.AttemptEnd.SUCCEEDED)
        store.finish(c, out, retry.next_transition(c.job, out, CFG, store.now()))
    store.delete(models.Selection(states=(models.JobState.COMPLETED,)))
    counts = store.counts()
    assert counts.by_queue == grouped(db)
    assert counts.total(models.JobState.PENDING) == 20_000 - 50
    assert len(counts.by_queue) == 40


# --- PostgreSQL's delta log ---------------------------------------------------------------------


@pytest.fixture
def pg_url(pg_cluster: pgcluster.PgCluster) -> Iterator[str]:
    url = pgcluster.fresh_database(pg_cluster, TEMPLATE)
    yield url
    pg_cluster.drop_database(pgcluster.dbname_of(url))


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def churn(store: Store, prefix: str, n: int = 30) -> None:
    """Enqueue, claim and finish jobs one at a time: many small deltas."""
    for i in range(n):
        store.enqueue([new_job(f"{prefix}{i}", QUEUES[i % 3])])
    for i in range(n // 2):
        c = store.claim("w", "h", None, 60.0)
        assert c is not None
        end = models.AttemptEnd.SUCCEEDED if i % 3 else models.AttemptEnd.FAILED
        out = outcome(end)
        store.finish(c, out, retry.next_transition(c.job, out, CFG, store.now()))


def test_compaction_keeps_the_counts_and_leaves_one_row_per_queue_and_state(
    pg_store: PostgresStore, pg_url: str
) -> None:
    churn(pg_store, "a")
    before = pg_store.counts()
    assert before.by_queue == grouped(pg_url)
    assert max(n for _, _, n in delta_rows(pg_url)) > 1
    pg_store.compact_counts()
    assert pg_store.counts() == before
    after = delta_rows(pg_url)
    assert all(n == 1 for _, _, n in after), after
    kept = {(q, s) for q, s, _ in after}
    assert kept == {(q, s.value) for q, states in before.by_queue.items() for s in states}
    # What comes after is added on top, and folded by the next compaction.
    churn(pg_store, "b")
    assert pg_store.counts().by_queue == grouped(pg_url)
    pg_store.compact_counts()
    assert pg_store.counts().by_queue == grouped(pg_url)
    assert all(n == 1 for _, _, n in delta_rows(pg_url))


def test_a_compaction_skips_rows_another_is_folding_and_never_waits(
    pg_store: PostgresStore, pg_url: str
) -> None:
    churn(pg_store, "a")
    with raw(pg_url) as other, other.transaction():
        # The other compaction has folded (and holds) every row when this one starts.
        other.execute(sqlfile.load("queuectl.store.postgres")["compact_counts"].sql)
        churn(pg_store, "b", n=6)
        done = threading.Event()

        def compact() -> None:
            pg_store.compact_counts()
            done.set()

        thread = threading.Thread(target=compact)
        thread.start()
        assert done.wait(10), "a compaction waited for another"
        thread.join()
        assert pg_store.counts().by_queue == grouped(pg_url)  # the other's fold is not seen yet
    assert pg_store.counts().by_queue == grouped(pg_url)
    pg_store.compact_counts()
    assert all(n == 1 for _, _, n in delta_rows(pg_url))


def test_compactions_racing_each_other_and_the_workers_keep_counts_right(
    pg_store: PostgresStore, pg_url: str
) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def compact_until_stopped() -> None:
        store = open_store(pg_url)
        try:
            while not stop.is_set():
                store.compact_counts()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            store.close()

    compactors = [threading.Thread(target=compact_until_stopped) for _ in range(2)]
    for thread in compactors:
        thread.start()
    try:
        churn(pg_store, "a", n=200)
    finally:
        stop.set()
        for thread in compactors:
            thread.join(30)
    assert not failures
    assert pg_store.counts().by_queue == grouped(pg_url)
    pg_store.compact_counts()
    assert pg_store.counts().by_queue == grouped(pg_url)
    assert all(n == 1 for _, _, n in delta_rows(pg_url))


def test_a_copy_or_insert_on_the_server_is_counted_too(
    pg_store: PostgresStore, pg_url: str
) -> None:
    with raw(pg_url) as conn:
        conn.execute(
            "INSERT INTO jobs (id, command, queue, state, max_retries, run_at)"
            " SELECT 'g' || g, 'true', 'bulk', 'pending', 3, now()"
            " FROM generate_series(1, 500) AS g"
        )
    assert pg_store.counts().by_queue == {"bulk": {models.JobState.PENDING: 500}}
    assert delta_rows(pg_url) == [("bulk", "pending", 1)]  # one row for the whole statement


def test_a_running_workers_maintenance_folds_the_count_log(
    pg_store: PostgresStore, pg_url: str
) -> None:
    for i in range(20):
        pg_store.enqueue([new_job(f"j{i}", QUEUES[i % 3])])
    w = worker.Worker(pg_url)
    runner = threading.Thread(target=w.run)
    runner.start()
    try:
        wait_until(
            lambda: grouped(pg_url) == {q: {models.JobState.COMPLETED: 20 // 3 + (i < 2)}
                                        for i, q in enumerate(QUEUES)},
            message="the jobs to complete",
        )  # fmt: skip
        wait_until(
            lambda: all(n == 1 for _, _, n in delta_rows(pg_url)), message="the log to be folded"
        )
    finally:
        w.request_stop("graceful")
        runner.join(30)
    assert pg_store.counts().by_queue == grouped(pg_url)


def test_status_folds_a_long_log_itself(
    pg_store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without workers nobody compacts: status folds the log itself once it has grown long, and
    # only then (a short one it just reads).
    churn(pg_store, "a", n=30)
    rows = delta_rows(pg_url)
    assert pg_store.counts().by_queue == grouped(pg_url)
    assert delta_rows(pg_url) == rows
    monkeypatch.setattr(pg, "COMPACT_AT", sum(n for _, _, n in rows) - 1)
    assert pg_store.counts().by_queue == grouped(pg_url)
    assert all(n == 1 for _, _, n in delta_rows(pg_url))
