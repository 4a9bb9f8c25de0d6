"""Fixtures of the fault tests: a PostgreSQL cluster of the test's own, to stop and restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import pgcluster


@pytest.fixture
def cluster() -> Iterator[pgcluster.PgCluster]:
    """A cluster for this test alone: stopping or restarting it disturbs no other test, and a
    failed restart does not take the rest of the suite down with it."""
    reason = pgcluster.unavailable_reason()
    if reason is not None:
        pytest.fail(f"PostgreSQL is needed: {reason}")
    own = pgcluster.PgCluster()
    try:
        own.start()
        if not own.can_restart:
            pytest.skip("QUEUECTL_TEST_PG_URL names a server these tests cannot restart")
        yield own
    finally:
        own.close()
