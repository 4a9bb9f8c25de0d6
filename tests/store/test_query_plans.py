"""The hot queries use their indexes: no full scan or sort that grows with the queue's depth."""

from __future__ import annotations

import re
from pathlib import Path

import apsw
import pytest

from queuectl.store import Store
from queuectl.store.sqlite.store import _Q

EXPECTED = {
    "claim_job": "queuectl_jobs_runnable",
    "select_next_run_at": "queuectl_jobs_due",
    "select_expired_claims": "queuectl_jobs_leased",
    "select_job": "sqlite_autoindex_queuectl_jobs_1",
    "finish_job": "INTEGER PRIMARY KEY",
    "insert_attempt": "INTEGER PRIMARY KEY",
    "extend_lease": "INTEGER PRIMARY KEY",
    "list_problem_jobs": "queuectl_jobs_problems",
    "count_jobs": "queuectl_counts",  # status: the kept counts, never a count of the jobs
    "select_activity_minutes": "queuectl_activity USING PRIMARY KEY (minute>?)",  # one range
}


@pytest.mark.parametrize(("query", "index"), EXPECTED.items())
@pytest.mark.parametrize("queues", [None, '["a", "b"]'])
def test_hot_query_uses_its_index_and_never_sorts(
    store: Store, db_path: Path, query: str, index: str, queues: str | None
):
    sql = _Q[query]
    params: dict[str, object] = {name: 0 for name in re.findall(r":(\w+)", sql)}
    if "queues" in params:
        params["queues"] = queues
    con = apsw.Connection(str(db_path))
    plan = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params)]
    con.close()
    assert any(index in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert not any(step.startswith("SCAN queuectl_jobs") and "INDEX" not in step for step in plan)


def test_activity_durations_read_one_range_of_the_activity_only(store: Store, db_path: Path):
    # Summed by queue and bucket in a temporary tree: what it sorts is the window's rows.
    con = apsw.Connection(str(db_path))
    plan = [
        row[3]
        for row in con.execute(
            "EXPLAIN QUERY PLAN " + _Q["select_activity_durations"], {"since": 0}
        )
    ]
    con.close()
    assert any("queuectl_activity USING PRIMARY KEY (minute>?)" in step for step in plan), plan
    assert not any("queuectl_jobs" in step or "queuectl_attempts" in step for step in plan), plan
