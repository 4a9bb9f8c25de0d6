"""The chaos run's invariants, each its own test over one shared run (see harness.py).

QUEUECTL_CHAOS=quick (about a minute, 300 jobs) or QUEUECTL_CHAOS=long (`make chaos`, about twelve
minutes, 2,000 jobs) selects the run. QUEUECTL_CHAOS_SEED repeats a run's jobs and faults (the
seed is printed either way); QUEUECTL_CHAOS_FAULTS=off runs without the killer and
QUEUECTL_CHAOS_ESCAPES=off without the jobs whose `setsid` child closes its output, to check the
harness itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import checks, harness

MODE = os.environ.get("QUEUECTL_CHAOS") or "quick"
"""`make test` runs the quick run; `make chaos` the long one; QUEUECTL_CHAOS=off skips it."""

pytestmark = [
    pytest.mark.skipif(MODE not in harness.PROFILES, reason=f"QUEUECTL_CHAOS={MODE}"),
    pytest.mark.timeout(harness.PROFILES[MODE].deadline + 300 if MODE in harness.PROFILES else 120),
]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> harness.ChaosResult:
    profile, seed, faults, escapes = harness.settings_from_env()
    root: Path = tmp_path_factory.mktemp(f"chaos-{profile.name}")
    result = harness.ChaosRun(root, profile, seed, faults=faults, escapes=escapes).run()
    print(result.summary())
    return result


@pytest.mark.parametrize("invariant", list(checks.INVARIANTS))
def test_invariant(chaos: harness.ChaosResult, invariant: str) -> None:
    assert not chaos.problems[invariant], chaos.explain(invariant)
