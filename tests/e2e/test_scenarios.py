"""The issue's scenarios, end to end: real worker processes on a real SQLite file."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from queuectl import api
from queuectl.models import AttemptEnd, JobSpec, JobState
from queuectl.store import Store
from tests.helpers import QUEUECTL, WorkerPool, enqueue_one, run_cli, state_of, wait_until


def _wait_state(store: Store, job_id: str, state: JobState, timeout: float = 20) -> None:
    wait_until(lambda: state_of(store, job_id) is state, timeout, f"{job_id} to be {state}")


def test_a_job_succeeds(db: str, store: Store):
    job = enqueue_one(store, id="ok", command="echo hello")
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.COMPLETED)
    [attempt] = store.attempts(job)
    assert attempt.end is AttemptEnd.SUCCEEDED
    assert attempt.stdout == b"hello\n"
    assert attempt.worker_id is not None and attempt.host


def test_failing_job_is_retried_with_backoff_then_dead(db: str, store: Store):
    api.set_config(store, "backoff_base", "1.5")
    job = enqueue_one(store, id="bad", command="exit 7", max_retries=2)
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.DEAD, timeout=30)
    attempts = store.attempts(job)
    assert [a.end for a in attempts] == [AttemptEnd.FAILED] * 3
    for n, (before, after) in enumerate(itertools.pairwise(attempts), start=1):
        gap = (after.started_at - before.ended_at).total_seconds()
        assert gap >= 1.5**n - 0.01, f"retry {n} came after {gap:.3f}s"
        assert gap < 1.5**n + 2.0, f"retry {n} came only after {gap:.3f}s"
    final = store.get_job(job)
    assert final is not None and final.last_error == "exit code 7"


def test_dlq_retry_revives_a_dead_job(db: str, store: Store, tmp_path: Path):
    flag = tmp_path / "flag"
    job = enqueue_one(store, id="flaky", command=f"test -e {flag}", max_retries=0)
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.DEAD)
        flag.touch()
        assert api.retry_dead(store, [job]) == [job]
        _wait_state(store, job, JobState.COMPLETED)
    assert [a.end for a in store.attempts(job)] == [AttemptEnd.FAILED, AttemptEnd.SUCCEEDED]


def test_two_workers_run_two_jobs_in_parallel(db: str, store: Store):
    jobs = [enqueue_one(store, command="sleep 1") for _ in range(2)]
    with WorkerPool(db, 2):
        for job in jobs:
            _wait_state(store, job, JobState.COMPLETED)
    [a], [b] = (store.attempts(job) for job in jobs)
    assert a.started_at < b.ended_at and b.started_at < a.ended_at, "the two runs did not overlap"
    assert a.worker_id != b.worker_id


def test_jobs_persist_across_a_worker_restart(db: str, store: Store):
    jobs = [enqueue_one(store, id=f"j{i}", command="sleep 0.2") for i in range(4)]
    with WorkerPool(db, 1) as pool:
        _wait_state(store, "j0", JobState.COMPLETED)
        assert pool.stop() == 0
    assert state_of(store, "j3") is JobState.PENDING
    with WorkerPool(db, 1):
        for job in jobs:
            _wait_state(store, job, JobState.COMPLETED)
    assert all(len(store.attempts(job)) == 1 for job in jobs)


def test_invalid_command_fails_cleanly_into_the_dlq(db: str, store: Store):
    job = enqueue_one(store, command="no_such_command_queuectl", max_retries=1)
    api.set_config(store, "max_backoff", "0")
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.DEAD)
    attempts = store.attempts(job)
    assert [a.end for a in attempts] == [AttemptEnd.NOT_FOUND] * 2
    final = store.get_job(job)
    assert final is not None and final.last_error is not None and "not found" in final.last_error


def test_priority_and_run_at_are_honoured(db: str, store: Store):
    later = store.now() + timedelta(seconds=1.5)
    api.enqueue(
        store,
        [
            JobSpec(id="low", command="true", priority=0),
            JobSpec(id="high", command="true", priority=5),
            JobSpec(id="future", command="true", priority=9, run_at=later),
        ],
    )
    with WorkerPool(db, 1):
        for job in ("low", "high", "future"):
            _wait_state(store, job, JobState.COMPLETED)
    started = {job: store.attempts(job)[0].started_at for job in ("low", "high", "future")}
    assert started["high"] < started["low"]
    assert started["future"] >= later


def test_timeout_kills_a_job_and_its_children(db: str, store: Store, tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    job = enqueue_one(
        store, command=f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5, max_retries=0
    )
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.DEAD)
    [attempt] = store.attempts(job)
    assert attempt.end is AttemptEnd.TIMEOUT
    child = int(pidfile.read_text())
    wait_until(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), 5, "child to die")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigkilled_worker_job_is_recovered_and_never_runs_twice_at_once(
    db: str, store: Store, tmp_path: Path
):
    marker = tmp_path / "runs"
    job = enqueue_one(
        store, id="long", command=f"echo $$ >> {marker}; sleep 60; echo finished", timeout=1.5
    )
    with WorkerPool(db, 2) as pool:
        # The shell creates the file for `>>` before echo writes the pid: wait for the pid.
        wait_until(lambda: marker.exists() and marker.read_text().strip(), 10, "the job's pid")
        holder = store.get_job(job)
        assert holder is not None and holder.worker_id is not None
        [owner] = [w for w in store.list_workers() if w.id == holder.worker_id]
        os.kill(owner.pid, signal.SIGKILL)
        first_pid = int(marker.read_text().split()[0])
        wait_until(lambda: len(store.attempts(job)) >= 2, 20, "the job to be retried")
        assert _zombie(first_pid) or not Path(f"/proc/{first_pid}").exists()
        _wait_state(store, job, JobState.FAILED, timeout=20)
        assert "died" in pool.log_text()
    attempts = store.attempts(job)
    assert attempts[0].end is AttemptEnd.WORKER_LOST
    assert attempts[1].end is AttemptEnd.TIMEOUT
    assert attempts[0].ended_at <= attempts[1].started_at


def test_lease_expiry_recovers_a_job_without_a_supervisor(db: str, store: Store, tmp_path: Path):
    """A bare worker (no supervisor to clean up) dies; its lease expires; another takes over."""
    api.set_config(store, "lease", "1")
    marker = tmp_path / "started"
    job = enqueue_one(store, id="j", command=f"touch {marker}; sleep 0.5", max_retries=3)
    lone = subprocess.Popen([QUEUECTL, "--db", db, "worker", "run"], stderr=subprocess.DEVNULL)
    try:
        wait_until(marker.exists, 10, "the job to start")
        lone.kill()
    finally:
        lone.wait()
    with WorkerPool(db, 1):
        _wait_state(store, job, JobState.COMPLETED)
    attempts = store.attempts(job)
    assert [a.end for a in attempts] == [AttemptEnd.WORKER_LOST, AttemptEnd.SUCCEEDED]
    final = store.get_job(job)
    assert final is not None and final.attempts == 2


def test_worker_stop_is_graceful(db: str, store: Store, tmp_path: Path):
    job = enqueue_one(store, id="slow", command="sleep 1; echo done")
    with WorkerPool(db, 2) as pool:
        wait_until(lambda: state_of(store, job) is JobState.PROCESSING, 10, "the job to start")
        result = run_cli(db, "worker", "stop")
        assert result.returncode == 0, result.stderr
        assert "stopped 2 of 2" in result.stdout
        assert pool.proc is not None and pool.proc.wait(timeout=10) == 0
    assert state_of(store, job) is JobState.COMPLETED
    assert store.list_workers() == []


def test_worker_stop_now_puts_the_job_back_without_counting(db: str, store: Store):
    job = enqueue_one(store, id="slow", command="sleep 60")
    with WorkerPool(db, 1):
        wait_until(lambda: state_of(store, job) is JobState.PROCESSING, 10, "the job to start")
        result = run_cli(db, "worker", "stop", "--now")
        assert result.returncode == 0, result.stderr
    final = store.get_job(job)
    assert final is not None
    assert (final.state, final.attempts) == (JobState.PENDING, 0)
    assert [a.end for a in store.attempts(job)] == [AttemptEnd.SHUTDOWN]


@pytest.mark.timeout(300)
def test_500_jobs_on_4_workers_each_run_exactly_once(db: str, store: Store, tmp_path: Path):
    log = tmp_path / "runs.log"
    api.enqueue(store, [JobSpec(id=f"j{i}", command=f"echo j{i} >> {log}") for i in range(500)])
    with WorkerPool(db, 4):
        wait_until(
            lambda: store.counts().total(JobState.COMPLETED) == 500, 120, "all 500 to complete"
        )
    lines = log.read_text().split()
    assert sorted(lines) == sorted(f"j{i}" for i in range(500))
    assert all(len(store.attempts(f"j{i}")) == 1 for i in range(0, 500, 7))


def test_second_signal_stops_running_jobs_and_puts_them_back(db: str, store: Store):
    job = enqueue_one(store, id="slow", command="sleep 60")
    with WorkerPool(db, 1) as pool:
        wait_until(lambda: state_of(store, job) is JobState.PROCESSING, 10, "the job to start")
        assert pool.proc is not None
        pool.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "stopping (graceful)" in pool.log_text(), 10, "the graceful stop")
        assert state_of(store, job) is JobState.PROCESSING  # the first signal lets it finish
        pool.proc.send_signal(signal.SIGINT)
        assert pool.proc.wait(timeout=20) == 0
    final = store.get_job(job)
    assert final is not None
    assert (final.state, final.attempts) == (JobState.PENDING, 0)
    assert [a.end for a in store.attempts(job)] == [AttemptEnd.SHUTDOWN]


def test_an_idle_worker_is_woken_by_enqueue_long_before_poll_interval(db: str, store: Store):
    api.set_config(store, "poll_interval", "3600")
    with WorkerPool(db, 1):
        wait_until(lambda: store.list_workers(), 10, "the worker to register")
        wait_until(lambda: _idle_for_a_while(store), 10, "the worker to go idle")
        job = enqueue_one(store, command="true")
        _wait_state(store, job, JobState.COMPLETED, timeout=20)


def _idle_for_a_while(store: Store) -> bool:
    """The worker has finished its start-up sweep and sleeps on the wake-up socket."""
    workers = store.list_workers()
    return bool(workers) and all(w.job_id is None for w in workers)


def test_sigterm_stops_an_idle_worker_at_once_even_with_a_long_poll_interval(db: str, store: Store):
    api.set_config(store, "poll_interval", "3600")
    with WorkerPool(db, 2) as pool:
        wait_until(lambda: len(store.list_workers()) == 2, 10, "the workers to register")
        wait_until(lambda: "started" in pool.log_text(), 10, "the workers to start")
        assert pool.stop(timeout=20) == 0  # without the wake-up this would sleep for an hour
    assert store.list_workers() == []
