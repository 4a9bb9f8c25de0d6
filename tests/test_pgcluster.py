"""The suite's throwaway PostgreSQL cluster (tests/pgcluster.py), against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgcluster
from tests.helpers import wait_until
from tests.pgcluster import PgCluster, PgClusterError, dbname_of, fresh_database, template_database

_UNAVAILABLE = pgcluster.unavailable_reason()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with PgCluster.from_env() as started:
        yield started


@pytest.fixture(scope="module")
def template(cluster: PgCluster) -> str:
    def prepare(url: str) -> None:
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("INSERT INTO item VALUES (1, 'one'), (2, 'two')")

    return template_database(cluster, "pgcluster_test_template", prepare)


@pytest.fixture
def local(cluster: PgCluster) -> PgCluster:
    if not cluster.can_restart:
        pytest.skip(f"uses the server in {pgcluster.ENV_URL}, not a local cluster")
    return cluster


def test_connects_as_the_test_superuser(cluster: PgCluster) -> None:
    import psycopg

    with psycopg.connect(cluster.url()) as conn:
        row = conn.execute("SELECT current_database(), current_setting('server_version_num')")
        assert row.fetchone() == ("postgres", str(cluster.server_version()))
    assert cluster.running()


def test_local_url_and_settings(local: PgCluster) -> None:
    assert local.url("x") == f"postgresql://queuectl@127.0.0.1:{local.port}/x"
    settings = dict(local.execute("SELECT name, setting FROM pg_settings"))
    assert settings["fsync"] == "off"
    assert settings["synchronous_commit"] == "off"
    assert settings["full_page_writes"] == "off"
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["max_connections"] == "300"
    assert settings["unix_socket_directories"] == str(local.socket_dir)
    assert local.execute("SHOW shared_buffers") == [("128MB",)]


def test_fresh_database_is_a_copy_of_the_template(cluster: PgCluster, template: str) -> None:
    import psycopg

    first, second = fresh_database(cluster, template), fresh_database(cluster, template)
    assert dbname_of(first) != dbname_of(second)
    with psycopg.connect(first) as conn:
        assert conn.execute("SELECT id, name FROM item ORDER BY id").fetchall() == [
            (1, "one"),
            (2, "two"),
        ]
        conn.execute("DELETE FROM item")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)
    for url in (first, second):
        cluster.drop_database(dbname_of(url))
    assert not cluster.execute(
        "SELECT 1 FROM pg_database WHERE datname IN (%s, %s)", (dbname_of(first), dbname_of(second))
    )


def test_template_survives_a_prepare_that_leaves_a_connection_open(cluster: PgCluster) -> None:
    import psycopg

    leaked: list[psycopg.Connection[tuple[object, ...]]] = []

    def prepare(url: str) -> None:
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE TABLE leaked (x int)")
        leaked.append(conn)

    try:
        name = template_database(cluster, "pgcluster_test_leaky", prepare)
        url = fresh_database(cluster, name)
        assert cluster.execute("SELECT count(*) FROM leaked", dbname=dbname_of(url)) == [(0,)]
        cluster.drop_database(dbname_of(url))
        cluster.drop_database(name)
    finally:
        leaked[0].close()


def test_drop_database_forces_out_its_connections(cluster: PgCluster) -> None:
    import psycopg

    cluster.create_database("pgcluster_test_busy")
    with psycopg.connect(cluster.url("pgcluster_test_busy")) as conn:
        cluster.drop_database("pgcluster_test_busy")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    cluster.drop_database("pgcluster_test_busy")  # already gone: not an error


def test_terminate_kills_other_connections_by_filter(cluster: PgCluster, template: str) -> None:
    import psycopg

    url = fresh_database(cluster, template)
    with (
        psycopg.connect(url, application_name="victim") as victim,
        psycopg.connect(url, application_name="bystander") as bystander,
    ):
        assert cluster.terminate(dbname_of(url), application_name="victim") == 1
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert bystander.execute("SELECT count(*) FROM item").fetchone() == (2,)
        pid = bystander.info.backend_pid
        assert cluster.terminate(pid=pid) == 1
        with pytest.raises(psycopg.OperationalError):
            bystander.execute("SELECT 1")
    assert cluster.terminate(dbname_of(url)) == 0
    cluster.drop_database(dbname_of(url))


def test_restart_keeps_data_and_takes_new_connections(local: PgCluster, template: str) -> None:
    import psycopg

    url = fresh_database(local, template)
    port = local.port
    with psycopg.connect(url, autocommit=True) as before:
        before.execute("INSERT INTO item VALUES (3, 'three')")
        local.restart()
        with pytest.raises(psycopg.OperationalError):
            before.execute("SELECT 1")
    assert local.port == port
    assert local.running()
    with psycopg.connect(url) as after:
        assert after.execute("SELECT name FROM item WHERE id = 3").fetchone() == ("three",)
    local.drop_database(dbname_of(url))


def test_stop_then_start_again(local: PgCluster) -> None:
    local.stop()
    assert not local.running()
    local.start()
    assert local.running()
    assert local.execute("SELECT 1") == [(1,)]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to nobody")
def test_runs_as_nobody_when_root(local: PgCluster) -> None:
    for path in (local.root, local.data_dir, local.socket_dir, local.log_file):
        assert path is not None
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (65534, 65534), path
    for path in (local.root, local.data_dir, local.socket_dir):
        assert path is not None
        assert path.stat().st_mode & 0o777 == 0o700, path
    postmaster = int((local.data_dir / "postmaster.pid").read_text().split()[0])
    [(backend,)] = local.execute("SELECT pg_backend_pid()")
    for pid in (postmaster, backend):
        uids = next(
            line
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uids.split()[1:] == ["65534"] * 4, (pid, uids)


def test_close_stops_the_server_and_deletes_its_files() -> None:
    if os.environ.get(pgcluster.ENV_URL):
        pytest.skip(f"{pgcluster.ENV_URL} is set: no local cluster is started")
    cluster = PgCluster()
    cluster.start()
    root = cluster.root
    assert root is not None
    assert cluster.running()
    cluster.close()
    assert not root.exists()
    assert not cluster.running()


def test_a_killed_session_leaves_no_server_behind() -> None:
    if os.environ.get(pgcluster.ENV_URL):
        pytest.skip(f"{pgcluster.ENV_URL} is set: no local cluster is started")
    # os._exit skips atexit, as a SIGKILL or pytest-timeout's thread method would.
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, sys.argv[1])
        from tests.pgcluster import PgCluster
        cluster = PgCluster()
        cluster.start()
        print(cluster.root, flush=True)
        os._exit(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, timeout=60
    )
    root = Path(done.stdout.strip())
    assert done.returncode == 1, done.stderr
    assert root.name.startswith("queuectl-pg-"), done
    wait_until(lambda: not root.exists(), message=f"the watchdog to remove {root}")


def test_a_server_that_cannot_start_reports_its_log() -> None:
    if os.environ.get(pgcluster.ENV_URL):
        pytest.skip(f"{pgcluster.ENV_URL} is set: no local cluster is started")
    cluster = PgCluster(settings={"shared_buffers": "lots"})
    try:
        with pytest.raises(PgClusterError, match=r"(?s)server log.*shared_buffers"):
            cluster.start()
    finally:
        cluster.close()
