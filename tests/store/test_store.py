"""The Store contract on each backend: enqueue, claim, finish, rescue, workers, config."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw
import pytest

from queuectl import api, config, errors, models, retry
from queuectl.record import replace
from queuectl.store import Store, open_store
from tests.helpers import wait_until

LEASE = 60.0
CFG = config.Config(max_backoff=0.0)


def new_job(
    job_id: str,
    *,
    priority: int = 0,
    queue: str = "default",
    run_at: datetime | None = None,
    max_retries: int = 3,
    **extra: Any,
) -> models.NewJob:
    """A job due one second ago unless told otherwise."""
    fields: dict[str, Any] = {
        "command": f"echo {job_id}",
        "timeout": None,
        "cwd": None,
        "env": {},
        **extra,
    }
    return models.NewJob(
        id=job_id,
        queue=queue,
        priority=priority,
        run_at=run_at or datetime.now(UTC) - timedelta(seconds=1),
        max_retries=max_retries,
        **fields,
    )


def outcome(end: models.AttemptEnd = models.AttemptEnd.SUCCEEDED, **kwargs: Any) -> models.Outcome:
    now = datetime.now(UTC)
    if end is models.AttemptEnd.SUCCEEDED:
        kwargs.setdefault("exit_code", 0)
    elif end is models.AttemptEnd.FAILED:
        kwargs.setdefault("exit_code", 1)
    return models.Outcome(end=end, started_at=now - timedelta(seconds=1), ended_at=now, **kwargs)


def claim(
    store: Store, worker: str = "w1", queues: list[str] | None = None, lease: float = LEASE
) -> models.Claim | None:
    return store.claim(worker, "host-1", queues, lease)


def must_claim(store: Store, worker: str = "w1", **kwargs: Any) -> models.Claim:
    got = claim(store, worker, **kwargs)
    assert got is not None, "expected a runnable job"
    return got


def finish(
    store: Store, c: models.Claim, end: models.AttemptEnd = models.AttemptEnd.SUCCEEDED, **kw: Any
) -> tuple[bool, models.Transition]:
    out = outcome(end, **kw)
    transition = retry.next_transition(c.job, out, CFG, store.now())
    return store.finish(c, out, transition), transition


def job(store: Store, job_id: str) -> models.Job:
    got = store.get_job(job_id)
    assert got is not None, f"no job {job_id}"
    return got


def worker_info(worker_id: str, queues: tuple[str, ...] = ("default",)) -> models.WorkerInfo:
    now = datetime.now(UTC)
    return models.WorkerInfo(
        id=worker_id, host="host-1", pid=4242, queues=queues, started_at=now, heartbeat_at=now
    )


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_stores_every_field(store):
    run_at = datetime(2026, 1, 31, 9, 0, 0, 123456, tzinfo=UTC)
    store.enqueue(
        [
            new_job(
                "j1",
                priority=-4,
                queue="mail",
                run_at=run_at,
                max_retries=7,
                command="echo $A",
                timeout=2.5,
                cwd="/tmp",
                env={"A": "1", "B": "two words"},
            )
        ]
    )
    got = job(store, "j1")
    assert (got.id, got.command, got.queue, got.priority) == ("j1", "echo $A", "mail", -4)
    assert got.run_at == run_at
    assert (got.max_retries, got.timeout, got.cwd) == (7, 2.5, "/tmp")
    assert got.env == {"A": "1", "B": "two words"}
    assert got.state is models.JobState.PENDING
    assert (got.attempts, got.run_count) == (0, 0)
    assert got.worker_id is None
    assert got.lease_expires_at is None
    assert got.last_error is None
    assert abs(got.created_at - store.now()) < timedelta(seconds=10)
    assert got.created_at.tzinfo is not None
    assert store.get_job("nope") is None


def test_enqueue_keeps_enqueue_order_in_seq(store):
    store.enqueue([new_job("a"), new_job("b")])
    store.enqueue([new_job("c")])
    assert job(store, "a").seq < job(store, "b").seq < job(store, "c").seq
    # A big batch keeps its order too (it is inserted by one statement over a JSON array).
    ids = [f"z{i:05d}-{(i * 7919) % 10007}" for i in range(5000)]
    store.enqueue([new_job(i) for i in ids])
    listed = store.list_jobs(models.JobFilter(), 5000)
    assert [j.id for j in reversed(listed)] == ids


def test_enqueue_stores_text_and_numbers_exactly(store):
    tricky = "echo 'é ü 漢字 🚀' \\ \"q\" $HOME \t\n end"
    store.enqueue(
        [
            new_job("t1", command=tricky, timeout=2.5, priority=-(2**31), env={"K": "v ü"}),
            new_job("t2", command="x", timeout=30.0, priority=2**31 - 1, max_retries=10_000),
        ]
    )
    t1, t2 = job(store, "t1"), job(store, "t2")
    assert (t1.command, t1.timeout, t1.priority, t1.env) == (tricky, 2.5, -(2**31), {"K": "v ü"})
    assert (t2.timeout, t2.priority, t2.max_retries) == (30.0, 2**31 - 1, 10_000)
    assert isinstance(t2.timeout, float)


def test_api_enqueue_applies_configured_defaults(store, tmp_path):
    api.set_config(store, "max-retries", "7")
    api.set_config(store, "job_timeout", "5")
    ids = api.enqueue(
        store,
        [
            models.JobSpec(command="true", cwd="sub"),
            models.JobSpec(command="true", id="mine", max_retries=0, timeout=1.5),
        ],
        cwd=str(tmp_path),
    )
    assert ids[1] == "mine"
    first, second = job(store, ids[0]), job(store, "mine")
    assert (first.max_retries, first.timeout, first.cwd) == (7, 5.0, str(tmp_path / "sub"))
    assert (second.max_retries, second.timeout, second.cwd) == (0, 1.5, str(tmp_path))
    assert first.run_at <= store.now()


def test_api_enqueue_with_a_delay_is_not_due_yet(store):
    before = store.now()
    [job_id] = api.enqueue(store, [models.JobSpec(command="true", delay=3600)])
    got = job(store, job_id)
    assert before + timedelta(seconds=3600) <= got.run_at <= store.now() + timedelta(seconds=3600)
    assert claim(store) is None
    assert store.next_run_at(None) == got.run_at


def test_api_enqueue_with_an_impossible_delay_is_a_field_error(store):
    # 1e12 s is ~31,700 years: past datetime.max, so it cannot become a run_at.
    with pytest.raises(errors.FieldError) as info:
        api.enqueue(store, [models.JobSpec(command="true", delay=1e12)])
    assert info.value.field == "delay"
    assert store.counts().by_queue == {}


def test_a_batch_with_a_duplicate_id_inserts_nothing(store):
    with pytest.raises(errors.DuplicateJob) as info:
        store.enqueue([new_job("a"), new_job("b"), new_job("a")])
    assert info.value.job_id == "a"
    assert "line 3" in str(info.value)
    assert store.counts().by_queue == {}
    assert store.list_jobs(models.JobFilter(), 10) == []


def test_a_batch_clashing_with_a_stored_job_inserts_nothing(store):
    store.enqueue([new_job("x")])
    with pytest.raises(errors.DuplicateJob) as info:
        store.enqueue([new_job("y"), new_job("x", command="other"), new_job("z")])
    assert info.value.job_id == "x"
    assert "line 2" in str(info.value)
    assert store.get_job("y") is None
    assert store.get_job("z") is None
    assert job(store, "x").command == "echo x"
    assert store.counts().total(models.JobState.PENDING) == 1


def test_a_single_duplicate_has_no_line_number(store):
    store.enqueue([new_job("x")])
    with pytest.raises(errors.DuplicateJob) as info:
        store.enqueue([new_job("x")])
    assert info.value.job_id == "x"
    assert "line" not in str(info.value)


def test_api_enqueue_duplicate_names_the_id(store):
    api.enqueue(store, [models.JobSpec(command="true", id="dup")])
    with pytest.raises(errors.DuplicateJob) as info:
        api.enqueue(
            store,
            [models.JobSpec(command="true", id="new"), models.JobSpec(command="true", id="dup")],
        )
    assert info.value.job_id == "dup"
    assert store.get_job("new") is None


def test_jobs_survive_reopening(store, db):
    store.enqueue([new_job("kept", priority=3)])
    again = open_store(db)
    try:
        assert job(again, "kept").priority == 3
    finally:
        again.close()


# --- claim ------------------------------------------------------------------------------------


def test_claim_on_an_empty_store_is_none(store):
    assert claim(store) is None


def test_claim_order_is_priority_then_run_at_then_enqueue_order(store):
    now = datetime.now(UTC)
    same = now - timedelta(seconds=5)
    store.enqueue(
        [
            new_job("neg", priority=-1, run_at=now - timedelta(seconds=100)),
            new_job("mid-a", priority=1, run_at=same),
            new_job("high-new", priority=5, run_at=now - timedelta(seconds=1)),
            new_job("low-old", priority=0, run_at=now - timedelta(seconds=30)),
        ]
    )
    store.enqueue(
        [
            new_job("mid-b", priority=1, run_at=same),
            new_job("high-old", priority=5, run_at=now - timedelta(seconds=10)),
        ]
    )
    order = [must_claim(store).job.id for _ in range(6)]
    assert order == ["high-old", "high-new", "mid-a", "mid-b", "low-old", "neg"]
    assert claim(store) is None


def test_a_failed_job_due_again_competes_by_priority(store):
    store.enqueue([new_job("a", priority=1), new_job("b", priority=0)])
    first = must_claim(store)
    assert first.job.id == "a"
    ok, transition = finish(store, first, models.AttemptEnd.FAILED)
    assert ok
    assert transition.state is models.JobState.FAILED
    assert job(store, "a").state is models.JobState.FAILED
    assert must_claim(store).job.id == "a"  # failed with max_backoff 0: due again at once
    assert must_claim(store).job.id == "b"


def test_claim_leases_the_job(store):
    store.enqueue([new_job("j")])
    c = must_claim(store, "w9", lease=42.0)
    assert c.worker_id == "w9"
    assert c.job.state is models.JobState.PROCESSING
    assert (c.job.attempts, c.job.run_count) == (1, 1)
    got = job(store, "j")
    assert got.state is models.JobState.PROCESSING
    assert got.worker_id == "w9"
    assert got.lease_expires_at is not None
    lease = got.lease_expires_at - c.claimed_at
    assert timedelta(seconds=41.99) <= lease <= timedelta(seconds=42.01)
    assert claim(store) is None  # a leased job is not runnable


def test_future_job_is_not_claimed_until_due(store):
    due = datetime.now(UTC) + timedelta(seconds=0.3)
    store.enqueue([new_job("later", run_at=due), new_job("far", run_at=due + timedelta(hours=1))])
    assert store.next_run_at(None) == due
    c = wait_until(lambda: claim(store), timeout=10, message="the job to become due")
    assert c is not None
    assert c.job.id == "later"
    assert c.claimed_at >= due
    assert claim(store) is None
    assert store.next_run_at(None) == due + timedelta(hours=1)


def test_next_run_at_without_waiting_jobs_is_none(store):
    assert store.next_run_at(None) is None
    later = datetime.now(UTC) + timedelta(hours=1)
    store.enqueue([new_job("a", queue="a", run_at=later)])
    assert store.next_run_at(["b"]) is None
    assert store.next_run_at(["a"]) == later


def test_next_run_at_leaves_out_jobs_due_on_enqueue(store):
    store.enqueue([new_job("now")])  # due a second ago: claimable at once
    assert store.next_run_at(None) is None
    later = datetime.now(UTC) + timedelta(hours=1)
    store.enqueue([new_job("later", run_at=later)])
    assert store.next_run_at(None) == later
    c = must_claim(store)
    assert c.job.id == "now"
    ok, t = finish(store, c, models.AttemptEnd.FAILED)  # waiting for its retry now
    assert ok
    assert t.run_at is not None
    assert store.next_run_at(None) == min(t.run_at, later)


def test_claim_filters_by_queue(store):
    store.enqueue(
        [
            new_job("a1", queue="a", priority=9),
            new_job("b1", queue="b"),
            new_job("c1", queue="c", priority=1),
        ]
    )
    assert claim(store, queues=["x"]) is None
    assert must_claim(store, queues=["b"]).job.id == "b1"
    assert claim(store, queues=["b"]) is None
    assert must_claim(store, queues=["c", "b"]).job.id == "c1"
    assert must_claim(store, queues=None).job.id == "a1"


def test_concurrent_claims_never_share_a_job(store, db):
    ids = [f"job-{i:03d}" for i in range(200)]
    store.enqueue([new_job(i) for i in ids])
    start = threading.Barrier(4)

    def run(index: int) -> list[str]:
        own = open_store(db)  # one connection per thread, as one per process
        try:
            start.wait(timeout=10)
            got = []
            while (c := own.claim(f"w{index}", "host", None, LEASE)) is not None:
                got.append(c.job.id)
            return got
        finally:
            own.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(run, i) for i in range(4)]
        claimed = [f.result(timeout=60) for f in futures]
    every = [job_id for got in claimed for job_id in got]
    assert sorted(every) == ids  # each job claimed exactly once
    assert store.counts().total(models.JobState.PROCESSING) == 200
    for index, got in enumerate(claimed):
        for job_id in got:
            assert job(store, job_id).worker_id == f"w{index}"


# --- finish ---------------------------------------------------------------------------------------


def test_finish_records_the_attempt_and_completes(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j")])
    c = must_claim(store)
    assert store.list_workers()[0].job_id == "j"
    out = outcome(pid=123, stdout=b"out\x00put", stderr=b"err")
    t = retry.next_transition(c.job, out, CFG, store.now())
    assert store.finish(c, out, t)
    got = job(store, "j")
    assert got.state is models.JobState.COMPLETED
    assert got.worker_id is None
    assert got.lease_expires_at is None
    assert store.list_workers()[0].job_id is None
    [attempt] = store.attempts("j")
    assert attempt.number == 1
    assert attempt.end is models.AttemptEnd.SUCCEEDED
    assert (attempt.worker_id, attempt.host, attempt.pid) == ("w1", "host-1", 123)
    assert (attempt.exit_code, attempt.signal, attempt.error) == (0, None, None)
    assert (attempt.stdout, attempt.stderr) == (b"out\x00put", b"err")
    assert (attempt.started_at, attempt.ended_at) == (out.started_at, out.ended_at)
    assert attempt.duration == pytest.approx(1.0)


def test_finish_failure_sets_the_retry_time_and_error(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    out = outcome(models.AttemptEnd.FAILED, exit_code=3)
    later = store.now() + timedelta(seconds=30)
    t = models.Transition(
        state=models.JobState.FAILED, attempts=1, run_at=later, last_error="exit code 3"
    )
    assert store.finish(c, out, t)
    got = job(store, "j")
    assert got.state is models.JobState.FAILED
    assert got.run_at == later
    assert got.last_error == "exit code 3"
    assert got.attempts == 1
    assert claim(store) is None
    assert store.next_run_at(None) == later


def test_finish_with_a_stale_claim_changes_nothing(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    before = job(store, "j")
    stale_run = replace(c, job=replace(c.job, run_count=c.job.run_count + 1))
    stale_worker = replace(c, worker_id="impostor")
    wrong_job = replace(c, job=replace(c.job, seq=c.job.seq + 1))
    for stale in (stale_run, stale_worker, wrong_job):
        ok, _ = finish(store, stale)
        assert not ok
        assert job(store, "j") == before
        assert store.attempts("j") == []
    ok, _ = finish(store, c)
    assert ok
    again, _ = finish(store, c)  # a second finish of the same claim
    assert not again
    assert len(store.attempts("j")) == 1
    assert job(store, "j").state is models.JobState.COMPLETED


def test_finish_and_claim_records_one_job_and_leases_the_next(store):
    store.enqueue([new_job("a"), new_job("b", priority=5), new_job("c")])
    first = must_claim(store)
    assert first.job.id == "b"
    out = outcome(pid=7)
    t = retry.next_transition(first.job, out, CFG, store.now())
    finished, following = store.finish_and_claim(first, out, t, None, LEASE)
    assert finished
    assert job(store, "b").state is models.JobState.COMPLETED
    assert [a.pid for a in store.attempts("b")] == [7]
    assert following is not None
    assert following.job.id == "a"  # the same order as claim()
    assert (following.worker_id, following.host) == (first.worker_id, first.host)
    got = job(store, "a")
    assert (got.state, got.worker_id, got.run_count) == (models.JobState.PROCESSING, "w1", 1)
    assert got.lease_expires_at == following.claimed_at + timedelta(seconds=LEASE)


def test_finish_and_claim_filters_by_queue_and_returns_none_when_empty(store):
    store.enqueue([new_job("a", queue="q1"), new_job("b", queue="q2")])
    first = must_claim(store, queues=["q1"])
    out = outcome()
    t = retry.next_transition(first.job, out, CFG, store.now())
    finished, following = store.finish_and_claim(first, out, t, ["q1"], LEASE)
    assert finished
    assert following is None
    assert job(store, "b").state is models.JobState.PENDING


def test_finish_and_claim_with_a_lost_lease_still_claims(store):
    store.enqueue([new_job("a"), new_job("b")])
    first = must_claim(store, lease=0.001)
    [expired] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(expired, *lost(expired, store))
    out = outcome()
    t = retry.next_transition(first.job, out, CFG, store.now())
    finished, following = store.finish_and_claim(first, out, t, None, LEASE)
    assert not finished
    assert [a.end for a in store.attempts("a")] == [models.AttemptEnd.WORKER_LOST]
    assert following is not None
    assert following.job.id in {"a", "b"}
    assert job(store, following.job.id).state is models.JobState.PROCESSING


def test_shutdown_attempt_is_numbered_by_run_count(store):
    store.enqueue([new_job("j", max_retries=0)])
    first = must_claim(store)
    ok, t = finish(store, first, models.AttemptEnd.SHUTDOWN)
    assert ok
    assert t.state is models.JobState.PENDING
    got = job(store, "j")
    assert (got.state, got.attempts, got.run_count) == (models.JobState.PENDING, 0, 1)
    second = must_claim(store)
    assert (second.job.attempts, second.job.run_count) == (1, 2)
    ok, t = finish(store, second, models.AttemptEnd.FAILED)
    assert ok
    assert t.state is models.JobState.DEAD  # the shutdown did not use the only attempt
    history = store.attempts("j")
    assert [a.number for a in history] == [1, 2]
    assert [a.end for a in history] == [models.AttemptEnd.SHUTDOWN, models.AttemptEnd.FAILED]


# --- leases: expiry, rescue, heartbeat -----------------------------------------------------------


def lost(c: models.Claim, store: Store) -> tuple[models.Outcome, models.Transition]:
    out = outcome(models.AttemptEnd.WORKER_LOST, error="worker lost")
    return out, retry.next_transition(c.job, out, CFG, store.now())


def test_rescue_ignores_a_live_lease(store):
    store.enqueue([new_job("j")])
    c = must_claim(store, lease=LEASE)
    assert store.expired_claims(10) == []
    assert not store.rescue(c, *lost(c, store))
    assert job(store, "j").state is models.JobState.PROCESSING
    assert store.attempts("j") == []


def test_rescue_recovers_an_expired_lease(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j"), new_job("live")])
    c = must_claim(store, "w1", lease=0.001)
    must_claim(store, "w2", lease=LEASE)
    expired = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert [e.job.id for e in expired] == ["j"]
    [e] = expired
    assert (e.worker_id, e.host, e.job.run_count, e.claimed_at) == ("w1", "host-1", 1, c.claimed_at)
    assert store.rescue(e, *lost(e, store))
    got = job(store, "j")
    assert got.state is models.JobState.FAILED
    assert got.worker_id is None
    assert got.last_error == "worker lost"
    [attempt] = store.attempts("j")
    assert attempt.end is models.AttemptEnd.WORKER_LOST
    assert attempt.number == 1
    assert store.list_workers()[0].job_id is None
    # The old worker comes back and reports: too late.
    ok, _ = finish(store, c)
    assert not ok
    assert job(store, "j") == got
    assert len(store.attempts("j")) == 1
    # Rescuing twice does nothing either.
    assert not store.rescue(e, *lost(e, store))
    assert job(store, "live").state is models.JobState.PROCESSING


def test_a_rescued_job_is_claimed_again(store):
    store.enqueue([new_job("j", max_retries=1)])
    must_claim(store, "w1", lease=0.001)
    [e] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(e, *lost(e, store))
    again = must_claim(store, "w2")
    assert (again.job.attempts, again.job.run_count) == (2, 2)
    ok, t = finish(store, again, models.AttemptEnd.FAILED)
    assert ok
    assert t.state is models.JobState.DEAD
    assert [a.number for a in store.attempts("j")] == [1, 2]


def test_heartbeat_extends_the_lease(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j")])
    c = must_claim(store, "w1", lease=5)
    c = replace(c, lease=LEASE)  # taken for 5 s, then extended for LEASE
    reply = store.heartbeat(worker_info("w1"), c, LEASE)
    assert reply == models.HeartbeatReply(stop=None, lease_held=True)
    lease_end = job(store, "j").lease_expires_at
    assert lease_end is not None
    assert lease_end - store.now() > timedelta(seconds=LEASE - 5)
    # The lease was extended before anyone looked, so it is not rescued.
    assert store.expired_claims(10) == []
    assert not store.rescue(c, *lost(c, store))
    assert job(store, "j").state is models.JobState.PROCESSING


def test_a_lapsed_lease_is_neither_extended_nor_finished_only_rescued(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j")])
    c = must_claim(store, "w1", lease=0.001)
    [e] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    # A rescuer may be killing the job's processes now: a late beat must not revive the lease,
    # and a late finish must not record what those kills did to the job.
    reply = store.heartbeat(worker_info("w1"), c, LEASE)
    assert not reply.lease_held
    ok, _ = finish(store, c)
    assert not ok
    assert job(store, "j").state is models.JobState.PROCESSING
    assert store.rescue(e, *lost(e, store))
    assert [a.end for a in store.attempts("j")] == [models.AttemptEnd.WORKER_LOST]


def test_heartbeat_reports_a_lost_lease(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j")])
    c = must_claim(store, "w1", lease=0.001)
    [e] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(e, *lost(e, store))
    reply = store.heartbeat(worker_info("w1"), c, LEASE)
    assert reply == models.HeartbeatReply(stop=None, lease_held=False)
    assert job(store, "j").lease_expires_at is None
    assert job(store, "j").state is models.JobState.FAILED


def test_heartbeat_without_a_claim_and_for_unknown_workers(store):
    store.register_worker(worker_info("w1"), LEASE)
    idle = models.HeartbeatReply(stop=None, lease_held=False)
    assert store.heartbeat(worker_info("w1"), None, LEASE) == idle
    before = store.list_workers()[0].heartbeat_at
    wait_until(lambda: store.now() > before, message="the clock to move")
    store.heartbeat(worker_info("w1"), None, LEASE)
    assert store.list_workers()[0].heartbeat_at > before
    # A worker whose row is gone (pruned while it was frozen) is registered again.
    again = store.heartbeat(worker_info("ghost"), None, LEASE)
    assert again == models.HeartbeatReply(stop=None, lease_held=False, registered_again=True)
    assert [w.id for w in store.list_workers()] == ["w1", "ghost"]


def test_heartbeat_of_a_pruned_worker_still_checks_and_extends_its_lease(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.enqueue([new_job("j")])
    c = must_claim(store, "w1", lease=LEASE)
    store.deregister_worker("w1")  # as if pruned while frozen, its lease still live
    reply = store.heartbeat(worker_info("w1"), c, LEASE)
    assert reply == models.HeartbeatReply(stop=None, lease_held=True, registered_again=True)
    assert [w.id for w in store.list_workers()] == ["w1"]


def test_heartbeat_extends_by_the_claims_own_lease_not_the_workers(store):
    store.register_worker(worker_info("w1"), 3600)
    store.enqueue([new_job("j")])
    c = must_claim(store, "w1", lease=2)
    assert c.lease == 2
    store.heartbeat(worker_info("w1"), c, 3600)
    lease_end = job(store, "j").lease_expires_at
    assert lease_end is not None
    assert lease_end - store.now() < timedelta(seconds=2.5)
    [w] = store.list_workers()
    assert w.expires_at is not None and w.expires_at - store.now() > timedelta(seconds=3000)


def test_heartbeat_reports_a_stop_request(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.register_worker(worker_info("w2"), LEASE)
    assert store.stop_requested("w1") is None
    assert store.request_stop(["w1"], "graceful") == ["w1"]
    assert store.stop_requested("w1") == "graceful"
    assert store.stop_requested("w2") is None
    reply = store.heartbeat(worker_info("w1"), None, LEASE)
    assert reply is not None
    assert reply.stop == "graceful"
    assert sorted(store.request_stop(None, "now")) == ["w1", "w2"]
    assert store.stop_requested("w2") == "now"
    assert store.stop_requested("ghost") is None
    assert store.request_stop(["ghost"], "now") == []


def test_release_worker_makes_its_claims_rescuable_at_once(store):
    store.register_worker(worker_info("w1"), LEASE)
    store.register_worker(worker_info("w2"), LEASE)
    store.enqueue([new_job("a"), new_job("b")])
    must_claim(store, "w1", lease=LEASE)
    must_claim(store, "w2", lease=LEASE)
    store.release_worker("w1")
    assert [w.id for w in store.list_workers()] == ["w2"]
    [e] = wait_until(lambda: store.expired_claims(10), message="w1's lease to expire")
    assert (e.job.id, e.worker_id) == ("a", "w1")
    assert store.rescue(e, *lost(e, store))
    assert job(store, "b").state is models.JobState.PROCESSING


# --- dead letter queue ----------------------------------------------------------------------------


def kill(store: Store, job_id: str) -> None:
    """Run a max_retries=0 job once, failing, so that it is dead."""
    c = must_claim(store)
    assert c.job.id == job_id
    ok, t = finish(store, c, models.AttemptEnd.FAILED, exit_code=9)
    assert ok
    assert t.state is models.JobState.DEAD


def test_retry_dead_resets_the_budget_and_keeps_history(store):
    store.enqueue([new_job("d", max_retries=0, run_at=datetime.now(UTC) - timedelta(hours=1))])
    kill(store, "d")
    dead = job(store, "d")
    assert (dead.state, dead.attempts, dead.last_error) == (models.JobState.DEAD, 1, "exit code 9")
    before = store.now()
    assert store.retry(models.Selection(states=(models.JobState.DEAD,))) == ["d"]
    got = job(store, "d")
    assert got.state is models.JobState.PENDING
    assert got.attempts == 0
    assert before <= got.run_at <= store.now()
    assert len(store.attempts("d")) == 1
    again = must_claim(store)
    assert (again.job.id, again.job.attempts, again.job.run_count) == ("d", 1, 2)
    ok, t = finish(store, again, models.AttemptEnd.FAILED)
    assert ok
    assert t.state is models.JobState.DEAD  # the fresh budget is max_retries + 1 = 1 attempt
    assert [a.number for a in store.attempts("d")] == [1, 2]


def test_retry_dead_by_id_moves_only_dead_jobs(store):
    store.enqueue(
        [new_job("d1", max_retries=0, priority=2), new_job("d2", max_retries=0, priority=1)]
    )
    kill(store, "d1")
    kill(store, "d2")
    store.enqueue([new_job("p")])
    assert store.retry(
        models.Selection(ids=("d2", "p", "missing"), states=(models.JobState.DEAD,))
    ) == ["d2"]
    assert job(store, "d1").state is models.JobState.DEAD
    assert job(store, "d2").state is models.JobState.PENDING
    assert job(store, "p").state is models.JobState.PENDING
    assert store.retry(models.Selection(ids=("d2",), states=(models.JobState.DEAD,))) == []


def test_api_retry_dead_checks_every_id_first(store):
    store.enqueue([new_job("d", max_retries=0, priority=1), new_job("p")])
    kill(store, "d")
    with pytest.raises(errors.NotFound):
        api.retry_dead(store, ["d", "missing"])
    with pytest.raises(errors.QueuectlError, match="not in the dead letter queue"):
        api.retry_dead(store, ["d", "p"])
    assert job(store, "d").state is models.JobState.DEAD
    assert api.retry_dead(store, None) == ["d"]


# --- reading --------------------------------------------------------------------------------------


def test_counts_per_queue_and_state(store):
    assert store.counts().by_queue == {}
    store.enqueue(
        [new_job("a1", queue="a", priority=1), new_job("a2", queue="a"), new_job("b1", queue="b")]
    )
    must_claim(store, queues=["a"])
    counts = store.counts()
    assert counts.by_queue == {
        "a": {models.JobState.PENDING: 1, models.JobState.PROCESSING: 1},
        "b": {models.JobState.PENDING: 1},
    }
    assert counts.total(models.JobState.PENDING) == 2
    assert counts.total(models.JobState.DEAD) == 0


def test_list_jobs_newest_first_with_filters(store):
    store.enqueue([new_job(f"j{i}", queue="even" if i % 2 == 0 else "odd") for i in range(6)])
    everything = store.list_jobs(models.JobFilter(), 100)
    assert [j.id for j in everything] == ["j5", "j4", "j3", "j2", "j1", "j0"]
    assert [j.id for j in store.list_jobs(models.JobFilter(), 2)] == ["j5", "j4"]
    odd = store.list_jobs(models.JobFilter(queue="odd"), 100)
    assert [j.id for j in odd] == ["j5", "j3", "j1"]
    c = must_claim(store)
    processing = store.list_jobs(models.JobFilter(state=models.JobState.PROCESSING), 100)
    assert [j.id for j in processing] == [c.job.id]
    assert (
        store.list_jobs(models.JobFilter(state=models.JobState.PROCESSING, queue="none"), 9) == []
    )
    pending_even = store.list_jobs(
        models.JobFilter(state=models.JobState.PENDING, queue="even"), 100
    )
    assert all(j.queue == "even" and j.state is models.JobState.PENDING for j in pending_even)
    assert c.job.id not in [j.id for j in pending_even]


@pytest.mark.parametrize("state", list(models.JobState))
def test_list_jobs_by_state_is_newest_first_with_queue_and_limit(store, state):
    """Each state is listed by its own query (problem index, lease index, or a walk back)."""
    ids = [f"j{i}" for i in range(12)]
    retries = 0 if state is models.JobState.DEAD else 1
    store.enqueue(
        [new_job(i, queue="a" if n % 3 else "b", max_retries=retries) for n, i in enumerate(ids)]
    )
    ends = {
        models.JobState.COMPLETED: models.AttemptEnd.SUCCEEDED,
        models.JobState.FAILED: models.AttemptEnd.FAILED,
        models.JobState.DEAD: models.AttemptEnd.FAILED,
        models.JobState.CANCELLED: models.AttemptEnd.CANCELLED,
    }
    # Every job but the last two moves on: claimed, then finished (or left running).
    for _ in range(len(ids) - 2):
        c = must_claim(store)
        if state in ends:
            ok, _ = finish(store, c, ends[state])
            assert ok
    matching = [j for j in reversed(ids) if job(store, j).state is state]
    assert len(matching) >= 2, "the setup made too few jobs of this state"
    listed = store.list_jobs(models.JobFilter(state=state), 100)
    assert [j.id for j in listed] == matching
    assert [j.id for j in store.list_jobs(models.JobFilter(state=state), 3)] == matching[:3]
    in_b = store.list_jobs(models.JobFilter(state=state, queue="b"), 100)
    assert [j.id for j in in_b] == [j for j in matching if job(store, j).queue == "b"]


def test_api_list_jobs_checks_its_arguments(store):
    with pytest.raises(errors.FieldError) as info:
        api.list_jobs(store, limit=0)
    assert info.value.field == "limit"
    with pytest.raises(errors.FieldError) as info:
        api.list_jobs(store, queue="bad queue")
    assert info.value.field == "queue"


def test_attempts_of_an_unknown_job_are_empty(store):
    assert store.attempts("nope") == []


def test_store_clock_is_utc(store):
    now = store.now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


# --- workers --------------------------------------------------------------------------------------


def test_register_list_and_deregister_workers(store):
    store.register_worker(worker_info("w1", ("a", "b")), LEASE)
    store.register_worker(worker_info("w2"), LEASE)
    store.register_worker(worker_info("w1", ("a", "b")), LEASE)  # again: still one row
    workers = store.list_workers()
    assert [w.id for w in workers] == ["w1", "w2"]
    assert workers[0].queues == ("a", "b")
    assert (workers[0].host, workers[0].pid, workers[0].stop) == ("host-1", 4242, None)
    store.deregister_worker("w1")
    assert [w.id for w in store.list_workers()] == ["w2"]


def test_prune_forgets_only_workers_past_their_own_deadline(store):
    store.register_worker(worker_info("old"), 0.2)
    store.register_worker(worker_info("me"), 0.2)
    store.register_worker(worker_info("fresh"), 3600)
    assert store.prune_workers() == 0
    [old] = [w for w in store.list_workers() if w.id == "old"]
    assert old.expires_at is not None and not old.stale(store.now() - timedelta(seconds=1))
    wait_until(lambda: old.stale(store.now()), message="'old' to miss its deadline")
    assert store.prune_workers(exclude="me") == 1  # a worker never prunes itself
    assert [w.id for w in store.list_workers()] == ["me", "fresh"]
    assert store.prune_workers() == 1
    assert [w.id for w in store.list_workers()] == ["fresh"]


def test_new_work_wakes_an_idle_worker(store, db):
    store.register_worker(worker_info("w1"), LEASE)
    other = open_store(db)
    try:
        other.enqueue([new_job("j")])
    finally:
        other.close()
    started = time.monotonic()
    store.wait_for_work(30)
    assert time.monotonic() - started < 10, "the enqueue did not wake the listener"


def test_a_wake_up_says_work_only_when_nothing_else_came_with_it(store, db, backend):
    # True lets an idle worker claim without first asking whether it was told to stop, so it
    # must never be True for a stop request's wake-up, alone or among others.
    store.register_worker(worker_info("w1"), LEASE)
    work_only = backend == "postgres"  # SQLite's datagrams carry no reason: always False
    assert store.wait_for_work(0) is False  # the first wait connects: sent before it is lost
    other = open_store(db)
    try:
        other.enqueue([new_job("j")])
        assert store.wait_for_work(30) is work_only
        other.request_stop(["w1"], "graceful")
        assert store.wait_for_work(30) is False
        other.enqueue([new_job("k")])
        other.request_stop(["w1"], "graceful")
        other.enqueue([new_job("m")])
        assert store.wait_for_work(30) is False  # the stop came among work: still False
        assert store.wait_for_work(0) is False  # drained with it: a timeout now
    finally:
        other.close()


# --- config ---------------------------------------------------------------------------------------


def test_config_get_and_set(store, db):
    assert store.get_config() == {}
    store.set_config("lease", "12")
    store.set_config("max_retries", "1")
    store.set_config("lease", "15")
    assert store.get_config() == {"lease": "15", "max_retries": "1"}
    reopened = open_store(db)
    try:
        assert reopened.get_config() == {"lease": "15", "max_retries": "1"}
    finally:
        reopened.close()


def test_api_config_is_checked_and_canonical(store):
    assert api.get_config(store) == {key: getattr(config.Config(), key) for key in config.KEYS}
    assert api.set_config(store, "Max-Retries", "5") == ("max_retries", 5)
    assert api.set_config(store, "output-limit", "1MiB") == ("output_limit", 1024**2)
    assert api.set_config(store, "lease", "45.0") == ("lease", 45.0)
    assert store.get_config() == {"max_retries": "5", "output_limit": "1048576", "lease": "45"}
    with pytest.raises(errors.FieldError) as info:
        api.set_config(store, "max-retries", "-2")
    assert info.value.field == "max_retries"
    with pytest.raises(errors.UsageError):
        api.set_config(store, "colour", "red")
    assert store.get_config()["max_retries"] == "5"
    assert api.get_config(store)["max_retries"] == 5
    [job_id] = api.enqueue(store, [models.JobSpec(command="true")])
    assert job(store, job_id).max_retries == 5


def test_junk_stored_config_falls_back_to_defaults(store):
    store.set_config("max_retries", "garbage")
    store.set_config("unknown", "1")
    assert api.get_config(store)["max_retries"] == config.MAX_RETRIES


def test_generated_ids_are_unique_and_sort_by_creation_time():
    first = api.new_ids(1000)
    assert len(set(first)) == 1000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in first)
    assert first == sorted(first)  # one batch counts up (a wrap of 2**48 aside)
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started > 0.002, message="the clock to move on")
    later = api.new_ids(1)
    assert later[0][:12] > first[-1][:12]  # the millisecond prefix orders batches


def test_a_failed_wake_up_after_a_commit_is_not_an_error(store, db_path):
    # The wake-up addresses cannot be read (their table is gone): the committed work stands.
    with apsw.Connection(str(db_path)) as raw:
        raw.execute("DROP TABLE queuectl_workers")
    raw.close()
    store.enqueue([new_job("a", max_retries=1), new_job("b")])
    c = must_claim(store)
    out = outcome(models.AttemptEnd.FAILED)
    t = retry.next_transition(c.job, out, CFG, store.now())
    assert t.state is models.JobState.FAILED  # a retry: this finish wakes idle workers
    finished, following = store.finish_and_claim(c, out, t, None, LEASE)
    assert finished
    assert following is not None
    assert job(store, following.job.id).state is models.JobState.PROCESSING


def test_a_nul_character_in_a_text_column_is_refused_and_nothing_is_written(store):
    # SQLite's JSON functions would cut such text short, and PostgreSQL's text and jsonb cannot
    # hold it at all; the spec refuses it from users already, with the same message. PostgreSQL
    # looks for it only once the batch was refused (the look is off the path of a good batch),
    # so every field has_nul reads is here, each in a batch that also holds a good job.
    bad = [
        new_job("a", command="echo a\x00b"),
        new_job("c", cwd="/tmp/\x00"),
        new_job("d\x00"),
        new_job("f", env={"K": "v\x00w"}),
        new_job("g", env={"K\x00": "v"}),
        new_job("h", queue="q\x00"),
        new_job("i", tags=("t\x00",)),
    ]
    for job_ in bad:
        with pytest.raises(errors.UsageError, match="NUL"):
            store.enqueue([new_job("fine"), job_])
    assert store.list_jobs(models.JobFilter(), 10) == []
    store.enqueue([new_job("e", command=r"printf '\u0000 \\u0000'")])  # escapes, not NULs
    assert job(store, "e").command == r"printf '\u0000 \\u0000'"
