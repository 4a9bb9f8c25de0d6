"""`worker stop` leaves no worker running, even one that registered after its request.

A supervisor replacing a worker that died just as `worker stop` wrote its requests starts a worker
that was never asked; it must be asked too, or it runs on while `stop` reports success.
"""

from __future__ import annotations

from datetime import UTC, datetime

from queuectl import api, models
from queuectl.store import Store


def _info(worker_id: str) -> models.WorkerInfo:
    now = datetime.now(UTC)
    return models.WorkerInfo(
        id=worker_id, host="h", pid=1, queues=(), started_at=now, heartbeat_at=now
    )


def test_a_worker_registered_after_the_stop_request_is_asked_too(store: Store):
    store.register_worker(_info("old"), 60)
    ticks = 0

    def workers_react(seconds: float) -> None:
        """Each poll: workers asked to stop exit; on the first, a replacement registers."""
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            store.register_worker(_info("replacement"), 60)
        for worker in store.list_workers():
            if worker.stop is not None:
                store.deregister_worker(worker.id)

    result = api.stop_workers(store, timeout=10, sleep=workers_react)
    assert sorted(result.asked) == ["old", "replacement"]
    assert result.remaining == []
    assert store.list_workers() == []


def test_a_worker_whose_request_went_with_its_pruned_row_is_asked_again(store: Store):
    store.register_worker(_info("frozen"), 60)
    ticks = 0

    def workers_react(seconds: float) -> None:
        """First poll: the row is pruned and the thawed worker registers again, unasked."""
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            store.deregister_worker("frozen")
            store.register_worker(_info("frozen"), 60)
            return
        for worker in store.list_workers():
            if worker.stop is not None:
                store.deregister_worker(worker.id)

    result = api.stop_workers(store, timeout=10, sleep=workers_react)
    assert result.asked == ["frozen"]
    assert result.remaining == []
