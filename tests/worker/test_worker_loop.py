"""The worker loop in this process, on a real SQLite file.

One commit a job (finish and claim together), stops that meet a job claimed ahead, a heartbeat
that must not abort the wrong job, and checkpoints that keep the log short.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any, cast

from queuectl import api, heartbeat, models, worker
from queuectl.models import AttemptEnd, JobSpec, JobState
from queuectl.store import Store, open_store
from tests.helpers import wait_until


def _job(store: Store, job_id: str) -> models.Job:
    got = store.get_job(job_id)
    assert got is not None
    return got


def test_a_busy_worker_finishes_and_claims_in_one_go(db: str, store: Store):
    ids = api.enqueue(store, [JobSpec(id=f"j{i}", command="true") for i in range(3)])
    w = worker.Worker(db)
    conn = open_store(db)
    try:
        claim = conn.claim(w.id, w.info.host, None, 60)
        seen = []
        while claim is not None:
            seen.append(claim.job.id)
            claim = w._process(conn, claim)
    finally:
        conn.close()
    assert seen == ids  # each next job came back from the previous one's finish
    for job_id in ids:
        assert _job(store, job_id).state is JobState.COMPLETED
        assert [a.end for a in store.attempts(job_id)] == [AttemptEnd.SUCCEEDED]


def test_no_job_is_claimed_ahead_once_a_stop_is_asked(db: str, store: Store):
    api.enqueue(store, [JobSpec(id=f"j{i}", command="true") for i in range(3)])
    w = worker.Worker(db)
    conn = open_store(db)
    try:
        first = conn.claim(w.id, w.info.host, None, 60)
        assert first is not None
        w.request_stop("graceful")
        assert w._process(conn, first) is None
    finally:
        conn.close()
    assert _job(store, "j1").state is JobState.PENDING
    assert _job(store, "j2").state is JobState.PENDING


def test_stop_now_returns_a_job_claimed_ahead_without_starting_it(
    db: str, store: Store, tmp_path: Path
):
    marker = tmp_path / "ran"
    api.enqueue(store, [JobSpec(id="ahead", command=f"touch {marker}", max_retries=0)])
    w = worker.Worker(db)
    conn = open_store(db)
    try:
        claim = conn.claim(w.id, w.info.host, None, 60)
        assert claim is not None
        w.request_stop("now")  # as if it came just after the previous job's finish
        assert w._process(conn, claim) is None
    finally:
        conn.close()
    assert not marker.exists()
    job = _job(store, "ahead")
    assert (job.state, job.attempts) == (JobState.PENDING, 0)  # no retry spent
    [attempt] = store.attempts("ahead")
    assert attempt.end is AttemptEnd.SHUTDOWN
    assert attempt.error == "not started: the worker was stopped at once"


class _SwitchingStore:
    """A real store whose heartbeat returns only after the worker has moved to its next job."""

    def __init__(self, real: Store, on_heartbeat: Any) -> None:
        self._real = real
        self._on_heartbeat = on_heartbeat

    def heartbeat(self, *args: Any) -> models.HeartbeatReply:
        reply = self._real.heartbeat(*args)
        self._on_heartbeat()
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_late_lost_lease_report_does_not_abort_the_next_job(db: str, store: Store):
    api.enqueue(store, [JobSpec(id="old", command="true"), JobSpec(id="new", command="true")])
    w = worker.Worker(db)
    store.register_worker(w.info, 60)
    old = store.claim(w.id, w.info.host, None, 60)
    new = store.claim(w.id, w.info.host, None, 60)
    assert old is not None and new is not None
    store.release_worker(w.id)  # old's lease runs out and another worker rescues the job
    store.register_worker(w.info, 60)
    [expired, _] = store.expired_claims(10)
    out = models.Outcome(end=AttemptEnd.WORKER_LOST, started_at=store.now(), ended_at=store.now())
    assert store.rescue(expired, out, models.Transition(state=JobState.FAILED, attempts=1))
    beats = heartbeat.Heartbeat(w, db)
    w._hold(old, time.monotonic())

    def move_on() -> None:
        w._hold(new, time.monotonic())  # the main thread finished `old` and started `new`

    beats.beat(cast(Store, _SwitchingStore(store, move_on)), w.current())
    assert not w.job_abort.is_set()
    w._hold(old, time.monotonic())
    beats.beat(store, w.current())  # reported while `old` is still the current job: stopped
    assert w.job_abort.is_set()


def _log_generation(db_path: Path) -> bytes:
    """The WAL header's checkpoint sequence number and salts: they change when the log starts
    over (read from the file, so that looking has no effect on SQLite)."""
    with db_path.with_name(db_path.name + "-wal").open("rb") as wal:
        return wal.read(24)[12:24]


def test_the_maintenance_thread_checkpoints_so_the_log_starts_over(db_path: Path):
    # A connection that defers upkeep writes ~1,700 log pages: past SQLite's own threshold
    # (1,000), short of the deferring connections' safety net (4,000), so nothing checkpoints.
    writer = open_store(db_path)
    writer.defer_upkeep()
    api.enqueue(writer, [JobSpec(queue="elsewhere", command="true") for _ in range(40_000)])
    before = _log_generation(db_path)
    writer.set_config("poll_interval", "1")
    assert _log_generation(db_path) == before  # a write alone does not start the log over
    # An idle worker (not serving that queue): its maintenance thread's upkeep checkpoints.
    # The first beat, whose own commit could checkpoint too, comes only after lease / 3 = 10 s.
    w = worker.Worker(str(db_path), queues=["default"])
    runner = threading.Thread(target=w.run)
    runner.start()
    writes = itertools.count(2)
    try:

        def restarted() -> bool:
            # A write (of a new value: SQLite skips rewriting an unchanged row) after a full
            # checkpoint starts the log over.
            writer.set_config("poll_interval", str(next(writes)))
            return _log_generation(db_path) != before

        wait_until(restarted, 8, "the log to start over")
    finally:
        w.request_stop("graceful")
        runner.join(30)
        writer.close()


def test_a_beat_racing_the_finish_of_its_job_stops_nothing_and_warns_not(
    db: str, store: Store, caplog: Any
):
    api.enqueue(store, [JobSpec(id="j", command="true")])
    w = worker.Worker(db)
    store.register_worker(w.info, 60)
    claim = store.claim(w.id, w.info.host, None, 60)
    assert claim is not None
    w._hold(claim, time.monotonic())
    lease = w.current()  # the heartbeat reads the running claim...
    w._mark_ended(claim)  # ...the job ends, and its finish commits before the beat does
    now = store.now()
    done = models.Outcome(end=AttemptEnd.SUCCEEDED, started_at=now, ended_at=now)
    assert store.finish(claim, done, models.Transition(state=JobState.COMPLETED, attempts=1))
    heartbeat.Heartbeat(w, db).beat(store, lease)
    assert not w.job_abort.is_set()
    assert "lease was lost" not in caplog.text
