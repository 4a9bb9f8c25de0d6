"""A full disk gives a clear error, writes nothing, and loses nothing already acknowledged."""

from __future__ import annotations

import pytest

from queuectl import api, errors
from queuectl.models import JobFilter, JobSpec, JobState
from queuectl.store import Store


def test_enqueue_on_a_full_disk_fails_cleanly_and_keeps_earlier_jobs(db_path, store: Store):
    # SQLite's own page limit; PostgreSQL's full disk is tests/faults/test_full_disk.py's.
    api.enqueue(store, [JobSpec(id="kept", command="true")])
    db = store._db  # type: ignore[attr-defined]
    pages = db.execute("PRAGMA page_count").fetchone()["page_count"]
    db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "disk is full"
    big = [JobSpec(id=f"j{i}", command="x" * 2000) for i in range(200)]
    with pytest.raises(errors.StoreUnavailable, match="full"):
        api.enqueue(store, big)
    assert [job.id for job in store.list_jobs(JobFilter(), 10)] == ["kept"]
    kept = store.get_job("kept")
    assert kept is not None
    assert kept.state is JobState.PENDING
