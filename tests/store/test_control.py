"""The store's job-control verbs on both backends: cancel, signal, retry, delete, pause, resume,
the requests a busy worker reads, and a running attempt's live output."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from queuectl import api, errors, models
from queuectl.models import AttemptEnd, JobState, Selection
from queuectl.store import Store
from tests.helpers import wait_until
from tests.store.test_store import finish, job, kill, lost, must_claim, new_job


def _states(store: Store, *ids: str) -> list[JobState]:
    return [job(store, job_id).state for job_id in ids]


def _failed_once(store: Store, job_id: str) -> None:
    """Run a job once, failing, so that it waits for its retry (state failed)."""
    c = must_claim(store)
    assert c.job.id == job_id
    ok, t = finish(store, c, AttemptEnd.FAILED)
    assert ok
    assert t.state is JobState.FAILED


def _live(**fields: object) -> models.LiveOutput:
    values: dict[str, object] = {
        "number": 1,
        "stdout": b"out",
        "stderr": b"err",
        "stdout_total": 3,
        "stderr_total": 3,
        "updated_at": datetime.now(UTC),
        **fields,
    }
    return models.LiveOutput(**values)  # type: ignore[arg-type]


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_ends_waiting_jobs_at_once_and_asks_a_running_ones_worker(store):
    store.enqueue([new_job("f"), new_job("r"), new_job("p"), new_job("c")])
    _failed_once(store, "f")  # f waits for its retry
    running = must_claim(store)
    done = must_claim(store)
    assert (running.job.id, done.job.id) == ("r", "p")
    assert finish(store, done)[0]  # p completed
    got = store.cancel(Selection(ids=("f", "r", "p", "c", "missing")))
    assert got == {"f": JobState.CANCELLED, "r": JobState.PROCESSING, "c": JobState.CANCELLED}
    assert _states(store, "f", "r", "p", "c") == [
        JobState.CANCELLED,
        JobState.PROCESSING,
        JobState.COMPLETED,
        JobState.CANCELLED,
    ]
    assert store.requests(running).control == models.CANCEL
    assert store.claim("w2", "h", None, 60) is None  # cancelled jobs are never claimed


def test_a_cancel_wins_over_the_retry_of_an_attempt_that_failed_meanwhile(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    store.cancel(Selection(ids=("j",)))
    ok, t = finish(store, c, AttemptEnd.FAILED)  # the worker decided "retry" before it saw it
    assert ok
    assert t.state is JobState.FAILED
    got = job(store, "j")
    assert (got.state, got.control) == (JobState.CANCELLED, None)
    assert [a.end for a in store.attempts("j")] == [AttemptEnd.FAILED]


def test_a_job_that_succeeded_as_it_was_cancelled_stays_completed(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    store.cancel(Selection(ids=("j",)))
    assert finish(store, c)[0]
    assert job(store, "j").state is JobState.COMPLETED


def test_a_cancelled_attempt_ends_the_job_without_a_retry(store):
    store.enqueue([new_job("j", max_retries=5)])
    c = must_claim(store)
    store.cancel(Selection(ids=("j",)))
    ok, t = finish(store, c, AttemptEnd.CANCELLED)
    assert ok
    assert t.state is JobState.CANCELLED
    assert job(store, "j").state is JobState.CANCELLED
    assert [a.end for a in store.attempts("j")] == [AttemptEnd.CANCELLED]


def test_a_dead_workers_cancelled_job_is_cancelled_by_its_rescue(store):
    store.enqueue([new_job("j")])
    must_claim(store, lease=0.001)
    store.cancel(Selection(ids=("j",)))
    [expired] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(expired, *lost(expired, store))
    assert job(store, "j").state is JobState.CANCELLED


def test_cancel_by_state_and_queue(store):
    store.enqueue([new_job("a1", queue="a"), new_job("a2", queue="a"), new_job("b1", queue="b")])
    got = store.cancel(Selection(states=(JobState.PENDING,), queue="a"))
    assert got == {"a1": JobState.CANCELLED, "a2": JobState.CANCELLED}
    assert job(store, "b1").state is JobState.PENDING


def test_api_cancel_refuses_a_finished_job_and_changes_nothing(store):
    store.enqueue([new_job("p"), new_job("done")])
    store.enqueue([new_job("later")])
    c = must_claim(store)
    assert c.job.id == "p"
    assert finish(store, c)[0]
    with pytest.raises(errors.QueuectlError, match='job "p" is completed: only pending'):
        api.cancel(store, Selection(ids=("done", "p")))
    with pytest.raises(errors.NotFound):
        api.cancel(store, Selection(ids=("done", "nope")))
    assert _states(store, "done", "later") == [JobState.PENDING, JobState.PENDING]


# --- signals and the requests a busy worker reads ----------------------------------------------


def test_a_signal_request_reaches_the_claim_and_is_spent_once_cleared(store):
    store.enqueue([new_job("j"), new_job("idle")])
    c = must_claim(store)
    assert store.requests(c) == models.Requests()
    assert store.signal("j", signal.SIGUSR1)
    control = store.requests(c).control
    assert control == f"signal:{int(signal.SIGUSR1)}"
    store.clear_control(c, control)
    assert store.requests(c).control is None
    assert not store.signal("idle", signal.SIGTERM)  # not running
    assert not store.signal("missing", signal.SIGTERM)


def test_a_signal_never_replaces_a_cancel(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    store.cancel(Selection(ids=("j",)))
    assert not store.signal("j", signal.SIGTERM)
    assert store.requests(c).control == models.CANCEL


def test_requests_carry_the_workers_stop_and_nothing_for_a_lost_claim(store):
    store.enqueue([new_job("j")])
    c = must_claim(store, lease=0.001)
    store.register_worker(
        models.WorkerInfo(
            id="w1",
            host="host-1",
            pid=1,
            queues=(),
            started_at=datetime.now(UTC),
            heartbeat_at=datetime.now(UTC),
        ),
        60,
    )
    store.request_stop(["w1"], "now")
    store.cancel(Selection(ids=("j",)))
    assert store.requests(c) == models.Requests(stop="now", control=models.CANCEL)
    [expired] = wait_until(lambda: store.expired_claims(10), message="the lease to expire")
    assert store.rescue(expired, *lost(expired, store))
    assert store.requests(c) == models.Requests(stop="now", control=None)


def test_a_new_claim_starts_without_an_old_request(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    assert store.signal("j", signal.SIGTERM)
    assert finish(store, c, AttemptEnd.SHUTDOWN)[0]  # back to pending, request unspent
    again = must_claim(store)
    assert store.requests(again).control is None


# --- retry and delete --------------------------------------------------------------------------


def test_retry_brings_back_completed_dead_and_cancelled_jobs_keeping_history(store):
    store.enqueue([new_job("d", max_retries=0)])
    kill(store, "d")
    store.enqueue(
        [new_job("c"), new_job("x"), new_job("p", run_at=datetime.now(UTC) + timedelta(hours=1))]
    )
    done = must_claim(store)
    assert done.job.id == "c"
    assert finish(store, done)[0]
    store.cancel(Selection(ids=("x",)))
    before = store.now()
    moved = store.retry(Selection(ids=("d", "c", "x", "p")))
    assert sorted(moved) == ["c", "d", "x"]
    for job_id in moved:
        got = job(store, job_id)
        assert (got.state, got.attempts) == (JobState.PENDING, 0)
        assert got.run_at >= before - timedelta(seconds=1)
    assert [a.end for a in store.attempts("d")] == [AttemptEnd.FAILED]
    assert job(store, "p").run_at > store.now()  # a pending job is left alone


def test_delete_removes_jobs_and_attempts_but_never_a_running_one(store):
    store.enqueue([new_job("d", max_retries=0)])
    kill(store, "d")
    store.enqueue([new_job("r"), new_job("p")])
    running = must_claim(store)
    assert running.job.id == "r"
    assert sorted(store.delete(Selection(ids=("d", "r", "p")))) == ["d", "p"]
    assert store.get_job("d") is None
    assert store.attempts("d") == []
    assert job(store, "r").state is JobState.PROCESSING
    with pytest.raises(errors.QueuectlError, match="cancel it first"):
        api.delete(store, Selection(ids=("r",)))


def test_delete_by_state_and_age(store):
    store.enqueue([new_job("old"), new_job("new")])
    for _ in range(2):
        assert finish(store, must_claim(store))[0]
    cut = store.now() + timedelta(seconds=1)
    assert (
        store.delete(Selection(states=(JobState.COMPLETED,), before=cut - timedelta(hours=1))) == []
    )
    assert sorted(store.delete(Selection(states=(JobState.COMPLETED,), before=cut))) == [
        "new",
        "old",
    ]


# --- retention -------------------------------------------------------------------------------


def test_purge_deletes_old_finished_jobs_window_by_window_and_keeps_the_rest(store):
    store.enqueue(
        [new_job(f"c{n}") for n in range(5)] + [new_job("x"), new_job("d", max_retries=0)]
    )
    for _ in range(5):
        assert finish(store, must_claim(store))[0]
    store.cancel(Selection(ids=("x",)))
    kill(store, "d")
    store.enqueue([new_job("p", run_at=datetime.now(UTC) + timedelta(hours=1))])
    first = job(store, "c0").seq
    later = store.now() + timedelta(seconds=1)
    before = {JobState.COMPLETED: later}  # cancelled jobs are kept
    step = store.purge_finished(first - 1, 2, before)
    assert (step.deleted, step.next_after) == (2, first + 1)
    assert [store.get_job(f"c{n}") is None for n in range(5)] == [True, True, False, False, False]
    step = store.purge_finished(step.next_after, 100, before)
    assert step.deleted == 3
    assert step.next_after == 0  # nothing beyond: back to the start next time
    assert {j.id for j in store.list_jobs(models.JobFilter(), 10)} == {"x", "d", "p"}
    assert store.purge_finished(0, 100, {JobState.CANCELLED: later}).deleted == 1
    assert store.attempts("c0") == []
    assert job(store, "d").state is JobState.DEAD  # dead jobs are kept until retried or deleted


def test_purge_starts_over_when_the_rest_is_too_new(store):
    store.enqueue([new_job("old"), new_job("new")])
    old = must_claim(store)
    assert finish(store, old)[0]
    cutoff = store.now() - timedelta(hours=1)  # both were created after it
    step = store.purge_finished(0, job(store, "old").seq, {JobState.COMPLETED: cutoff})
    assert (step.deleted, step.next_after) == (0, 0)


# --- pause and resume -------------------------------------------------------------------------


def test_a_paused_queue_is_not_claimed_until_resumed(store):
    soon = datetime.now(UTC) + timedelta(seconds=30)
    store.enqueue([new_job("a", queue="a", priority=9), new_job("b", queue="b")])
    store.enqueue([new_job("later", queue="a", run_at=soon)])
    store.pause(["a", "a"])
    assert list(store.paused_queues()) == ["a"]
    assert must_claim(store).job.id == "b"
    assert store.claim("w1", "h", None, 60) is None
    assert store.claim("w1", "h", ["a"], 60) is None
    assert store.next_run_at(None) is None  # a paused queue's jobs wake nobody
    assert store.resume(["a", "zzz"]) == ["a"]
    assert store.paused_queues() == {}
    assert store.next_run_at(None) is not None
    assert must_claim(store).job.id == "a"


def test_resume_all(store):
    store.pause(["x", "y"])
    assert sorted(store.resume(None)) == ["x", "y"]
    assert store.resume(None) == []


# --- live output and tags -------------------------------------------------------------------


def test_live_output_is_saved_while_the_claim_holds_and_dropped_at_finish(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    assert store.live_output("j") is None
    assert store.save_output(c, _live())
    assert store.save_output(c, _live(stdout=b"more", stdout_total=7))
    live = store.live_output("j")
    assert live is not None
    assert (live.number, live.stdout, live.stderr, live.stdout_total) == (1, b"more", b"err", 7)
    assert finish(store, c, stdout=b"all of it")[0]
    assert store.live_output("j") is None
    assert not store.save_output(c, _live())  # a finished claim saves nothing
    assert api.output(store, "j").stdout == b"all of it"


def test_api_output_of_a_running_job_is_its_live_output(store):
    store.enqueue([new_job("j")])
    c = must_claim(store)
    shown = api.output(store, "j")
    assert (shown.running, shown.number, shown.stdout) == (True, 1, b"")
    store.save_output(c, _live(stdout=b"so far"))
    assert api.output(store, "j").stdout == b"so far"


def test_tags_are_stored_and_read_back(store):
    store.enqueue([new_job("t", tags=("nightly", "db")), new_job("u")])
    assert job(store, "t").tags == ("nightly", "db")
    assert job(store, "u").tags == ()


def test_job_states_reads_every_named_job_at_once_and_leaves_out_unknown_ones(store):
    store.enqueue([new_job("a"), new_job("b"), new_job("c")])
    must_claim(store)  # a: processing
    store.cancel(models.Selection(ids=("c",)))
    assert store.job_states(["a", "b", "c", "nope"]) == {
        "a": models.JobState.PROCESSING,
        "b": models.JobState.PENDING,
        "c": models.JobState.CANCELLED,
    }
    assert store.job_states([]) == {}


def test_wait_says_not_found_for_a_job_deleted_while_it_waits(store):
    store.enqueue([new_job("stays"), new_job("goes")])

    def delete_then_sleep(seconds: float) -> None:
        store.delete(Selection(ids=("goes",)))

    with pytest.raises(errors.NotFound, match='no job with id "goes"'):
        api.wait(store, ["stays", "goes"], timeout=5, sleep=delete_then_sleep)


def test_wait_reads_the_states_of_all_its_jobs_in_one_look(store, monkeypatch):
    ids = [f"j{n}" for n in range(50)]
    store.enqueue([new_job(job_id) for job_id in ids])
    looks: list[int] = []
    real = store.job_states

    def counted(job_ids):
        looks.append(len(job_ids))
        return real(job_ids)

    monkeypatch.setattr(store, "job_states", counted)

    def finish_all_then_sleep(seconds: float) -> None:
        store.cancel(Selection(ids=tuple(ids)))

    result = api.wait(store, ids, timeout=5, sleep=finish_all_then_sleep)
    assert set(result.states.values()) == {JobState.CANCELLED}
    assert looks == [50]
