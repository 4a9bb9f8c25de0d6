"""Schema migrations: creation, idempotence, upgrades and concurrent openers, on each backend
(`db`), and what is SQLite's own (its file's modes, WAL, old files) on a real SQLite file."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize
import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest

from queuectl import errors
from queuectl.models import AttemptEnd, JobState, Selection
from queuectl.store import is_postgres, location, migrate, open_store, sqlfile
from queuectl.store.sqlite.store import SqliteStore

SQLITE = "queuectl.store.sqlite"
POSTGRES = "queuectl.store.postgres"
TABLES = {"queuectl_jobs", "queuectl_attempts", "queuectl_workers", "queuectl_config"}
PG_TABLES = {"jobs", "attempts", "workers", "config"}
KNOWN = [(m.version, m.name) for m in migrate.discover(SQLITE)]
PG_KNOWN = [(m.version, m.name) for m in migrate.discover(POSTGRES)]


def _postgres(db: str | Path) -> bool:
    return isinstance(db, str) and is_postgres(db)


def rows(db: str | Path, sqlite_sql: str, postgres_sql: str) -> list[tuple[Any, ...]]:
    """What a query finds in a store's database, asked directly (not through the store)."""
    if _postgres(db):
        where = location.parse_postgres(str(db))
        options = f"-c search_path={where.schema}"
        with psycopg.connect(where.conninfo, options=options, autocommit=True) as conn:
            return conn.execute(postgres_sql).fetchall()
    with contextlib.closing(apsw.Connection(str(db))) as con:
        return con.execute(sqlite_sql).fetchall()


def versions(db: str | Path) -> list[tuple[int, str, object]]:
    """The migrations recorded as applied: version, name and when."""
    found = rows(
        db,
        "SELECT version, name, applied_at FROM queuectl_schema_version ORDER BY version",
        "SELECT version, name, applied_at FROM schema_version ORDER BY version",
    )
    return [(int(v), str(n), a) for v, n, a in found]


def tables(db: str | Path) -> set[str]:
    """The tables of the store (on PostgreSQL: in its schema)."""
    found = rows(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
    )
    return {str(name) for (name,) in found}


def known(db: str | Path) -> list[tuple[int, str]]:
    """The migrations of the store's backend, as (version, name)."""
    return PG_KNOWN if _postgres(db) else KNOWN


def queue_tables(db: str | Path) -> set[str]:
    """The tables every migrated store has."""
    return PG_TABLES if _postgres(db) else TABLES


def fresh(db: str, name: str) -> str:
    """Another, empty queue beside `db`: a new file, or a new schema in the same database."""
    return f"{db}?schema={name}" if is_postgres(db) else str(Path(db).with_name(f"{name}.db"))


def test_open_creates_a_private_migrated_file(tmp_path):
    path = tmp_path / "new" / "dir" / "queue.db"
    store = open_store(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert tables(path) >= TABLES
        assert [(v, n) for v, n, _ in versions(path)] == KNOWN
        assert KNOWN[:2] == [(1, "initial"), (2, "problem_index")]
    finally:
        store.close()


def test_wal_files_are_private_too(store, db_path):
    store.set_config("lease", "5")  # a write, so that the WAL exists
    for suffix in ("-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side


def test_the_store_uses_wal(store, db_path):
    with apsw.Connection(str(db_path)) as db:
        ((mode,),) = db.execute("PRAGMA journal_mode").fetchall()
    db.close()
    assert mode == "wal"


def test_a_second_migrate_is_a_no_op(store, db):
    first = versions(db)
    assert [(v, n) for v, n, _ in first] == known(db)
    store.set_config("lease", "9")
    store.migrate()
    again = open_store(db)
    again.migrate()
    again.close()
    assert versions(db) == first  # same rows, same applied_at
    assert store.get_config() == {"lease": "9"}


def indexes(path: Path) -> set[str]:
    with apsw.Connection(str(path)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    db.close()
    return {str(name) for (name,) in rows}


def test_pending_migrations_are_applied_in_one_go(store, db, monkeypatch):
    real = migrate.discover(POSTGRES if is_postgres(db) else SQLITE)
    last = real[-1].version
    extra = [
        migrate.Migration(
            version=last + 1, name="add_notes", sql="-- notes\nCREATE TABLE notes (x INTEGER);\n"
        ),
        migrate.Migration(
            version=last + 2,
            name="fill_notes",
            sql="INSERT INTO notes VALUES (1);\nINSERT INTO notes VALUES (2);\n",
        ),
    ]
    monkeypatch.setattr(migrate, "discover", lambda package: [*real, *extra])
    store.migrate()
    assert [(v, n) for v, n, _ in versions(db)] == [
        *known(db),
        (last + 1, "add_notes"),
        (last + 2, "fill_notes"),
    ]
    count = "SELECT count(*) FROM notes"
    assert rows(db, count, count) == [(2,)]
    store.migrate()  # nothing pending now
    assert len(versions(db)) == len(known(db)) + 2


def test_a_version_1_file_is_upgraded_with_its_jobs(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    real = migrate.discover(SQLITE)
    monkeypatch.setattr(migrate, "discover", lambda package: real[:1])
    open_store(path).close()
    with contextlib.closing(apsw.Connection(str(path))) as con, con:  # a job as version 1 stored it
        con.execute(
            "INSERT INTO queuectl_jobs (id, command, queue, state, max_retries, run_at,"
            " created_at, updated_at) VALUES ('kept', 'true', 'default', 'dead', 3, 1, 1, 1)"
        )
        con.execute(
            "INSERT INTO queuectl_attempts (job_seq, number, started_at, ended_at, outcome)"
            " VALUES (1, 1, 1, 2, 'failed')"
        )
    assert "queuectl_jobs_state" in indexes(path)
    monkeypatch.setattr(migrate, "discover", lambda package: real)
    new = open_store(path)
    try:
        assert [(v, n) for v, n, _ in versions(path)] == KNOWN
        assert "queuectl_jobs_state" not in indexes(path)
        assert "queuectl_jobs_problems" in indexes(path)
        job = new.get_job("kept")
        assert job is not None
        assert (job.command, job.tags, job.control) == ("true", (), None)
        assert [a.end for a in new.attempts("kept")] == [AttemptEnd.FAILED]
        assert new.counts().by_queue == {"default": {JobState.DEAD: 1}}
        # The widened CHECKs (edited in place by migration 5) hold on this connection at once.
        retried = new.retry(Selection(ids=("kept",)))
        assert retried == ["kept"]
        assert new.cancel(Selection(ids=("kept",))) == {"kept": JobState.CANCELLED}
        assert rows(path, "PRAGMA integrity_check", "") == [("ok",)]
    finally:
        new.close()
    with contextlib.closing(apsw.Connection(str(path))) as con, pytest.raises(apsw.ConstraintError):
        con.execute("UPDATE queuectl_jobs SET state = 'bogus'")  # the CHECK still checks


OLD_JOBS = [("p1", "default", "pending"), ("p2", "default", "pending"), ("d1", "default", "dead"),
            ("m1", "mail", "completed"), ("m2", "mail", "processing")]  # fmt: skip


def test_counts_start_from_the_jobs_stored_before_they_were_kept(db, monkeypatch):
    real = migrate.discover(POSTGRES if is_postgres(db) else SQLITE)
    counts_at = [m.name for m in real].index("job_counts")
    where = fresh(db, "before_counts")
    monkeypatch.setattr(migrate, "discover", lambda package: real[:counts_at])
    open_store(where).close()
    insert = (
        "INSERT INTO {} (id, command, queue, state, max_retries, run_at, created_at, updated_at)"
        " VALUES ('{}', 'true', '{}', '{}', 3, {}, {}, {})"
    )
    if is_postgres(db):
        parts = location.parse_postgres(where)
        with psycopg.connect(parts.conninfo, options=f"-c search_path={parts.schema}") as conn:
            for job in OLD_JOBS:
                conn.execute(insert.format("jobs", *job, *["now()"] * 3))
    else:
        with contextlib.closing(apsw.Connection(where)) as con, con:
            for job in OLD_JOBS:
                con.execute(insert.format("queuectl_jobs", *job, 1, 1, 1))
    monkeypatch.setattr(migrate, "discover", lambda package: real)
    new = open_store(where)
    try:
        assert new.counts().by_queue == {
            "default": {JobState.PENDING: 2, JobState.DEAD: 1},
            "mail": {JobState.COMPLETED: 1, JobState.PROCESSING: 1},
        }
        assert sorted(new.retry(Selection(ids=("d1", "m1")))) == ["d1", "m1"]
        assert new.counts().by_queue == {
            "default": {JobState.PENDING: 3},
            "mail": {JobState.PENDING: 1, JobState.PROCESSING: 1},
        }
    finally:
        new.close()


def test_a_failing_migration_leaves_nothing_behind(store, db, monkeypatch):
    real = migrate.discover(POSTGRES if is_postgres(db) else SQLITE)
    broken = migrate.Migration(
        version=real[-1].version + 1,
        name="broken",
        sql="CREATE TABLE half (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(migrate, "discover", lambda package: [*real, broken])
    with pytest.raises((errors.StoreUnavailable, apsw.SQLError, psycopg.Error)):
        store.migrate()
    assert "half" not in tables(db)
    assert [(v, n) for v, n, _ in versions(db)] == known(db)


def _open_and_migrate(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(timeout=60)
    store = open_store(path)
    store.migrate()
    store.set_config("opened_by", str(multiprocessing.current_process().name))
    store.close()


@pytest.mark.parametrize("round_", range(2))
def test_four_processes_open_a_fresh_store_at_once(db, round_):
    where = fresh(db, f"race_{round_}")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_open_and_migrate, args=(where, barrier), name=f"p{i}") for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert [(v, n) for v, n, _ in versions(where)] == known(db)
    assert tables(where) >= queue_tables(db)
    if not is_postgres(db):
        assert stat.S_IMODE(Path(where).stat().st_mode) == 0o600


def test_many_connections_open_fresh_stores_at_once(db):
    # Threads race like processes here (one connection each) but start in microseconds, so
    # many rounds fit in a fraction of a second: the race window is hit reliably.
    for round_ in range(25):
        where = fresh(db, f"threads_{round_}")
        start = threading.Barrier(4)

        def run(where: str = where, start: threading.Barrier = start) -> None:
            start.wait(timeout=30)
            open_store(where).close()

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(run) for _ in range(4)]
            for f in futures:
                f.result(timeout=60)
        assert len(versions(where)) == len(known(db))


def test_every_query_compiles_against_the_schema(store, db_path):
    with apsw.Connection(str(db_path)) as db:
        for query in sqlfile.load(SQLITE).values():
            params = dict.fromkeys(re.findall(r":(\w+)", query.sql))
            db.execute(f"EXPLAIN {query.sql}", params)
    db.close()


def test_a_file_that_is_not_sqlite_is_unavailable(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(errors.StoreUnavailable) as info:
        open_store(path)
    assert str(path) in str(info.value)


def test_an_unopenable_path_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.StoreUnavailable):
        SqliteStore(blocker / "queue.db")


BACKEND_ONLY = {
    "postgres": {
        "lock_migrations",
        "create_schema",
        "listen",
        "select_clock",
        "select_existing_ids",
        "compact_counts",
        "compact_activity",
        "mark_waited",
    },
    "sqlite": {"count_new_jobs", "count_attempt"},
}
"""Queries of one backend's own mechanisms: migration locks, LISTEN, the server's clock, and how
each keeps its job counts and activity (PostgreSQL: logs appended to by its triggers and by
insert_attempt, folded by compact_counts and compact_activity; SQLite: counts updated in place,
a bulk enqueue's added by count_new_jobs, an attempt's activity by count_attempt)."""


def test_both_backends_name_their_queries_alike():
    names = {
        backend: set(sqlfile.load(f"queuectl.store.{backend}")) - BACKEND_ONLY[backend]
        for backend in BACKEND_ONLY
    }
    assert names["postgres"] == names["sqlite"]
    assert all(only.isdisjoint(names["sqlite"]) for only in BACKEND_ONLY.values())
