"""The heartbeat thread survives any store error, and a job whose lease lapsed stops (defect 7).

A real worker's state and a real store (each backend), with one fault injected: the heartbeat's
connection raises an error that is not StoreUnavailable (a bug in a driver, a corrupt page) for
a while. The thread must log it once and go on trying, and the running job must stop once its
lease has run out without renewal, because another worker may rescue it by then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import queuectl.store
from queuectl import api, config, heartbeat, models, worker
from queuectl.models import JobSpec
from queuectl.store import Store, open_store
from tests.helpers import wait_until


class _Fault:
    """Whether the injected fault is on, and how many beats were tried."""

    healed = False
    calls = 0


class _Broken:
    """A real store (opened in the heartbeat's thread) whose heartbeat raises until healed."""

    def __init__(self, real: Store, fault: _Fault) -> None:
        self.real = real
        self.fault = fault

    def heartbeat(self, *args: Any) -> models.HeartbeatReply:
        self.fault.calls += 1
        if not self.fault.healed:
            raise RuntimeError("injected: not a StoreUnavailable")
        return self.real.heartbeat(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_the_heartbeat_survives_any_error_logs_it_once_and_fences_the_job(
    db: str, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    api.set_config(store, "lease", "1")
    api.enqueue(store, [JobSpec(id="j", command="sleep 30")])
    w = worker.Worker(db)
    w.cfg = config.from_stored(store.get_config())
    assert w.cfg.lease == 1
    store.register_worker(w.info, 1)
    claim = store.claim(w.id, w.info.host, None, 1)
    assert claim is not None
    w._hold(claim, time.monotonic())
    broken = _Fault()
    monkeypatch.setattr(
        queuectl.store, "open_store", lambda *a, **k: _Broken(open_store(*a, **k), broken)
    )
    beats = heartbeat.Heartbeat(w, db)
    caplog.set_level(logging.ERROR, logger="queuectl.heartbeat")
    beats.start()
    try:
        # The lease (1 s) runs out with every beat failing: the executor's next look at the
        # worker (every 50 ms, in the main thread) stops the job.
        assert not w._should_abort()
        wait_until(w._should_abort, 5, "the job to be stopped once its lease lapsed")
        wait_until(lambda: broken.calls >= 5, 5, "the thread to keep trying")
        broken.healed = True
        calls = broken.calls
        wait_until(lambda: broken.calls > calls + 2, 5, "beats to go on after the fault")
    finally:
        w.exiting.set()
        beats.join()
    failures = [r for r in caplog.records if "the store failed (heartbeat)" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]


def test_a_lost_lease_stops_the_job_even_when_the_workers_row_is_gone(db: str, store: Store):
    api.enqueue(store, [JobSpec(id="j", command="sleep 30")])
    w = worker.Worker(db)
    store.register_worker(w.info, 60)
    claim = store.claim(w.id, w.info.host, None, 60)
    assert claim is not None
    w._hold(claim, time.monotonic())
    store.release_worker(w.id)  # pruned, and its claim rescued, while it was frozen
    [expired] = store.expired_claims(10)
    now = store.now()
    lost = models.Outcome(end=models.AttemptEnd.WORKER_LOST, started_at=now, ended_at=now)
    assert store.rescue(expired, lost, models.Transition(state=models.JobState.FAILED, attempts=1))
    beating = open_store(db)
    try:
        heartbeat.Heartbeat(w, db).beat(beating, w.current())
    finally:
        beating.close()
    assert w.job_abort.is_set()
    assert w.id in {info.id for info in store.list_workers()}  # and it registered again
