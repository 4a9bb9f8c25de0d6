"""`list` for scripts and people: repeatable filters, tags, search, ids, scheduled jobs, and
nothing cut when the output is not a terminal."""

from __future__ import annotations

import json

from queuectl.store import Store
from tests.helpers import enqueue_one, ok, run_cli

LONG = "echo " + "x" * 300


def _ids(db: str, *args: str) -> list[str]:
    return ok(run_cli(db, "list", "-o", "ids", *args)).splitlines()


def test_filters_repeat_and_combine(db: str, store: Store) -> None:
    enqueue_one(store, id="a1", command="make build", queue="a", tags=["nightly"])
    enqueue_one(store, id="b1", command="make test", queue="b", tags=["nightly", "ci"])
    enqueue_one(store, id="c1", command="backup.sh", queue="c")
    ok(run_cli(db, "cancel", "c1"))
    assert _ids(db) == ["c1", "b1", "a1"]  # newest first
    assert _ids(db, "-q", "a", "-q", "b") == ["b1", "a1"]
    assert _ids(db, "--state", "pending", "--state", "cancelled") == ["c1", "b1", "a1"]
    assert _ids(db, "--state", "cancelled") == ["c1"]
    assert _ids(db, "--tag", "nightly") == ["b1", "a1"]
    assert _ids(db, "--tag", "ci", "-q", "a") == []
    assert _ids(db, "--search", "make") == ["b1", "a1"]
    assert _ids(db, "--search", "c1") == ["c1"]  # ids too
    assert [j["id"] for j in json.loads(ok(run_cli(db, "list", "--tag", "ci", "--json")))] == ["b1"]


def test_a_pipe_gets_every_character_tab_separated(db: str, store: Store) -> None:
    job_id = "x" * 150
    enqueue_one(store, id=job_id, command=LONG)
    lines = ok(run_cli(db, "list")).splitlines()  # stdout is a pipe here
    assert lines[0].split("\t") == [
        "id", "state", "queue", "pri", "attempts", "created", "command", "last error",
    ]  # fmt: skip
    fields = lines[1].split("\t")
    assert (fields[0], fields[1], fields[6]) == (job_id, "pending", LONG)


def test_a_job_waiting_for_its_run_at_shows_as_scheduled(db: str, store: Store) -> None:
    enqueue_one(store, id="later", command="true", run_at="2030-06-01T09:00:00Z")
    enqueue_one(store, id="now", command="true")
    rows = {line.split("\t")[0]: line.split("\t") for line in ok(run_cli(db, "list")).splitlines()}
    assert rows["later"][1].startswith("scheduled 2030-06-01 ")
    assert rows["now"][1] == "pending"
    [later] = [j for j in json.loads(ok(run_cli(db, "list", "--json"))) if j["id"] == "later"]
    assert (later["state"], later["run_at"]) == ("pending", "2030-06-01T09:00:00+00:00")


def test_bad_filters_are_usage_errors(db: str) -> None:
    for args in (["--tag", "a b"], ["-o", "xml"], ["-q", "a", "-q", "b c"]):
        result = run_cli(db, "list", *args)
        assert result.returncode == 2, (args, result)
        assert result.stderr.startswith("queuectl: error: ")
