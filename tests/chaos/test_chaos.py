"""The chaos run's invariants, each its own test over one shared run (see harness.py).

QUEUECTL_CHAOS=quick (about a minute, 300 jobs) or QUEUECTL_CHAOS=long (`make chaos`, about twelve
minutes, 2,000 jobs) selects the run. QUEUECTL_CHAOS_SEED repeats a run's jobs and faults (the
seed is printed either way); QUEUECTL_CHAOS_FAULTS=off runs without the killer and
QUEUECTL_CHAOS_ESCAPES=off without the jobs whose `setsid` child closes its output, to check the
harness itself. QUEUECTL_CHAOS_STORE=sqlite|postgres|both (default both) picks the stores: the
PostgreSQL run has a cluster of its own, whose server the killer restarts, stops and cuts off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import checks, harness, server

MODE = os.environ.get("QUEUECTL_CHAOS") or "quick"
"""`make test` runs the quick run; `make chaos` the long one; QUEUECTL_CHAOS=off skips it."""

STORES = os.environ.get("QUEUECTL_CHAOS_STORE") or "both"
"""Which stores the run is made on: `sqlite`, `postgres` or `both`."""

pytestmark = [
    pytest.mark.skipif(MODE not in harness.PROFILES, reason=f"QUEUECTL_CHAOS={MODE}"),
    pytest.mark.timeout(harness.PROFILES[MODE].deadline + 300 if MODE in harness.PROFILES else 120),
]


if STORES not in (*server.STORES, "both"):
    raise pytest.UsageError(f"QUEUECTL_CHAOS_STORE={STORES}: sqlite, postgres or both")


@pytest.fixture(scope="module", params=[s for s in server.STORES if STORES in (s, "both")])
def chaos(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> harness.ChaosResult:
    profile, seed, faults, escapes = harness.settings_from_env()
    kind: str = request.param
    root: Path = tmp_path_factory.mktemp(f"chaos-{profile.name}-{kind}")
    with server.own_store(kind, root) as (db, pg):
        run = harness.ChaosRun(root, profile, seed, faults=faults, escapes=escapes, db=db, pg=pg)
        result = run.run()
    print(result.summary())
    return result


@pytest.mark.parametrize("invariant", list(checks.INVARIANTS))
def test_invariant(chaos: harness.ChaosResult, invariant: str) -> None:
    assert not chaos.problems[invariant], chaos.explain(invariant)
