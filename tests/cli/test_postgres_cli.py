"""The CLI against PostgreSQL, as real subprocesses on a throwaway cluster started here.

Errors are one line on stderr that never shows a URL's password; `?schema=` picks where the tables
go; workers run against the server; a SQLite start-up never loads psycopg.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests import pgcluster
from tests.helpers import WorkerPool, wait_until
from tests.pgcluster import PgCluster

PASSWORD = "s3cret"  # noqa: S105 - a test password on a throwaway URL
TEMPLATE = "queuectl_cli_template"
TIMEOUT = 60


def queuectl(
    *args: str,
    db: str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m queuectl [--db DB] ARGS` and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "QUEUECTL_DB"}
    full_env.update(env or {})
    argv = [sys.executable, "-m", "queuectl"]
    if db is not None:
        argv += ["--db", db]
    return subprocess.run(
        [*argv, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=full_env,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command, checked to be a queuectl error line."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("queuectl: error:"), result.stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def status_json(db: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(queuectl("status", "--json", db=db)))
    return data


def with_password(url: str, user: str, password: str) -> str:
    """`url` (postgresql://user@host:port/db) with another user and a password."""
    rest = url.split("@", 1)[1]
    return f"postgresql://{user}:{password}@{rest}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    reason = pgcluster.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("psycopg")
    with PgCluster.from_env() as running:

        def migrate(url: str) -> None:
            ok(queuectl("status", db=url))

        pgcluster.template_database(running, TEMPLATE, migrate)
        yield running
        running.drop_database(TEMPLATE)


@pytest.fixture
def pg_url(cluster: PgCluster) -> str:
    """A fresh, migrated database's URL."""
    return pgcluster.fresh_database(cluster, TEMPLATE)


# -- 1. an unreachable server -------------------------------------------------------------------


@pytest.mark.parametrize("via", ["option", "env"])
def test_unreachable_server_is_one_line_without_the_password(via: str) -> None:
    port = pgcluster.free_port()  # nothing listens there
    url = f"postgresql://queuectl:{PASSWORD}@127.0.0.1:{port}/nodb_x"
    if via == "option":
        result = queuectl("status", db=url)
    else:
        result = queuectl("status", env={"QUEUECTL_DB": url})
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "127.0.0.1" in line
    assert str(port) in line
    assert "nodb_x" in line
    assert PASSWORD not in result.stderr + result.stdout


# -- 2. an unknown database ---------------------------------------------------------------------


def test_unknown_database_names_it_and_the_server_reason(cluster: PgCluster) -> None:
    url = cluster.url("no_such_db_here")
    result = queuectl("status", db=url)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "no_such_db_here" in line
    assert "does not exist" in line


# -- 3. malformed URLs --------------------------------------------------------------------------


def test_malformed_url_is_a_usage_error_naming_db() -> None:
    result = queuectl("status", db="postgresql://u:pw@host:notaport/db")
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith("queuectl: error: db")
    assert ":pw@" not in result.stderr
    assert "pw@" not in result.stderr


def test_malformed_url_in_env_is_a_usage_error() -> None:
    result = queuectl("status", env={"QUEUECTL_DB": "postgresql://u:pw@host:notaport/db"})
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "db" in line
    assert "pw@" not in result.stderr


def test_bad_schema_parameter_is_a_usage_error(cluster: PgCluster) -> None:
    result = queuectl("status", db=cluster.url("postgres") + "?schema=Bad-Name")
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "schema" in line


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://queuectl:{PASSWORD}%zz@127.0.0.1:1/x",
        f"postgresql://queuectl:{PASSWORD}%00@127.0.0.1:1/x",
        f"postgresql://queuectl:{PASSWORD}@127.0.0.1:1/x?foo=bar",
    ],
)
def test_url_libpq_cannot_parse_is_one_line_without_the_password(url: str) -> None:
    result = queuectl("status", db=url)
    assert PASSWORD not in result.stderr
    assert result.returncode == 2, result.stderr
    assert one_error_line(result).startswith("queuectl: error: db: is not a valid PostgreSQL URL")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("sslmode=bogus", "sslmode"),
        ("connect_timeout=x", "connect_timeout"),  # psycopg reads this one itself
        ("target_session_attrs=zz", "target_session_attrs"),
        ("keepalives=q", "keepalives"),  # libpq checks this one per host, at the socket
    ],
)
def test_a_bad_url_parameter_is_a_usage_error_naming_it(query: str, parameter: str) -> None:
    # libpq checks these values only when it connects: a mistyped URL is still not an outage.
    result = queuectl("status", db=f"postgresql://queuectl:{PASSWORD}@127.0.0.1:1/x?{query}")
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith("queuectl: error: db: is not a valid PostgreSQL URL"), line
    assert parameter in line
    assert PASSWORD not in result.stderr


# -- 4. the happy path --------------------------------------------------------------------------


def test_enqueue_status_list_show(pg_url: str, tmp_path: Path) -> None:
    assert ok(queuectl("enqueue", "--id", "one", "--command", "echo hi", "-p", "5", db=pg_url))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(
            json.dumps({"id": f"f{i}", "command": f"echo {i}", "queue": "batch"}) + "\n"
            for i in range(3)
        )
    )
    assert ok(queuectl("enqueue", "--file", str(jobs), db=pg_url)).split() == ["f0", "f1", "f2"]

    status = status_json(pg_url)
    assert status["jobs"]["pending"] == 4
    assert status["queues"]["batch"]["pending"] == 3
    assert status["queues"]["default"]["pending"] == 1

    listed = json.loads(ok(queuectl("list", "--json", db=pg_url)))
    assert sorted(job["id"] for job in listed) == ["f0", "f1", "f2", "one"]
    assert "one" in ok(queuectl("list", db=pg_url))

    shown = json.loads(ok(queuectl("show", "one", "--json", db=pg_url)))
    assert shown["command"] == "echo hi"
    assert shown["priority"] == 5
    assert shown["state"] == "pending"
    assert "echo hi" in ok(queuectl("show", "one", db=pg_url))


def test_schema_parameter_puts_tables_in_that_schema(cluster: PgCluster, pg_url: str) -> None:
    dbname = pgcluster.dbname_of(pg_url)
    other = pg_url + "?schema=other"
    ok(queuectl("enqueue", "--id", "in-other", "--command", "true", db=other))
    rows = cluster.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables"
        " WHERE table_schema IN ('other', 'queuectl')",
        dbname=dbname,
    )
    assert {row[0] for row in rows} == {"other", "queuectl"}  # the template migrated 'queuectl'
    tables = cluster.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'other'",
        dbname=dbname,
    )
    assert tables[0][0] > 0

    # Two schemas in one database are two independent queues.
    ok(queuectl("enqueue", "--id", "in-default", "--command", "true", db=pg_url))
    ok(queuectl("enqueue", "--id", "in-other-2", "--command", "true", db=other))
    in_other = json.loads(ok(queuectl("list", "--json", db=other)))
    in_default = json.loads(ok(queuectl("list", "--json", db=pg_url)))
    assert sorted(job["id"] for job in in_other) == ["in-other", "in-other-2"]
    assert [job["id"] for job in in_default] == ["in-default"]
    assert status_json(other)["jobs"]["pending"] == 2
    assert status_json(pg_url)["jobs"]["pending"] == 1
    missing = queuectl("show", "in-other", db=pg_url)
    assert missing.returncode == 1
    one_error_line(missing)


# -- 5. workers ---------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_worker_runs_a_job_and_argv_hides_the_password(
    cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    cluster.execute(
        "DO $$ BEGIN CREATE ROLE pwuser LOGIN PASSWORD 'pw123' SUPERUSER;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    url = with_password(pg_url, "pwuser", "pw123")
    ok(queuectl("enqueue", "--id", "w1", "--command", "sleep 1; echo done", db=url))
    seen: dict[int, str] = {}

    def completed_and_seen() -> bool:
        for pid in [pool.pid, *pool.worker_pids()]:
            line = _cmdline(pid)
            if line:
                seen[pid] = line
        assert pool.proc is not None and pool.proc.poll() is None, pool.log_text()
        return status_json(url)["jobs"]["completed"] == 1 and len(seen) >= 2

    with WorkerPool(url, 1, log=tmp_path / "workers.log", db_in_env=True) as pool:
        wait_until(completed_and_seen, timeout=30, message="the job completed")
        stopped = queuectl("worker", "stop", "--timeout", "30", env={"QUEUECTL_DB": url})
        assert stopped.returncode == 0, stopped.stderr
        assert pool.proc is not None
        assert pool.proc.wait(timeout=30) == 0, pool.log_text()
        log = pool.log_text()
    assert len(seen) >= 2, seen  # the supervisor and its worker
    for pid, line in seen.items():
        assert "pw123" not in line, (pid, line)
    assert "pw123" not in log
    shown = json.loads(ok(queuectl("show", "w1", "--json", db=url)))
    assert shown["state"] == "completed"


# -- 6. NUL characters --------------------------------------------------------------------------


NUL_JOBS = {
    "command": {"id": "nul1", "command": "echo a\u0000b"},
    "env-value": {"id": "nul2", "command": "true", "env": {"A": "x\u0000y"}},
    "env-key": {"id": "nul3", "command": "true", "env": {"A\u0000B": "x"}},
}


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    cluster: PgCluster = request.getfixturevalue("cluster")
    return pgcluster.fresh_database(cluster, TEMPLATE)


@pytest.mark.parametrize("where", list(NUL_JOBS))
@pytest.mark.parametrize("how", ["argument", "file"])
def test_nul_character_is_refused_and_nothing_stored(
    any_db: str, where: str, how: str, tmp_path: Path
) -> None:
    text = json.dumps(NUL_JOBS[where])
    assert "\\u0000" in text
    if how == "argument":
        result = queuectl("enqueue", text, db=any_db)
    else:
        jobs = tmp_path / "nul.jsonl"
        jobs.write_text(json.dumps({"id": "fine", "command": "true"}) + "\n" + text + "\n")
        result = queuectl("enqueue", "--file", str(jobs), db=any_db)
    assert result.returncode == 2, (result.stdout, result.stderr)
    one_error_line(result)
    assert status_json(any_db)["jobs"]["pending"] == 0
    assert json.loads(ok(queuectl("list", "--json", db=any_db))) == []


# -- 7. psycopg not installed -------------------------------------------------------------------


_WITHOUT_PSYCOPG = (
    "import sys\nsys.modules['psycopg'] = None\nfrom queuectl.cli import main\nmain(sys.argv[1:])\n"
)


@pytest.mark.parametrize("command", [["status"], ["list"], ["worker", "start", "--count", "1"]])
def test_without_psycopg_says_how_to_install_it(command: list[str]) -> None:
    url = f"postgresql://queuectl:{PASSWORD}@127.0.0.1:{pgcluster.free_port()}/x"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PSYCOPG, "--db", url, *command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert "pip install 'queuectl[postgres]'" in line
    assert PASSWORD not in result.stderr


# -- 8. SQLite start-up -------------------------------------------------------------------------


def test_sqlite_startup_does_not_import_psycopg(tmp_path: Path) -> None:
    db = str(tmp_path / "queue.db")
    ok(queuectl("status", db=db))  # create it first, then measure a plain start-up
    for args in (["status"], ["enqueue", "--command", "true"], ["list"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "queuectl", "--db", db, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "import time:" in result.stderr
        assert "psycopg" not in result.stderr, args
