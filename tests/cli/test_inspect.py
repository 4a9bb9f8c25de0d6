"""`status`, `list`, `show` and `logs` through the real console script, after a real worker ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import WorkerPool, ok, run_cli, wait_until

MARKUP_COMMAND = 'echo "[bold]loud[/bold] [red]x"'
BACKSLASH_COMMAND = "echo x\\"
FLAKY = 'echo "attempt $QUEUECTL_ATTEMPT"; echo "oops $QUEUECTL_ATTEMPT" >&2; exit 3'
# What each job of the shared queue is, in enqueue order (list shows them newest first).
JOBS: list[tuple[str, list[str]]] = [
    ("ok", ["--", "echo out-line; echo err-line >&2"]),
    ("flaky", ["--queue", "batch", "--max-retries", "1", "--", FLAKY]),
    ("m[x]", ["--", MARKUP_COMMAND]),
    ("ghost", ["--max-retries", "0", "--", "[bold]nope_queuectl"]),
    ("slash", ["--", BACKSLASH_COMMAND]),
]
FINAL = {
    "ok": "completed",
    "flaky": "dead",
    "m[x]": "completed",
    "ghost": "dead",
    "slash": "completed",
}
LATER = [
    ("later", ["--queue", "batch", "--delay", "3600", "--", "true"]),
    ("later2", ["--delay", "3600", "--", "true"]),
]


def states(db: Path) -> dict[str, str]:
    return {job["id"]: job["state"] for job in json.loads(ok(run_cli(db, "list", "--json")))}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A queue where a worker has run five jobs (two died), plus two jobs waiting for later."""
    db = tmp_path_factory.mktemp("inspect") / "queue.db"
    ok(run_cli(db, "config", "set", "max_backoff", "0"))
    for job_id, args in JOBS:
        assert ok(run_cli(db, "enqueue", "--id", job_id, *args)) == f"{job_id}\n"
    with WorkerPool(db, 1) as pool:
        wait_until(lambda: states(db) == FINAL, timeout=20, message=f"jobs to finish ({pool.log})")
    for job_id, args in LATER:
        ok(run_cli(db, "enqueue", "--id", job_id, *args))
    return db


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make rich draw tables wide enough that no cell wraps or is cut."""
    monkeypatch.setenv("COLUMNS", "250")


def list_json(db: Path, *args: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(ok(run_cli(db, "list", "--json", *args)))
    return data


def show(db: Path, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(run_cli(db, "show", job_id, "--json")))
    return data


def cells(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    for line in table.splitlines():
        parts = [part.strip() for part in line.replace("┃", "│").split("│")[1:-1]]
        if parts and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{table}")


# --- status -------------------------------------------------------------------------------


def test_status_json_counts_per_state_and_queue(ran: Path) -> None:
    data = json.loads(ok(run_cli(ran, "status", "--json")))
    zero = dict.fromkeys(["pending", "processing", "completed", "failed", "dead", "cancelled"], 0)
    assert data == {
        "jobs": {**zero, "pending": 2, "completed": 3, "dead": 2},
        "queues": {
            "batch": {**zero, "pending": 1, "dead": 1},
            "default": {**zero, "pending": 1, "completed": 3, "dead": 1},
        },
        "paused": {},
        "last_hour": data["last_hour"],  # below
        "workers": [],  # the pool has exited and its worker deregistered
    }
    # Every attempt: ok, m[x] and slash completed; ghost could not start; flaky failed twice.
    hour = data["last_hour"]
    assert {q: (a["completed"], a["failed"]) for q, a in hour.items()} == {
        "batch": (0, 2),
        "default": (3, 1),
    }
    for seen in hour.values():
        minutes = seen["per_minute"]
        assert len(minutes) == 60
        assert sum(m["completed"] for m in minutes) == seen["completed"]
        assert sum(m["failed"] for m in minutes) == seen["failed"]
        assert [m["minute"] for m in minutes] == sorted(m["minute"] for m in minutes)
        assert 0 < seen["duration_p50"] <= seen["duration_p95"] < 20


def test_status_table(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "status"))
    assert "Jobs" in out
    assert "Workers (0)" in out
    header = cells(out, "queue")
    assert header == ["queue", "pending", "processing", "completed", "failed", "dead", "cancelled"]
    assert cells(out, "batch") == ["batch", "1", "0", "0", "0", "1", "0"]
    assert cells(out, "default") == ["default", "1", "0", "3", "0", "1", "0"]
    assert cells(out, "all") == ["all", "2", "0", "3", "0", "2", "0"]
    assert "[bold]" not in out  # the total row's markup is rendered, not printed
    hour = out[out.index("Last hour") :]
    assert cells(hour, "queue") == ["queue", "completed", "failed", "/min", "trend", "p50", "p95"]
    default = cells(hour, "default")
    assert default[:4] == ["default", "3", "1", f"{4 / 60:.1f}"]
    assert default[4].strip(), "the trend line shows the attempts"
    assert all(default[5:]), "p50 and p95 are shown"
    assert cells(hour, "batch")[:3] == ["batch", "0", "2"]


def test_status_measures_how_long_attempts_ran(db: str) -> None:
    for index in range(4):
        ok(run_cli(db, "enqueue", "--id", f"nap{index}", "--", "sleep 0.3"))
    ok(run_cli(db, "enqueue", "--id", "long", "--", "sleep 1.2"))
    burst = run_cli(db, "worker", "start", "--burst")
    assert burst.returncode == 0, burst.stderr
    seen = json.loads(ok(run_cli(db, "status", "--json")))["last_hour"]["default"]
    assert (seen["completed"], seen["failed"]) == (5, 0)
    # Nearest rank: the 3rd of 5 is a 0.3 s nap, the 5th the 1.2 s one (each read back from its
    # bucket within 4.5 %, plus what starting and reaping a process costs).
    assert 0.3 / 1.045 <= seen["duration_p50"] < 1.0
    assert 1.2 / 1.045 <= seen["duration_p95"] < 3.0


def test_status_of_an_empty_queue(db: str) -> None:
    data = json.loads(ok(run_cli(db, "status", "--json")))
    assert data["jobs"] == dict.fromkeys(
        ["pending", "processing", "completed", "failed", "dead", "cancelled"], 0
    )
    assert (data["queues"], data["workers"]) == ({}, [])


def test_status_lists_a_running_worker(db: str) -> None:
    with WorkerPool(db, 1):
        status = wait_until(
            lambda: json.loads(ok(run_cli(db, "status", "--json")))["workers"],
            message="the worker to register",
        )
    assert len(status) == 1
    worker = status[0]
    assert worker["id"].startswith("w-")
    assert (worker["queues"], worker["job_id"], worker["stop"]) == ([], None, None)
    assert worker["heartbeat_age"] >= 0


# --- list ---------------------------------------------------------------------------------


def test_list_json_is_newest_first(ran: Path) -> None:
    ids = [job["id"] for job in list_json(ran)]
    assert ids == ["later2", "later", "slash", "ghost", "m[x]", "flaky", "ok"]


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        pytest.param(["--state", "dead"], ["ghost", "flaky"], id="state-dead"),
        pytest.param(["--state", "completed"], ["slash", "m[x]", "ok"], id="state-completed"),
        pytest.param(["--state", "failed"], [], id="state-failed-none"),
        pytest.param(["--queue", "batch"], ["later", "flaky"], id="queue"),
        pytest.param(["-q", "nosuchqueue"], [], id="queue-unknown"),
        pytest.param(["--state", "pending", "--queue", "batch"], ["later"], id="state-and-queue"),
        pytest.param(["--limit", "2"], ["later2", "later"], id="limit"),
        pytest.param(["-n", "1", "--state", "dead"], ["ghost"], id="limit-and-state"),
    ],
)
def test_list_filters(ran: Path, args: list[str], ids: list[str]) -> None:
    assert [job["id"] for job in list_json(ran, *args)] == ids


def test_list_json_fields(ran: Path) -> None:
    (flaky,) = list_json(ran, "--state", "dead", "--queue", "batch")
    assert {k: flaky[k] for k in ("id", "queue", "state", "attempts", "max_retries")} == {
        "id": "flaky",
        "queue": "batch",
        "state": "dead",
        "attempts": 2,
        "max_retries": 1,
    }
    assert (flaky["last_error"], flaky["worker_id"], flaky["lease_expires_at"]) == (
        "exit code 3",
        None,
        None,
    )


def test_list_table(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "list", "-o", "table"))
    assert cells(out, "id")[:5] == ["id", "state", "queue", "pri", "attempts"]
    row = cells(out, "flaky")
    assert row[1:5] == ["dead", "batch", "0", "2/2"]
    assert row[6:] == [FLAKY, "exit code 3"]


def test_list_table_shows_markup_literally(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "list", "-o", "table"))
    assert cells(out, "m[x]")[6] == MARKUP_COMMAND
    ghost = cells(out, "ghost")
    assert ghost[6] == "[bold]nope_queuectl"
    assert "[bold]nope_queuectl" in ghost[7]  # the shell's "not found" line, as last error


def test_list_table_shows_a_trailing_backslash_once(ran: Path, wide: None) -> None:
    assert cells(ok(run_cli(ran, "list", "-o", "table")), "slash")[6] == BACKSLASH_COMMAND


# --- show ---------------------------------------------------------------------------------


def test_show_json_has_the_history_of_every_attempt(ran: Path) -> None:
    job = show(ran, "flaky")
    assert (job["state"], job["attempts"], job["last_error"]) == ("dead", 2, "exit code 3")
    history = job["history"]
    assert [a["number"] for a in history] == [1, 2]
    for attempt in history:
        assert (attempt["outcome"], attempt["exit_code"], attempt["signal"]) == ("failed", 3, None)
        assert attempt["worker_id"].startswith("w-")
        assert attempt["pid"] > 0
        assert attempt["duration"] >= 0
        assert attempt["ended_at"] >= attempt["started_at"]
    assert history[0]["ended_at"] <= history[1]["started_at"]
    assert "stdout" not in history[0]  # output is for `logs`


def test_show_json_of_a_success_and_of_a_missing_command(ran: Path) -> None:
    (success,) = show(ran, "ok")["history"]
    assert (success["outcome"], success["exit_code"], success["error"]) == ("succeeded", 0, None)
    ghost = show(ran, "ghost")
    (missing,) = ghost["history"]
    assert missing["outcome"] == "not_found"
    assert "not found" in missing["error"]
    assert ghost["last_error"] == missing["error"]


def test_show_json_of_a_job_that_never_ran(ran: Path) -> None:
    job = show(ran, "later")
    assert (job["state"], job["attempts"], job["history"]) == ("pending", 0, [])
    assert job["queue"] == "batch"


def test_show_table(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "show", "flaky"))
    assert "Job flaky" in out
    assert cells(out, "state") == ["state", "dead"]
    assert cells(out, "queue") == ["queue", "batch"]
    assert cells(out, "command") == ["command", FLAKY]
    assert cells(out, "1")[1] == "failed"
    assert cells(out, "2")[4] == "3"  # exit code


def test_show_table_shows_markup_literally(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "show", "m[x]"))
    assert "Job m[x]" in out
    assert cells(out, "id") == ["id", "m[x]"]
    assert cells(out, "command") == ["command", MARKUP_COMMAND]


def test_show_table_shows_a_trailing_backslash_once(ran: Path, wide: None) -> None:
    out = ok(run_cli(ran, "show", "slash"))
    assert cells(out, "command") == ["command", BACKSLASH_COMMAND]


# --- logs ---------------------------------------------------------------------------------


def test_logs_of_a_success(ran: Path) -> None:
    assert ok(run_cli(ran, "logs", "ok")) == (
        "== attempt 1: succeeded ==\n-- stdout --\nout-line\n-- stderr --\nerr-line\n"
    )


@pytest.mark.parametrize(
    ("args", "number"),
    [
        pytest.param([], 2, id="latest"),
        pytest.param(["--attempt", "1"], 1, id="first"),
        pytest.param(["-a", "2"], 2, id="second"),
    ],
)
def test_logs_of_one_attempt(ran: Path, args: list[str], number: int) -> None:
    assert ok(run_cli(ran, "logs", "flaky", *args)) == (
        f"== attempt {number}: failed ==\n"
        f"-- stdout --\nattempt {number}\n"
        f"-- stderr --\noops {number}\n"
    )


def test_logs_print_output_verbatim(ran: Path) -> None:
    out = ok(run_cli(ran, "logs", "m[x]"))
    assert "-- stdout --\n[bold]loud[/bold] [red]x\n-- stderr --\n" in out
    assert ok(run_cli(ran, "logs", "slash")).count("x\\\n") == 1


def test_logs_of_a_missing_command_show_the_shell_error(ran: Path) -> None:
    out = ok(run_cli(ran, "logs", "ghost"))
    assert out.startswith("== attempt 1: not_found ==\n-- stdout --\n-- stderr --\n")
    assert "[bold]nope_queuectl" in out and "not found" in out
