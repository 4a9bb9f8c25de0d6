"""The benchmark harness still runs every benchmark, on both stores, at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pgcluster

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"throughput", "latency", "enqueue", "depth", "overhead", "memory", "status", "wait"}


@pytest.mark.timeout(600)
def test_every_benchmark_runs_at_a_tiny_size(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    out = tmp_path / "bench.json"
    args = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)]
    args += ["--store", backend]
    if backend == "postgres":
        # The session's server (fsync off) rather than one of its own: the figures do not
        # matter here, only that every benchmark works there.
        cluster: pgcluster.PgCluster = request.getfixturevalue("pg_cluster")
        args += ["--pg-url", cluster.url()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["stores"] == [backend]
    results = report["results"][backend]
    assert set(results) == NAMES
    for name, result in results.items():
        assert result["figures"], name
        assert all(value >= 0 for value in result["figures"].values()), name
    status = results["status"]["figures"]
    assert (status["small_jobs"], status["large_jobs"]) == (100, 2000)  # counted as filled
    assert results["wait"]["figures"]["returns"] == 2  # each waiter printed `JOB: completed`
    if backend == "postgres":
        assert results["throughput"]["figures"]["workers2_psycopg_loop_per_s"] > 0
        assert results["overhead"]["figures"]["raw_sync_on_jobs_per_s"] > 0
