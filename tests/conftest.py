"""Fixtures shared by every test: a fresh store on each backend.

`db` is a store location, parametrised over both backends: a SQLite file in a temporary
directory, and a database on a throwaway PostgreSQL cluster that the session starts the first
time a test asks for one (tests/pgcluster.py; QUEUECTL_TEST_PG_URL points at a server instead).
Each PostgreSQL test gets its own database, copied from a template migrated once.
`store` is that location opened. `db_path` is the SQLite file of tests about SQLite itself (or
not converted to `db` yet): on the PostgreSQL run such a test is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.store import Store, open_store
from tests import pgcluster

BACKENDS = ("sqlite", "postgres")
TEMPLATE = "queuectl_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.PgCluster]:
    """One PostgreSQL cluster for the session, with a migrated template database."""
    reason = pgcluster.unavailable_reason()
    if reason is not None:
        pytest.fail(f"PostgreSQL is needed for the postgres tests: {reason}")
    cluster = pgcluster.PgCluster.from_env()
    cluster.start()
    pgcluster.template_database(cluster, TEMPLATE, lambda url: open_store(url).close())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which store this test runs on."""
    name: str = request.param
    return name


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Where this test's queue lives: a SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        yield str(tmp_path / "queue.db")
        return
    cluster: pgcluster.PgCluster = request.getfixturevalue("pg_cluster")
    url = pgcluster.fresh_database(cluster, TEMPLATE)
    yield url
    cluster.drop_database(pgcluster.dbname_of(url))


@pytest.fixture
def db_path(backend: str, tmp_path: Path) -> Path:
    """This test's SQLite file: for tests of SQLite itself, skipped on the PostgreSQL run."""
    if backend != "sqlite":
        pytest.skip("a test of the SQLite file itself (db_path)")
    return tmp_path / "queue.db"


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    """An open, migrated store on this test's backend."""
    opened = open_store(db)
    yield opened
    opened.close()
