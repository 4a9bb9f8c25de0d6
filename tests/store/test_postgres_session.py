"""What every queuectl session on PostgreSQL sets, whatever the server or database defaults say.

queuectl's promises need `synchronous_commit` at least `on`: with it off, a claim or finish the
server acknowledged can vanish in a crash while its worker goes on (the chaos harness ran
attempts twice after an immediate restart that way). A server or database configured with it
off must not weaken them; a URL that asks for a setting explicitly (e.g. `remote_apply` for a
synchronous standby) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from queuectl.store import location
from queuectl.store.postgres import connection
from tests import pgcluster
from tests.pgcluster import PgCluster

TEMPLATE = "queuectl_template"


@pytest.fixture
def url(pg_cluster: PgCluster) -> Iterator[str]:
    fresh = pgcluster.fresh_database(pg_cluster, TEMPLATE)
    name = pgcluster.dbname_of(fresh)
    pg_cluster.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    yield fresh
    pg_cluster.drop_database(name)


def _setting(url: str) -> str:
    conn = connection.connect(location.parse_postgres(url))
    try:
        row = conn.execute("SHOW synchronous_commit").fetchone()
        assert row is not None
        return str(row["synchronous_commit"])
    finally:
        conn.close()


def test_synchronous_commit_is_on_even_when_the_database_turns_it_off(url: str) -> None:
    assert _setting(url) == "on"


def test_a_url_that_names_synchronous_commit_keeps_its_choice(url: str) -> None:
    options = quote("-c synchronous_commit=remote_apply")
    joiner = "&" if "?" in url else "?"
    assert _setting(f"{url}{joiner}options={options}") == "remote_apply"
