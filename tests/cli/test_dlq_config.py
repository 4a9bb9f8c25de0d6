"""The dead letter queue and the settings, through the real console script and real workers."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from queuectl.store import open_store
from tests.helpers import WorkerPool, ok, run_cli, wait_until

DEFAULTS = {
    "max_retries": "3",
    "backoff_base": "2",
    "max_backoff": "3600",
    "backoff_jitter": "0",
    "job_timeout": "0",
    "poll_interval": "1",
    "output_limit": "1048576",
    "lease": "30",
    "keep_completed": "604800",
    "keep_cancelled": "604800",
}


def show(db: str | Path, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(run_cli(db, "show", job_id, "--json")))
    return data


def states(db: str | Path) -> dict[str, str]:
    return {job["id"]: job["state"] for job in json.loads(ok(run_cli(db, "list", "--json")))}


def settings(out: str) -> dict[str, str]:
    """Parse `config list` output: one `key = value` a line."""
    pairs = [line.split(" = ") for line in out.splitlines()]
    assert all(len(pair) == 2 for pair in pairs), out
    return dict(pairs)


def run_until(db: str | Path, wanted: dict[str, str]) -> None:
    """Run one worker until the listed jobs are in the wanted states, then stop it."""
    with WorkerPool(db, 1) as pool:
        wait_until(
            lambda: {k: v for k, v in states(db).items() if k in wanted} == wanted,
            timeout=20,
            message=f"jobs to reach {wanted} (worker log: {pool.log})",
        )


@pytest.fixture
def quick(db: str) -> str:
    """A queue whose failed jobs are retried at once."""
    ok(run_cli(db, "config", "set", "max_backoff", "0"))
    return db


# --- the dead letter queue ------------------------------------------------------------------


def test_failing_job_dies_and_comes_back_with_dlq_retry(quick: str) -> None:
    ok(run_cli(quick, "enqueue", "--id", "doomed", "--max-retries", "1", "--", "exit 3"))
    ok(run_cli(quick, "enqueue", "--id", "fine", "--", "true"))
    run_until(quick, {"doomed": "dead", "fine": "completed"})

    job = show(quick, "doomed")
    assert (job["state"], job["attempts"], job["last_error"]) == ("dead", 2, "exit code 3")
    assert [(a["number"], a["exit_code"]) for a in job["history"]] == [(1, 3), (2, 3)]
    dead = json.loads(ok(run_cli(quick, "dlq", "list", "--json")))
    assert [j["id"] for j in dead] == ["doomed"]

    assert ok(run_cli(quick, "dlq", "retry", "doomed")) == "retried 1 job(s): doomed\n"
    job = show(quick, "doomed")
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert len(job["history"]) == 2  # history is kept
    assert json.loads(ok(run_cli(quick, "dlq", "list", "--json"))) == []

    run_until(quick, {"doomed": "dead"})
    job = show(quick, "doomed")
    assert [a["number"] for a in job["history"]] == [1, 2, 3, 4]
    assert job["attempts"] == 2  # a fresh budget of max_retries + 1 attempts, used up again
    assert show(quick, "fine")["state"] == "completed"  # never touched by dlq retry


def test_dlq_list_and_retry_all(quick: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapped table cells
    for job_id in ("d1", "d2"):
        ok(run_cli(quick, "enqueue", "--id", job_id, "--max-retries", "0", "--", "exit 4"))
    ok(run_cli(quick, "enqueue", "--id", "done", "--", "true"))
    run_until(quick, {"d1": "dead", "d2": "dead", "done": "completed"})

    table = ok(run_cli(quick, "dlq", "list"))
    rows = [line for line in table.splitlines() if "exit code 4" in line]
    assert len(rows) == 2
    assert all(" dead " in row and " 1/1 " in row for row in rows)
    assert "d1" in table and "d2" in table and "done" not in table

    out = ok(run_cli(quick, "dlq", "retry", "--all"))
    assert out.startswith("retried 2 job(s): ")
    assert sorted(out.split(": ", 1)[1].split()) == ["d1", "d2"]
    listed = {
        j["id"]: (j["state"], j["attempts"])
        for j in json.loads(ok(run_cli(quick, "list", "--json")))
    }
    assert listed == {"d1": ("pending", 0), "d2": ("pending", 0), "done": ("completed", 1)}

    assert ok(run_cli(quick, "dlq", "retry", "--all")) == "retried 0 job(s)\n"


def test_dlq_list_of_an_empty_queue(db: str) -> None:
    assert json.loads(ok(run_cli(db, "dlq", "list", "--json"))) == []


# --- config -----------------------------------------------------------------------------------


def test_config_list_shows_every_default(db: str) -> None:
    listed = ok(run_cli(db, "config", "list"))
    assert settings(listed) == DEFAULTS
    assert [line.split(" = ")[0] for line in listed.splitlines()] == list(DEFAULTS)
    assert ok(run_cli(db, "config", "get")) == listed


@pytest.mark.parametrize(
    ("key", "value", "name", "shown"),
    [
        pytest.param("max-retries", "5", "max_retries", "5", id="hyphenated"),
        pytest.param("MAX_RETRIES", " 0 ", "max_retries", "0", id="upper-zero"),
        pytest.param("output_limit", "2MiB", "output_limit", "2097152", id="size-mib"),
        pytest.param("output-limit", "64k", "output_limit", "65536", id="size-k"),
        pytest.param("output_limit", "1 GB", "output_limit", "1073741824", id="size-gb"),
        pytest.param("output_limit", "100", "output_limit", "100", id="size-bytes"),
        pytest.param("max_backoff", "0.05", "max_backoff", "0.05", id="fraction"),
        pytest.param("backoff-base", "3s", "backoff_base", "3", id="seconds-suffix"),
        pytest.param("backoff_jitter", "1", "backoff_jitter", "1", id="jitter-max"),
        pytest.param("job_timeout", "1.5", "job_timeout", "1.5", id="timeout"),
        pytest.param("poll_interval", "0.01", "poll_interval", "0.01", id="poll-min"),
        pytest.param("lease", "10", "lease", "10", id="lease"),
    ],
)
def test_config_set_then_get(db: str, key: str, value: str, name: str, shown: str) -> None:
    assert ok(run_cli(db, "config", "set", key, value)) == f"{name} = {shown}\n"
    assert ok(run_cli(db, "config", "get", key)) == f"{shown}\n"
    with closing(open_store(db)) as store:
        assert store.get_config()[name] == shown  # stored under the canonical key


def test_config_changes_show_in_list_and_survive_other_changes(db: str) -> None:
    ok(run_cli(db, "config", "set", "max-retries", "9"))
    ok(run_cli(db, "config", "set", "output_limit", "2MiB"))
    ok(run_cli(db, "config", "set", "max_retries", "8"))  # last write wins
    listed = settings(ok(run_cli(db, "config", "list")))
    assert listed == {**DEFAULTS, "max_retries": "8", "output_limit": "2097152"}
    assert ok(run_cli(db, "config", "get", "max-retries")) == "8\n"


def test_config_change_reaches_a_running_worker(db: str) -> None:
    marker = "[queuectl: 90 earlier bytes truncated]\n"
    command = "printf '%0100d' 7"  # 99 zeros and a 7: 100 bytes, no newline
    with WorkerPool(db, 1):
        first = ok(run_cli(db, "enqueue", "--", command)).strip()
        wait_until(lambda: states(db)[first] == "completed", message="the first job")
        assert "truncated" not in ok(run_cli(db, "logs", first))

        ok(run_cli(db, "config", "set", "output_limit", "10"))

        def a_later_job_is_cut() -> str | None:
            job_id = ok(run_cli(db, "enqueue", "--", command)).strip()
            wait_until(lambda: states(db)[job_id] == "completed", message=job_id)
            out = ok(run_cli(db, "logs", job_id))
            return out if marker in out else None

        out = wait_until(a_later_job_is_cut, timeout=20, message="the worker to reload config")
    assert out is not None
    assert f"-- stdout --\n{marker}0000000007\n-- stderr --\n" in out
