"""The worker's promise under faults (defects 1, 2, 3, 5, 6 and 8 of the reliability issue).

Real supervisors and workers on a real store (each backend; faults of a SQLite file on SQLite
alone). Each job takes an exclusive flock on a file of its own for as long as any of its
processes lives (children inherit the descriptor), so a second execution that starts while an
earlier one still runs cannot get it and writes "overlap": the kernel, not a clock, says whether
two runs of one job overlapped.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import apsw
import psycopg
import pytest

from queuectl import api
from queuectl.models import AttemptEnd, JobState
from queuectl.store import Store, is_postgres, location
from tests.helpers import WorkerPool, alive, enqueue_one, run_cli, state_of, wait_until


class History:
    """A job body that records each execution and detects overlapping ones."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "history"
        self.lock = tmp_path / "lock"

    def command(self, body: str) -> str:
        return (
            f"exec 9>{self.lock}; flock -n 9 || {{ echo overlap $QUEUECTL_ATTEMPT >> {self.path};"
            f" exit 99; }}; echo start $QUEUECTL_ATTEMPT $$ >> {self.path}; {body}; "
            f"echo end $QUEUECTL_ATTEMPT >> {self.path}"
        )

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines()]

    def starts(self) -> list[list[str]]:
        return [line for line in self.lines() if line[0] == "start"]

    def overlaps(self) -> list[list[str]]:
        return [line for line in self.lines() if line[0] == "overlap"]


def _runner_pid(store: Store, job_id: str) -> int:
    """The pid of the worker running `job_id`, once one does."""

    def find() -> int | None:
        job = store.get_job(job_id)
        for w in store.list_workers():
            if job is not None and job.worker_id == w.id and job.state is JobState.PROCESSING:
                return w.pid
        return None

    pid = wait_until(find, 20, f"a worker to run {job_id}")
    assert pid is not None
    return pid


def _ids(store: Store) -> set[str]:
    return {w.id for w in store.list_workers()}


def test_lowering_the_lease_under_load_never_runs_a_job_twice(
    db: str, store: Store, tmp_path: Path
):
    history = History(tmp_path)
    with WorkerPool(db, 2):
        wait_until(lambda: len(_ids(store)) == 2, 20, "two workers")
        api.set_config(store, "lease", "2")  # wakes the idle workers, which reload it at once
        job = enqueue_one(store, command=history.command("sleep 5"), max_retries=3)
        seen = set()

        def completed_after_a_look() -> bool:
            seen.add(len(_ids(store)))  # no worker may prune a live one, nor itself
            assert not history.overlaps(), history.lines()
            return state_of(store, job) is JobState.COMPLETED

        wait_until(completed_after_a_look, 30, "the job to complete")
    assert [a.end for a in store.attempts(job)] == [AttemptEnd.SUCCEEDED]
    assert [line[0] for line in history.lines()] == ["start", "end"]
    assert seen == {2}, f"status showed {seen} workers while both ran"


def test_a_frozen_worker_loses_its_job_which_never_runs_twice_at_once(
    db: str, store: Store, tmp_path: Path
):
    history = History(tmp_path)
    api.set_config(store, "lease", "2")
    with WorkerPool(db, 2):
        wait_until(lambda: len(_ids(store)) == 2, 20, "two workers")
        job = enqueue_one(store, command=history.command("sleep 6"), max_retries=3)
        frozen = _runner_pid(store, job)
        [first_pid] = [int(line[2]) for line in wait_until(history.starts, 10, "the start")]
        os.kill(frozen, signal.SIGSTOP)
        try:
            # Past its lease, another worker rescues the job: it kills the first execution's
            # processes on this host first, so the retry never overlaps them.
            wait_until(lambda: len(history.starts()) == 2, 20, "the job to run again")
            assert not alive(first_pid), "the frozen worker's job ran on beside its retry"
        finally:
            os.kill(frozen, signal.SIGCONT)
        # Thawed, it was forgotten (pruned) meanwhile: it registers again by itself.
        wait_until(lambda: len(_ids(store)) == 2, 10, "the thawed worker to be listed again")
        wait_until(lambda: state_of(store, job) is JobState.COMPLETED, 30, "the job to complete")
    assert not history.overlaps(), history.lines()
    ends = [a.end for a in store.attempts(job)]
    assert ends == [AttemptEnd.WORKER_LOST, AttemptEnd.SUCCEEDED], ends


def test_a_busy_worker_that_was_forgotten_registers_again_while_busy(
    db: str, store: Store, tmp_path: Path
):
    api.set_config(store, "lease", "2")
    with WorkerPool(db, 1):
        [worker_id] = wait_until(lambda: _ids(store), 20, "the worker")
        job = enqueue_one(store, command="sleep 30")
        _runner_pid(store, job)
        store.deregister_worker(worker_id)  # as a prune does, say after a suspended VM resumed
        wait_until(lambda: worker_id in _ids(store), 10, "the busy worker to be listed again")
        assert state_of(store, job) is JobState.PROCESSING
        stopped = run_cli(db, "worker", "stop", "--now", "--timeout", "20")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped 1 of 1" in stopped.stdout


def _supervisor_and_worker(store: Store, pool: WorkerPool) -> tuple[int, int]:
    [worker_pid] = wait_until(pool.worker_pids, 20, "the worker process")
    wait_until(lambda: worker_pid in {w.pid for w in store.list_workers()}, 20, "registration")
    return pool.pid, worker_pid


@pytest.mark.parametrize("rescuer", ["idle", "busy"])
def test_a_job_whose_supervisor_and_worker_were_killed_is_killed_then_rescued(
    db: str, store: Store, tmp_path: Path, rescuer: str
):
    history = History(tmp_path)
    api.set_config(store, "lease", "2")
    doomed = WorkerPool(db, 1, "--queue", "doomed", log=tmp_path / "doomed.log")
    with doomed, WorkerPool(db, 1, "--queue", "default", log=tmp_path / "other.log") as other:
        supervisor, worker_pid = _supervisor_and_worker(store, doomed)
        _supervisor_and_worker(store, other)
        job = enqueue_one(store, queue="doomed", command=history.command("sleep 6"), max_retries=3)
        wait_until(history.starts, 10, "the job to start")
        busy = None
        if rescuer == "busy":
            busy = enqueue_one(store, command="sleep 30")
            wait_until(lambda: state_of(store, busy) is JobState.PROCESSING, 10, "the other busy")
        [doomed_id] = [w.id for w in store.list_workers() if w.pid == worker_pid]
        os.kill(supervisor, signal.SIGKILL)
        os.kill(worker_pid, signal.SIGKILL)  # the job's processes live on, unsupervised
        [first_pid] = [int(line[2]) for line in history.starts()]
        assert alive(first_pid)
        # The other worker, idle or busy, rescues it once its lease has run out, killing the
        # orphaned execution first; and it forgets the dead worker.
        wait_until(lambda: store.attempts(job), 15, "the job to be rescued")
        assert not alive(first_pid), "the orphaned execution outlived the rescue"
        assert store.attempts(job)[0].end is AttemptEnd.WORKER_LOST
        wait_until(lambda: doomed_id not in _ids(store), 10, "the dead worker to be forgotten")
        if busy is not None:
            assert state_of(store, busy) is JobState.PROCESSING, "rescued only once free"
    assert not history.overlaps(), history.lines()


def test_a_stop_signal_during_a_workers_replacement_is_not_lost(db: str, store: Store):
    with WorkerPool(db, 1) as pool:
        [first] = wait_until(pool.worker_pids, 20, "the worker")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "died" in pool.log_text(), 10, "the supervisor to see the death")
        assert pool.proc is not None
        pool.proc.send_signal(signal.SIGTERM)  # while it waits to start the replacement
        assert pool.proc.wait(timeout=20) == 0
        wait_until(lambda: not pool.worker_pids(), 10, "no worker left")
    assert store.list_workers() == []


def test_a_worker_that_crashes_at_start_makes_the_supervisor_give_up(db_path: Path, store: Store):
    with WorkerPool(db_path, 1) as pool:
        [first] = wait_until(pool.worker_pids, 20, "the worker")
        wait_until(lambda: _ids(store), 20, "registration")
        # No longer a database (the same file, so its workers do not see it replaced): every
        # new worker dies at start.
        with db_path.open("r+b") as handle:
            handle.write(b"not a database, " * 256)
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        os.kill(first, signal.SIGKILL)
        assert pool.proc is not None
        assert pool.proc.wait(timeout=60) == 1
        log = pool.log_text()
    assert "giving up" in log
    assert log.count("starting another") < 6


def test_workers_stop_when_their_database_file_is_deleted(
    db_path: Path, store: Store, tmp_path: Path
):
    with WorkerPool(db_path, 2) as pool:
        wait_until(lambda: len(_ids(store)) == 2, 20, "two workers")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        assert pool.proc is not None
        assert pool.proc.wait(timeout=20) == 1
        assert "deleted or replaced" in pool.log_text()
        assert not pool.worker_pids()


@contextlib.contextmanager
def heartbeats_blocked(db: str) -> Iterator[None]:
    """Hold a lock that every heartbeat waits for: SQLite's write lock, or on PostgreSQL the
    workers table's (reads go on; the beat's UPDATE of its worker's row waits)."""
    if not is_postgres(db):
        locker = apsw.Connection(db)
        locker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        return
    where = location.parse_postgres(db)
    options = f"-c search_path={where.schema}"
    with (
        psycopg.connect(where.conninfo, options=options) as conn,
        conn.transaction(force_rollback=True),
    ):
        conn.execute("LOCK TABLE workers IN EXCLUSIVE MODE")
        yield


def test_the_lease_deadline_stops_a_job_even_while_the_heartbeat_waits_for_the_lock(
    db: str, store: Store, tmp_path: Path
):
    history = History(tmp_path)
    api.set_config(store, "lease", "2")
    with WorkerPool(db, 1) as pool:
        job = enqueue_one(store, command=history.command("sleep 30"), max_retries=3)
        [first] = wait_until(history.starts, 20, "the job to start")
        with heartbeats_blocked(db):
            wait_until(lambda: "ran out before a heartbeat" in pool.log_text(), 10, "the fence")
            wait_until(lambda: not alive(int(first[2])), 10, "the job's processes to stop")
        wait_until(lambda: len(history.starts()) == 2, 30, "the job to run again")
    assert not history.overlaps(), history.lines()
    assert store.attempts(job)[0].end is AttemptEnd.WORKER_LOST
