"""PostgreSQL's hot queries use their partial indexes, and cost as little at 1,000,000 pending
jobs as at 1,000 (the twin of test_query_plans.py, which asks SQLite).

Two databases, copied from the suite's template, are filled on the server (`INSERT … SELECT
generate_series`) and ANALYZEd: one with 1,000 pending jobs and one with 1,000,000, each beside
a tenth as many completed ones and the same few delayed, retrying, dead and running jobs. The
few are inserted first, so a plan that walked the table from the newest row would have to pass
every pending job to find them. Each query is the store's own (queries.sql) with real
parameters, PREPAREd and run under EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled
back. It is run both ways PostgreSQL may plan it: custom (the parameters' values known, as for a
statement's first executions) and generic (as psycopg's prepared statements may be, from a
statement's sixth execution on). The buffers a query touches (shared hit + read) may grow from
1k to 1M only by a small constant: one more B-tree level for each of the few index descents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from queuectl.store import sqlfile
from tests import pgcluster
from tests.conftest import TEMPLATE

pytestmark = pytest.mark.timeout(600)  # filling 1,000,000 jobs takes a while on a loaded host

QUERIES = {q.name: q.sql for q in sqlfile.load("queuectl.store.postgres").values()}
SMALL, LARGE = 1_000, 1_000_000
FEW = 30
"""How many delayed, retrying, dead, expired and live claims each database holds."""
SLACK = 12
"""Buffers a query may touch at 1M beyond what it touched at 1k (deeper B-trees)."""

Conn = psycopg.Connection[dict[str, Any]]

FILL = [
    # The few, oldest first: delayed jobs (due in an hour, high priority, so that a claim has to
    # pass over them), retries waiting, dead jobs, claims whose lease ran out, live claims.
    """INSERT INTO jobs (id, command, queue, priority, state, max_retries, run_at, created_at)
       SELECT 'later' || g, 'true', 'a', 9, 'pending', 3,
              now() + interval '1 hour' + g * interval '1 second', now() - interval '1 day'
         FROM generate_series(1, %(few)s) AS g""",
    """INSERT INTO jobs (id, command, queue, state, attempts, max_retries, run_at, created_at,
                         last_error)
       SELECT 'retry' || g, 'false', 'b', 'failed', 1, 3,
              now() + g * interval '1 minute', now() - interval '1 day', 'exit code 1'
         FROM generate_series(1, %(few)s) AS g""",
    """INSERT INTO jobs (id, command, queue, state, attempts, max_retries, run_at, created_at)
       SELECT 'dead' || g, 'false', 'a', 'dead', 4, 3, now() - interval '1 day',
              now() - interval '1 day'
         FROM generate_series(1, %(few)s) AS g""",
    """INSERT INTO jobs (id, command, queue, state, attempts, max_retries, run_at, created_at,
                         run_count, worker_id, worker_host, claimed_at, lease_expires_at)
       SELECT 'lost' || g, 'sleep 9', 'default', 'processing', 1, 3, now() - interval '1 day',
              now() - interval '1 day', 1, 'gone' || g, 'h', now() - interval '1 hour',
              now() - g * interval '1 second'
         FROM generate_series(1, %(few)s) AS g""",
    """INSERT INTO jobs (id, command, queue, state, attempts, max_retries, run_at, created_at,
                         run_count, worker_id, worker_host, claimed_at, lease_expires_at)
       SELECT 'busy' || g, 'sleep 9', 'default', 'processing', 1, 3, now() - interval '1 day',
              now() - interval '1 day', 1, 'w' || g, 'h', now(),
              now() + interval '1 hour' + g * interval '1 second'
         FROM generate_series(1, %(few)s) AS g""",
    # The many: completed jobs, then pending ones due now (as enqueued: run_at = created_at).
    """INSERT INTO jobs (id, command, queue, state, attempts, max_retries, run_at, created_at,
                         run_count)
       SELECT 'done' || g, 'true', 'default', 'completed', 1, 3, now() - interval '1 day',
              now() - interval '1 day', 1
         FROM generate_series(1, %(pending)s / 10) AS g""",
    """INSERT INTO jobs (id, command, queue, priority, state, max_retries, run_at, created_at)
       SELECT 'p' || g, 'true', (ARRAY['default', 'a', 'b'])[1 + g %% 3], g %% 10, 'pending', 3,
              t, t
         FROM generate_series(1, %(pending)s) AS g,
              LATERAL (SELECT now() - interval '1 hour' + g * interval '1 millisecond') AS x(t)""",
    "ANALYZE jobs",
]


def _claim_of(conn: Conn, prefix: str) -> dict[str, Any]:
    """The claim key (seq, worker_id, run_count) of the first running job named prefix…."""
    row = conn.execute(
        "SELECT seq, worker_id, run_count FROM jobs WHERE id = %s", (prefix + "1",)
    ).fetchone()
    assert row is not None
    return row


def _attempt(conn: Conn) -> dict[str, Any]:
    """A rescue's attempt of an expired claim, as the store records it."""
    row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    now = row["now"]
    return {
        **_claim_of(conn, "lost"),
        "rescue": True,
        "counted": True,
        "bucket": -1,
        "completed": 0,
        "failed": 1,
        "pid": 4242,
        "started_at": now - timedelta(hours=1),
        "ended_at": now,
        "exit_code": None,
        "signal": None,
        "outcome": "worker_lost",
        "error": "the worker was lost",
        "stdout": b"",
        "stderr": b"",
    }


Params = Callable[[Conn], dict[str, Any]]


def _fixed(**params: Any) -> Params:
    return lambda conn: params


CLAIM = {"worker_id": "w0", "host": "h", "lease": 60.0}
KEY = ("jobs_pkey", "jobs_leased")
"""A guarded write finds its claim by the primary key or among the running jobs' leases: the
planner takes either when few jobs run (one lease a busy worker), never one that grows with the
queue."""
CASES: dict[str, tuple[str, tuple[str, ...], Params]] = {
    # case: (query, the indexes it may use at 1M, its parameters)
    "claim_job": ("claim_job", ("jobs_runnable",), _fixed(queues=None, **CLAIM)),
    "claim_job(a,b)": ("claim_job", ("jobs_runnable",), _fixed(queues=["a", "b"], **CLAIM)),
    "select_next_run_at": ("select_next_run_at", ("jobs_due",), _fixed(queues=None)),
    "select_next_run_at(b)": ("select_next_run_at", ("jobs_due",), _fixed(queues=["b"])),
    "select_expired_claims": ("select_expired_claims", ("jobs_leased",), _fixed(limit=10)),
    "select_job": ("select_job", ("jobs_id_key",), _fixed(job_id="p500")),
    "extend_lease": (
        "extend_lease",
        KEY,
        lambda conn: {**_claim_of(conn, "busy"), "lease": 60.0},
    ),
    "insert_attempt": ("insert_attempt", KEY, _attempt),
    "finish_job": (
        "finish_job",
        KEY,
        lambda conn: {
            **_claim_of(conn, "busy"),
            "state": "completed",
            "attempts": 1,
            "run_at": None,
            "last_error": None,
        },
    ),
    "list_problem_jobs": (
        "list_problem_jobs",
        ("jobs_problems",),
        _fixed(state="dead", queue=None, limit=20),
    ),
    "list_problem_jobs(b)": (
        "list_problem_jobs",
        ("jobs_problems",),
        _fixed(state="failed", queue="b", limit=20),
    ),
    "list_processing_jobs": (
        "list_processing_jobs",
        ("jobs_leased",),
        _fixed(queue=None, limit=20),
    ),
    "list_jobs": ("list_jobs", ("jobs_pkey",), _fixed(state=None, queue=None, limit=20)),
}
SORTS_FEW = {"list_processing_jobs"}
"""Cases allowed to sort: what they sort is one row per busy worker, never the queue."""

PLAN_MODES = ("custom", "generic")


def _connect(url: str) -> Conn:
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    conn.execute("SET search_path = queuectl")
    return conn


@pytest.fixture(scope="module")
def queues(pg_cluster: pgcluster.PgCluster) -> Iterator[dict[int, Conn]]:
    """A connection to each filled database, by its number of pending jobs."""
    urls = {size: pgcluster.fresh_database(pg_cluster, TEMPLATE) for size in (SMALL, LARGE)}
    conns: dict[int, Conn] = {}
    try:
        for size, url in urls.items():
            conns[size] = conn = _connect(url)
            for statement in FILL:
                conn.execute(statement, {"few": FEW, "pending": size})
        yield conns
    finally:
        for conn in conns.values():
            conn.close()
        for url in urls.values():
            pg_cluster.drop_database(pgcluster.dbname_of(url))


def explain(conn: Conn, query: str, params: dict[str, Any], mode: str) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) the store's query as a prepared statement, then roll back.

    The statement is PREPAREd with `$n` for each `%(name)s`, its types left to PostgreSQL to
    infer as for psycopg's text parameters, and EXECUTEd with the values as literals.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", number, QUERIES[query])
    args = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
    execute = (
        sql.SQL("EXECUTE plan_test({})").format(args) if names else sql.SQL("EXECUTE plan_test")
    )
    with conn.transaction(force_rollback=True):
        conn.execute(
            sql.SQL("SET LOCAL plan_cache_mode = {}").format(sql.SQL(f"force_{mode}_plan"))
        )
        conn.execute(sql.SQL("PREPARE plan_test AS {}").format(sql.SQL(prepared)))
        try:
            row = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(execute)
            ).fetchone()
        finally:
            conn.execute("DEALLOCATE plan_test")
    assert row is not None
    plan: dict[str, Any] = row["QUERY PLAN"][0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def buffers(plan: dict[str, Any]) -> int:
    """Shared buffers the whole execution touched (found in memory or read)."""
    total: int = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    return total


def summary(plan: dict[str, Any]) -> list[str]:
    """One line a node, for assertion messages."""
    return [
        " ".join(
            str(node[key])
            for key in ("Node Type", "Relation Name", "Index Name", "Actual Rows")
            if key in node
        )
        for node in nodes(plan)
    ]


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("size", [SMALL, LARGE])
@pytest.mark.parametrize("case", CASES)
def test_hot_query_uses_its_index_and_never_scans_or_sorts_the_queue(
    queues: dict[int, Conn], case: str, size: int, mode: str
):
    query, indexes, params = CASES[case]
    conn = queues[size]
    plan = explain(conn, query, params(conn), mode)
    steps = list(nodes(plan))
    assert not any(
        step["Node Type"] == "Seq Scan" and step.get("Relation Name") == "jobs" for step in steps
    ), summary(plan)
    if size == SMALL:
        return  # at 1k, walking the primary key or sorting a few rows may well be cheapest
    used = {step.get("Index Name") for step in steps}
    assert used & set(indexes), summary(plan)
    if case not in SORTS_FEW:
        sorts = [step for step in steps if step["Node Type"] in ("Sort", "Incremental Sort")]
        assert not sorts, summary(plan)


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("case", CASES)
def test_hot_query_touches_as_few_buffers_at_a_million_pending_as_at_a_thousand(
    queues: dict[int, Conn], case: str, mode: str
):
    query, _, params = CASES[case]
    small, large = (explain(queues[n], query, params(queues[n]), mode) for n in (SMALL, LARGE))
    assert small["Actual Rows"] == large["Actual Rows"]  # the same work found at both sizes
    assert buffers(large) <= buffers(small) + SLACK, (buffers(small), buffers(large))


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_counts_read_only_their_log_never_the_jobs(queues: dict[int, Conn], mode: str):
    # status sums the count deltas, which each statement that changed jobs appended (here the
    # fill's, a row per queue and state); compaction keeps them to about one row per pair.
    small, large = (explain(queues[n], "count_jobs", {}, mode) for n in (SMALL, LARGE))
    for plan in (small, large):
        read = {step.get("Relation Name") for step in nodes(plan)} - {None}
        assert read == {"count_deltas"}, summary(plan)
    assert small["Actual Rows"] == large["Actual Rows"]
    assert buffers(large) <= buffers(small) + SLACK, (buffers(small), buffers(large))


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_activity_reads_only_its_log_never_the_jobs_or_attempts(queues: dict[int, Conn], mode: str):
    since = {"since": datetime.now(UTC) - timedelta(hours=1)}
    for query in ("select_activity_minutes", "select_activity_durations"):
        small, large = (explain(queues[n], query, since, mode) for n in (SMALL, LARGE))
        for plan in (small, large):
            read = {step.get("Relation Name") for step in nodes(plan)} - {None}
            assert read == {"activity"}, summary(plan)
        assert buffers(large) <= buffers(small) + SLACK, (buffers(small), buffers(large))
