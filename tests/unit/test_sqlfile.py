"""Named queries: the parser, and the real queries.sql as installed with the package."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from queuectl.store import migrate, sqlfile

SQLITE = "queuectl.store.sqlite"

SAMPLE = """\
-- The header comment of the file is not a query.

-- name: get_thing :one
-- One thing by id.
SELECT * FROM things WHERE id = :id;

-- name: list_things :many
-- Every thing.
SELECT *
  FROM things -- trailing comments stay
 ORDER BY id;

-- name: touch :exec
-- Touch.
UPDATE things SET n = n + 1

-- name: drop_old :rowcount
-- Delete old things.
DELETE FROM things WHERE old;
"""


def test_parse_named_blocks():
    queries = sqlfile.parse(SAMPLE)
    assert list(queries) == ["get_thing", "list_things", "touch", "drop_old"]
    assert {q.name: q.kind for q in queries.values()} == {
        "get_thing": "one",
        "list_things": "many",
        "touch": "exec",
        "drop_old": "rowcount",
    }
    assert queries["get_thing"].sql == "SELECT * FROM things WHERE id = :id"
    assert queries["list_things"].sql == (
        "SELECT *\n  FROM things -- trailing comments stay\n ORDER BY id"
    )
    assert queries["touch"].sql == "UPDATE things SET n = n + 1"
    assert queries["drop_old"].sql == "DELETE FROM things WHERE old"


def test_contract_comments_are_not_part_of_the_sql():
    for query in sqlfile.parse(SAMPLE).values():
        assert "--" not in query.sql.splitlines()[0]
        assert not query.sql.endswith(";")


def test_text_without_headers_has_no_queries():
    assert sqlfile.parse("-- just a comment\nSELECT 1;\n") == {}
    assert sqlfile.parse("") == {}


def test_duplicate_name_is_refused():
    text = "-- name: a :one\nSELECT 1;\n\n-- name: a :many\nSELECT 2;\n"
    with pytest.raises(ValueError, match="query a: duplicate"):
        sqlfile.parse(text)


def test_empty_query_is_refused():
    text = "-- name: a :one\n-- only a contract, no SQL\n\n-- name: b :exec\nSELECT 2;\n"
    with pytest.raises(ValueError, match="query a"):
        sqlfile.parse(text)


# --- the real files, read from the installed package ----------------------------------


def _queries_text() -> str:
    return resources.files(SQLITE).joinpath("queries.sql").read_text(encoding="utf-8")


def _store_source() -> str:
    return resources.files(SQLITE).joinpath("store.py").read_text(encoding="utf-8")


_USE = re.compile(r"""(?:_Q\[|_one\(|_all\(|_run\()\s*["'](\w+)["']""")
_KIND_OF_CALL = {"_one": {"one"}, "_all": {"many"}, "_run": {"exec", "rowcount"}}


def test_real_queries_load_from_the_package():
    queries = sqlfile.load(SQLITE)
    assert len(queries) >= 20
    assert {"claim_job", "insert_jobs", "finish_job", "insert_attempt"} <= set(queries)
    for query in queries.values():
        assert query.sql.strip()


def test_every_header_line_is_a_valid_header():
    # A malformed header is read as a comment, merging its SQL into the query before it.
    text = _queries_text()
    headers = [line for line in text.splitlines() if line.startswith("-- name:")]
    assert len(headers) == len(sqlfile.load(SQLITE))


def test_each_query_is_one_statement():
    import apsw

    for query in sqlfile.load(SQLITE).values():
        assert apsw.complete(query.sql + ";"), query.name
        body = query.sql.replace("';'", "")
        assert ";" not in body, f"{query.name} holds more than one statement"


def test_every_query_the_store_uses_exists():
    source = _store_source()
    used = set(_USE.findall(source))
    assert used, "the pattern no longer finds query uses in store.py"
    missing = used - set(sqlfile.load(SQLITE))
    assert not missing, f"store.py uses queries missing from queries.sql: {sorted(missing)}"


def _listing_queries() -> set[str]:
    """The queries that store.common.listing() picks, for every state filter and the rest."""
    from queuectl.models import JobFilter, JobState
    from queuectl.store import common

    filters = [JobFilter(state=state) for state in [None, *JobState]]
    filters += [JobFilter(tag="t"), JobFilter(search="s"), JobFilter(queues=("a", "b"))]
    return {common.listing(where)[0] for where in filters}


def test_every_query_is_used_by_the_store():
    used = set(_USE.findall(_store_source())) | _listing_queries()
    unused = set(sqlfile.load(SQLITE)) - used
    assert not unused, f"queries.sql holds unused queries: {sorted(unused)}"


def test_store_helpers_match_each_query_kind():
    queries = sqlfile.load(SQLITE)
    calls = re.findall(r"""self\.(_one|_all|_run)\(\s*["'](\w+)["']""", _store_source())
    assert calls
    for helper, name in calls:
        assert queries[name].kind in _KIND_OF_CALL[helper], f"{helper}({name!r})"


# --- migrations discovery and planning ----------------------------------------------------


def test_discover_finds_the_initial_migration():
    found = migrate.discover(SQLITE)
    assert [m.version for m in found][:1] == [1]
    assert found[0].name == "initial"
    assert "CREATE TABLE queuectl_jobs" in found[0].sql
    assert [m.version for m in found] == sorted({m.version for m in found})


def test_pending_lists_what_is_not_applied_in_order():
    m1 = migrate.Migration(version=1, name="initial", sql="")
    m2 = migrate.Migration(version=2, name="more", sql="")
    m3 = migrate.Migration(version=3, name="most", sql="")
    assert migrate.pending([m1, m2, m3], []) == [m1, m2, m3]
    assert migrate.pending([m1, m2, m3], [1]) == [m2, m3]
    assert migrate.pending([m1, m2, m3], [1, 3]) == [m2]
    assert migrate.pending([m1, m2, m3], [3, 2, 1]) == []
    assert migrate.pending([m1], [1, 99]) == []  # an unknown applied version is no reason to fail
