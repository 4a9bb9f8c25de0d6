"""Job control end to end through the real CLI, on both stores: cancel, kill, retry, delete,
wait, logs (running and -f), pause and resume, with real worker processes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from queuectl import api
from queuectl.models import AttemptEnd, JobState
from queuectl.store import Store
from tests.helpers import (
    QUEUECTL,
    WorkerPool,
    alive,
    enqueue_one,
    ok,
    run_cli,
    state_of,
    wait_until,
)


def _wait_state(store: Store, job_id: str, state: JobState, timeout: float = 20) -> None:
    wait_until(lambda: state_of(store, job_id) is state, timeout, f"{job_id} to be {state}")


def _pids(path: Path) -> list[int]:
    """The pids a job wrote to `path`, once it has written them."""
    text = path.read_text() if path.exists() else ""
    return [int(word) for word in text.split()] if text.endswith("\n") else []


def _tree_job(pids: Path) -> str:
    """A job whose shell and a child of it run until killed; it writes both pids."""
    return f"sleep 300 & echo $$ $! > {pids}; wait"


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_pending_and_a_waiting_job_and_refuse_a_completed_one(db: str, store: Store):
    api.set_config(store, "backoff_base", "50")  # a failed attempt waits long for its retry
    pending = enqueue_one(store, id="later", command="true", delay=3600)
    waiting = enqueue_one(store, id="flaky", command="exit 3")
    done = enqueue_one(store, id="done", command="true")
    with WorkerPool(db, 1):
        _wait_state(store, waiting, JobState.FAILED)
        _wait_state(store, done, JobState.COMPLETED)
    out = ok(run_cli(db, "cancel", pending, waiting))
    assert out == "cancelled 2 job(s): later flaky\n"
    assert [state_of(store, j) for j in (pending, waiting)] == [JobState.CANCELLED] * 2
    refused = run_cli(db, "cancel", done)
    assert refused.returncode == 1
    assert refused.stderr == (
        'queuectl: error: job "done" is completed: only pending, failed, processing jobs can be'
        " cancelled\n"
    )
    assert state_of(store, done) is JobState.COMPLETED
    listed = json.loads(ok(run_cli(db, "list", "--state", "cancelled", "--json")))
    assert sorted(job["id"] for job in listed) == ["flaky", "later"]
    status = json.loads(ok(run_cli(db, "status", "--json")))
    assert status["jobs"]["cancelled"] == 2


def test_cancel_a_running_job_from_another_shell_stops_its_processes(
    db: str, store: Store, tmp_path: Path
):
    pids = tmp_path / "pids"
    job = enqueue_one(store, id="long", command=_tree_job(pids), max_retries=5)
    with WorkerPool(db, 1, env={"QUEUECTL_HOSTNAME": "another-host"}):
        shell, child = wait_until(lambda: _pids(pids), message="the job to start")
        started = time.monotonic()
        out = ok(run_cli(db, "cancel", job))
        assert out == "cancelled 1 job(s): long\n"
        wait_until(lambda: not alive(shell) and not alive(child), timeout=2, message="the job gone")
        assert time.monotonic() - started < 5
        job_row = store.get_job(job)
        assert job_row is not None
        assert (job_row.state, job_row.attempts) == (JobState.CANCELLED, 1)
        [attempt] = store.attempts(job)
        assert attempt.end is AttemptEnd.CANCELLED
        # Nothing runs it again: the worker is idle, the job stays cancelled.
        enqueue_one(store, id="next", command="true")
        _wait_state(store, "next", JobState.COMPLETED)
    assert [a.end for a in store.attempts(job)] == [AttemptEnd.CANCELLED]


def test_cancel_by_state_and_queue(db: str, store: Store):
    for n in range(3):
        enqueue_one(store, id=f"a{n}", command="true", queue="a", delay=3600)
    enqueue_one(store, id="b0", command="true", queue="b", delay=3600)
    out = ok(run_cli(db, "cancel", "--state", "pending", "--queue", "a"))
    assert out == "cancelled 3 job(s)\n"
    assert state_of(store, "b0") is JobState.PENDING


# --- kill ------------------------------------------------------------------------------------


def test_kill_sends_a_signal_and_the_retry_policy_applies(db: str, store: Store, tmp_path: Path):
    api.set_config(store, "backoff_base", "1")
    seen = tmp_path / "seen"
    pids = tmp_path / "pids"
    command = f"if [ -e {seen} ]; then exit 0; fi; touch {seen}; {_tree_job(pids)}"
    job = enqueue_one(store, id="k", command=command)
    with WorkerPool(db, 1):
        shell, child = wait_until(lambda: _pids(pids), message="the job to start")
        assert ok(run_cli(db, "kill", job, "--signal", "KILL")) == "sending SIGKILL to job k\n"
        wait_until(lambda: not alive(shell) and not alive(child), timeout=2, message="killed")
        _wait_state(store, job, JobState.COMPLETED)
    first, second = store.attempts(job)
    assert (first.end, first.signal) == (AttemptEnd.FAILED, 9)
    assert second.end is AttemptEnd.SUCCEEDED


def test_kill_of_a_job_that_is_not_running_fails(db: str, store: Store):
    job = enqueue_one(store, id="idle", command="true", delay=3600)
    refused = run_cli(db, "kill", job)
    assert refused.returncode == 1
    assert refused.stderr == 'queuectl: error: job "idle" is not running (it is pending)\n'


# --- retry and delete ------------------------------------------------------------------------


def test_retry_completed_dead_and_cancelled_jobs_keeps_their_history(db: str, store: Store):
    done = enqueue_one(store, id="done", command="true")
    dead = enqueue_one(store, id="dead", command="exit 1", max_retries=0)
    gone = enqueue_one(store, id="gone", command="true", delay=3600)
    ok(run_cli(db, "cancel", gone))
    with WorkerPool(db, 1):
        _wait_state(store, done, JobState.COMPLETED)
        _wait_state(store, dead, JobState.DEAD)
        assert ok(run_cli(db, "retry", done, dead, gone)) == "retried 3 job(s): done dead gone\n"
        _wait_state(store, done, JobState.COMPLETED)
        _wait_state(store, dead, JobState.DEAD)
        _wait_state(store, gone, JobState.COMPLETED)
    assert [a.number for a in store.attempts(done)] == [1, 2]
    assert [a.number for a in store.attempts(dead)] == [1, 2]
    pending = enqueue_one(store, id="p", command="true", delay=3600)
    refused = run_cli(db, "retry", pending)
    assert refused.returncode == 1
    assert "is pending: only completed, dead, cancelled jobs can be retried" in refused.stderr


def test_delete_removes_finished_jobs_and_refuses_a_running_one(
    db: str, store: Store, tmp_path: Path
):
    pids = tmp_path / "pids"
    done = [enqueue_one(store, id=f"d{n}", command="true") for n in range(3)]
    running = enqueue_one(store, id="r", command=_tree_job(pids))
    with WorkerPool(db, 1):
        wait_until(lambda: _pids(pids), message="the running job")
        for job_id in done:
            _wait_state(store, job_id, JobState.COMPLETED)
        refused = run_cli(db, "delete", running)
        assert refused.returncode == 1
        assert "is running: cancel it first" in refused.stderr
        assert ok(run_cli(db, "delete", "d0")) == "deleted 1 job(s): d0\n"
        assert store.get_job("d0") is None
        assert store.attempts("d0") == []
        assert ok(run_cli(db, "delete", "--state", "completed", "--older-than", "1h")) == (
            "deleted 0 job(s)\n"
        )
        assert ok(run_cli(db, "delete", "--state", "completed", "--older-than", "0")) == (
            "deleted 2 job(s)\n"
        )
        ok(run_cli(db, "cancel", running))
    assert ok(run_cli(db, "delete", running)) == "deleted 1 job(s): r\n"


def test_workers_delete_finished_jobs_past_their_retention(db: str, store: Store):
    done = [enqueue_one(store, id=f"c{n}", command="true") for n in range(3)]
    dead = enqueue_one(store, id="dead", command="false", max_retries=0)
    gone = enqueue_one(store, id="gone", command="true", delay=3600)
    ok(run_cli(db, "cancel", gone))
    with WorkerPool(db, 1):
        for job_id in done:
            _wait_state(store, job_id, JobState.COMPLETED)
        _wait_state(store, dead, JobState.DEAD)
    ok(run_cli(db, "config", "set", "keep_completed", "1s"))
    ok(run_cli(db, "config", "set", "keep_cancelled", "0"))  # kept for ever
    finished = max(state.updated_at for state in map(store.get_job, done) if state)
    wait_until(lambda: (store.now() - finished).total_seconds() > 1.1, message="a second to pass")
    with WorkerPool(db, 1):  # a worker purges at its first sweep, then every 10 s
        wait_until(
            lambda: all(store.get_job(job_id) is None for job_id in done),
            timeout=20,
            message="completed jobs deleted",
        )
    assert store.attempts("c0") == []
    assert state_of(store, dead) is JobState.DEAD
    assert state_of(store, gone) is JobState.CANCELLED


# --- wait ------------------------------------------------------------------------------------


def test_wait_exit_codes_and_timeout(db: str, store: Store):
    good = enqueue_one(store, id="good", command="true")
    bad = enqueue_one(store, id="bad", command="exit 1", max_retries=0)
    later = enqueue_one(store, id="later", command="true", delay=3600)
    with WorkerPool(db, 1):
        assert ok(run_cli(db, "wait", good, "--timeout", "30")) == "good: completed\n"
        failed = run_cli(db, "wait", good, bad, "--timeout", "30")
        assert (failed.returncode, failed.stdout) == (1, "good: completed\nbad: dead\n")
    started = time.monotonic()
    timed_out = run_cli(db, "wait", later, "--timeout", "0.5", "--json")
    assert time.monotonic() - started < 10
    assert (timed_out.returncode, json.loads(timed_out.stdout)) == (124, {"later": "pending"})
    unknown = run_cli(db, "wait", "nope")
    assert unknown.returncode == 1


def test_wait_returns_soon_after_the_job_ends(db: str, store: Store, tmp_path: Path):
    flag = tmp_path / "go"
    job = enqueue_one(store, id="j", command=f"while [ ! -e {flag} ]; do sleep 0.01; done")
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.PROCESSING)
        waiter = subprocess.Popen(
            [QUEUECTL, "--db", db, "wait", job], stdout=subprocess.PIPE, text=True
        )
        try:
            flag.touch()
            out, _ = waiter.communicate(timeout=30)
        finally:
            waiter.kill()
        assert (waiter.returncode, out) == (0, "j: completed\n")
    ended = store.attempts(job)[0].ended_at
    job_row = store.get_job(job)
    assert job_row is not None and job_row.updated_at >= ended


# --- logs of a running job -------------------------------------------------------------------


def test_logs_shows_a_running_jobs_output_and_follow_streams_it(
    db: str, store: Store, tmp_path: Path
):
    flag = tmp_path / "go"
    command = f"echo first; echo oops >&2; while [ ! -e {flag} ]; do sleep 0.05; done; echo last"
    job = enqueue_one(store, id="talk", command=command)
    with WorkerPool(db, 1):
        wait_until(
            lambda: "first" in run_cli(db, "logs", job).stdout, timeout=10, message="live output"
        )
        shown = ok(run_cli(db, "logs", job))
        assert shown == "== attempt 1: running ==\n-- stdout --\nfirst\n-- stderr --\noops\n"
        assert ok(run_cli(db, "logs", job, "--stderr")) == "oops\n"
        follower = subprocess.Popen(
            [QUEUECTL, "--db", db, "logs", "-f", job],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == "first\n"  # before the job has ended
            assert state_of(store, job) is JobState.PROCESSING
            flag.touch()
            out, err = follower.communicate(timeout=30)
        finally:
            follower.kill()
        assert follower.returncode == 0
        assert out == "last\n"
        assert err == "oops\nqueuectl: job talk is completed\n"
    assert ok(run_cli(db, "logs", job, "--stdout")) == "first\nlast\n"


def test_show_tells_the_running_attempt_its_host_pid_and_elapsed_time(
    db: str, store: Store, tmp_path: Path
):
    pids = tmp_path / "pids"
    job = enqueue_one(store, id="busy", command=_tree_job(pids), env={"K": "v"})
    with WorkerPool(db, 1, env={"QUEUECTL_HOSTNAME": "host-x"}):
        shell, _ = wait_until(lambda: _pids(pids), message="the job to start")
        shown = wait_until(
            lambda: (
                (got := json.loads(ok(run_cli(db, "show", job, "--json"))))["running"]["pid"]
                and got
            ),
            timeout=10,
            message="the running attempt's pid saved",
        )
        running = shown["running"]
        assert (running["attempt"], running["host"], running["pid"]) == (1, "host-x", shell)
        assert running["worker_id"].startswith("w-")
        assert running["elapsed"] > 0
        assert shown["env"] == {"K": "v"}
        assert shown["created_at"].endswith("+00:00")  # JSON: ISO-8601 UTC
        table = ok(run_cli(db, "show", job))
        assert f"attempt 1 on host-x ({running['worker_id']}, pid {shell})" in table
        assert '{"K": "v"}' in table
        ok(run_cli(db, "cancel", job))
    assert json.loads(ok(run_cli(db, "show", job, "--json")))["running"] is None


# --- pause and resume ------------------------------------------------------------------------


def test_a_paused_queue_holds_across_a_worker_restart(db: str, store: Store):
    assert ok(run_cli(db, "pause", "slow")) == "paused 1 queue(s): slow\n"
    held = enqueue_one(store, id="held", command="true", queue="slow")
    status = json.loads(ok(run_cli(db, "status", "--json")))
    assert list(status["paused"]) == ["slow"]
    for n in range(2):  # two worker runs: the pause is in the store, not in a worker
        with WorkerPool(db, 1):
            enqueue_one(store, id=f"free{n}", command="true")
            _wait_state(store, f"free{n}", JobState.COMPLETED)
            assert state_of(store, held) is JobState.PENDING
    with WorkerPool(db, 1):
        assert ok(run_cli(db, "resume", "slow")) == "resumed 1 queue(s): slow\n"
        _wait_state(store, held, JobState.COMPLETED, timeout=10)
    assert json.loads(ok(run_cli(db, "status", "--json")))["paused"] == {}


# --- burst workers and stopping some workers -------------------------------------------------


def test_burst_workers_run_what_is_due_then_exit_0(db: str, store: Store):
    ids = [enqueue_one(store, id=f"b{n}", command="true") for n in range(5)]
    later = enqueue_one(store, id="later", command="true", delay=3600)
    done = subprocess.run(
        [QUEUECTL, "--db", db, "worker", "start", "--count", "2", "--burst"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [state_of(store, job_id) for job_id in ids] == [JobState.COMPLETED] * 5
    assert state_of(store, later) is JobState.PENDING
    assert store.list_workers() == []
    assert done.stderr.count("exiting (--burst)") == 2


def _workers(db: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(ok(run_cli(db, "status", "--json")))["workers"]
    return found


def test_worker_stop_one_host_or_named_workers(db: str, store: Store):
    with (
        WorkerPool(db, 1, env={"QUEUECTL_HOSTNAME": "host-a"}) as a,
        WorkerPool(db, 2, env={"QUEUECTL_HOSTNAME": "host-b"}) as b,
    ):
        wait_until(lambda: len(_workers(db)) == 3, timeout=20, message="three workers")
        assert ok(run_cli(db, "worker", "stop", "--host", "host-a")) == "stopped 1 of 1 worker(s)\n"
        assert a.proc is not None and a.proc.wait(timeout=10) == 0
        hosts = sorted(str(w["host"]) for w in _workers(db))
        assert hosts == ["host-b", "host-b"]
        first = str(_workers(db)[0]["id"])
        assert ok(run_cli(db, "worker", "stop", first)) == "stopped 1 of 1 worker(s)\n"
        assert [w["id"] for w in _workers(db)] != [first]
        assert len(_workers(db)) == 1
        assert b.proc is not None and b.proc.poll() is None  # its other worker runs on
        unknown = run_cli(db, "worker", "stop", "w-nope")
        assert unknown.returncode == 1
        assert 'no worker with id "w-nope"' in unknown.stderr
        assert len(_workers(db)) == 1


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cancel"], "job: name the jobs"),
        (["cancel", "x", "--state", "pending"], "not both"),
        (["cancel", "--state", "completed"], "state: must be one of pending, failed, processing"),
        (["cancel", "x", "--timeout", "soon"], "timeout: must be seconds or a duration"),
        (["kill", "x", "--signal", "BOGUS"], "signal: must be a signal name"),
        (["retry"], "job: name the jobs"),
        (["retry", "--state", "pending"], "state: must be one of completed, dead, cancelled"),
        (["delete", "--state", "processing"], "state: must be one of"),
        (["delete", "--state", "completed", "--older-than", "7 days"], "older-than: must be"),
        (["wait", "x", "--timeout", "-1"], "timeout: must be a number of seconds >= 0"),
        (["pause"], "queue: name the queues"),
        (["pause", "bad queue"], "queue: must be 1-64 letters"),
        (["resume", "a", "--all"], "not both"),
        (["logs", "x", "-f", "--attempt", "1"], "attempt: --follow streams"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    db: str, store: Store, args: list[str], message: str
):
    job = enqueue_one(store, id="x", command="true", delay=3600)
    before = store.get_job(job)
    result = run_cli(db, *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("queuectl: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert store.get_job(job) == before
    assert store.paused_queues() == {}
