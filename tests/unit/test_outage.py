"""An outage logs twice (when it starts and when it ends) and backs off, capped, in between."""

from __future__ import annotations

import itertools
import logging

import pytest

from queuectl import errors, outage


def test_retries_back_off_doubling_up_to_the_cap() -> None:
    watch = outage.Outage(logging.getLogger("test"), "recording")
    assert watch.retry_delay() == 0.0
    delays = []
    for _ in range(12):
        watch.failed(errors.StoreUnavailable("down"))
        delays.append(watch.retry_delay())
    assert delays[0] == outage.RETRY_FIRST
    assert all(b == min(outage.RETRY_CAP, 2 * a) for a, b in itertools.pairwise(delays))
    assert delays[-1] == outage.RETRY_CAP
    watch.recovered()
    watch.failed(errors.StoreUnavailable("down again"))
    assert watch.retry_delay() == outage.RETRY_FIRST  # a new outage starts quick again


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = outage.Outage(logging.getLogger("test"), "recording")
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            watch.failed(errors.StoreUnavailable("server closed the connection"))
        watch.recovered()
        watch.recovered()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "recording failed: server closed the connection" in lines[0]
    assert "recording works again after" in lines[1] and "(5 failed tries)" in lines[1]


def test_parts_share_one_outage_that_ends_when_the_last_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = outage.Outage(logging.getLogger("test"), "worker w-1: the store")
    down = errors.StoreUnavailable("connection refused")
    with caplog.at_level(logging.INFO):
        watch.failed(down, "heartbeat")
        watch.failed(down)  # the loop
        watch.failed(down, "maintenance")
        watch.recovered()  # the loop works again; the others still fail
        watch.recovered("heartbeat")
        assert watch.retry_delay("maintenance") == outage.RETRY_FIRST
        watch.recovered("maintenance")
        watch.recovered("maintenance")  # a part that was not failing ends nothing
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("worker w-1: the store failed (heartbeat): connection refused")
    assert lines[1].startswith("worker w-1: the store works again") and "(3 failed" in lines[1]
