"""Every benchmark still runs: the harness at its tiny --quick size (figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_every_benchmark_runs_at_a_tiny_size(tmp_path: Path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"throughput", "latency", "enqueue", "depth", "overhead", "memory"}
    for name, result in results.items():
        assert result["figures"], name
        assert all(value >= 0 for value in result["figures"].values()), name
