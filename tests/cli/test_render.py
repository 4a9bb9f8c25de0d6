"""render draws what the api returns: checked on values built here, no store needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queuectl import api, models
from queuectl.cli import render


def test_status_shows_a_busy_worker_that_is_stopping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    busy = models.WorkerInfo(
        id="w-1", host="h", pid=7, queues=(), started_at=now, heartbeat_at=now,
        job_id="job-9", stop="graceful",
    )  # fmt: skip
    idle = models.WorkerInfo(
        id="w-2", host="h", pid=8, queues=(), started_at=now,
        heartbeat_at=now - timedelta(seconds=2), stop="now",
    )  # fmt: skip
    snapshot = api.Status(counts=models.Counts(by_queue={}), workers=[busy, idle], now=now)
    render.status(snapshot, as_json=False)
    out = capsys.readouterr().out
    assert "job-9 (stopping: graceful)" in out
    assert "idle (stopping: now)" in out
    assert "2.0s ago" in out
