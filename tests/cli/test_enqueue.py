"""`queuectl enqueue` through the real console script: every input form and its defaults."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queuectl.models import Job, JobFilter, JobState
from queuectl.store import Store
from tests.helpers import ok, run_cli

GENERATED_ID = re.compile(r"[0-9a-f]{24}")


def enqueue(db: str | Path, *args: str, cwd: Path | None = None) -> str:
    """Enqueue one job through the CLI and return the id it printed."""
    out = ok(run_cli(db, "enqueue", *args, cwd=cwd))
    assert out.endswith("\n") and out.count("\n") == 1, out
    return out.strip()


def all_jobs(store: Store) -> list[Job]:
    """Every stored job, newest first."""
    return store.list_jobs(JobFilter(), 1000)


def stored(store: Store, job_id: str) -> Job:
    job = store.get_job(job_id)
    assert job is not None, f"job {job_id} was not stored"
    return job


def test_positional_json_prints_the_id_and_stores_every_field(
    db: str, store: Store, tmp_path: Path
) -> None:
    spec = {
        "id": "job1",
        "command": "sleep 2",
        "priority": 5,
        "run_at": "2030-01-31T09:00:00+02:00",
        "max_retries": 2,
        "timeout": 12.5,
        "queue": "emails",
        "cwd": str(tmp_path),
        "env": {"GREETING": "hi", "EMPTY": ""},
    }
    assert enqueue(db, json.dumps(spec)) == "job1"
    job = stored(store, "job1")
    assert (job.command, job.priority, job.queue) == ("sleep 2", 5, "emails")
    assert (job.max_retries, job.timeout, job.cwd) == (2, 12.5, str(tmp_path))
    assert job.env == {"GREETING": "hi", "EMPTY": ""}
    assert job.run_at == datetime(2030, 1, 31, 7, 0, tzinfo=UTC)
    assert (job.state, job.attempts) == (JobState.PENDING, 0)


def test_flags_store_every_field(db: str, store: Store, tmp_path: Path) -> None:
    job_id = enqueue(
        db,
        "--id=flagged",
        "--command",
        "echo $GREETING",
        "--priority",
        "-5",
        "--queue",
        "reports.daily",
        "--max-retries",
        "0",
        "--timeout",
        "30",
        "--run-at",
        "2031-06-01T12:00:00Z",
        "--env",
        "GREETING=hello=world",
        "--env",
        "OTHER=",
        "--cwd",
        str(tmp_path),
    )
    assert job_id == "flagged"
    job = stored(store, "flagged")
    assert (job.command, job.priority, job.queue) == ("echo $GREETING", -5, "reports.daily")
    assert (job.max_retries, job.timeout, job.cwd) == (0, 30.0, str(tmp_path))
    assert job.env == {"GREETING": "hello=world", "OTHER": ""}
    assert job.run_at == datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


def test_short_flags(db: str, store: Store) -> None:
    job_id = enqueue(db, "-c", "true", "-p", "3", "-q", "fast")
    job = stored(store, job_id)
    assert (job.command, job.priority, job.queue) == ("true", 3, "fast")


def test_defaults_when_only_a_command_is_given(db: str, store: Store) -> None:
    job_id = enqueue(db, "--command", "true")
    assert GENERATED_ID.fullmatch(job_id)
    job = stored(store, job_id)
    assert (job.queue, job.priority, job.max_retries, job.timeout) == ("default", 0, 3, None)
    assert job.env == {}
    assert abs(job.run_at - job.created_at) < timedelta(seconds=1)


@pytest.mark.parametrize("form", ["flag", "json"])
def test_delay_puts_run_at_in_the_future(db: str, store: Store, form: str) -> None:
    if form == "flag":
        job_id = enqueue(db, "--delay", "3600", "--command", "true")
    else:
        job_id = enqueue(db, json.dumps({"command": "true", "delay": 3600}))
    job = stored(store, job_id)
    assert abs(job.run_at - job.created_at - timedelta(hours=1)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("words", "command"),
    [
        pytest.param(["echo", "hi there"], "echo 'hi there'", id="quoted-word"),
        pytest.param(["echo", "hi", "there"], "echo hi there", id="plain-words"),
        pytest.param(["echo hi; exit 3"], "echo hi; exit 3", id="one-word-raw"),
        pytest.param(["ls"], "ls", id="single"),
        pytest.param(["echo", "$HOME", "a;b"], "echo '$HOME' 'a;b'", id="shell-chars"),
        pytest.param(["sleep", "--", "2"], "sleep -- 2", id="inner-double-dash"),
    ],
)
def test_words_after_double_dash_become_the_command(
    db: str, store: Store, words: list[str], command: str
) -> None:
    job_id = enqueue(db, "--", *words)
    assert GENERATED_ID.fullmatch(job_id), job_id
    assert stored(store, job_id).command == command


@pytest.mark.parametrize(
    ("args", "command"),
    [
        pytest.param(["--", "[1,2]"], "[1,2]", id="json-list-after-dd"),
        pytest.param(["--", "true"], "true", id="json-true-after-dd"),
        pytest.param(["--", "42"], "42", id="json-number-after-dd"),
        pytest.param(["--", "{ echo hi; }"], "{ echo hi; }", id="brace-group-after-dd"),
        pytest.param(["--", '{"command": "x"}'], '{"command": "x"}', id="json-object-after-dd"),
        pytest.param(["--command", "null"], "null", id="json-null-as-command-flag"),
        pytest.param(["echo hi"], "echo hi", id="lone-non-json"),
        pytest.param(["[ -d / ]"], "[ -d / ]", id="lone-test-bracket"),
        pytest.param(["[1,"], "[1,", id="lone-broken-json-list"),
        pytest.param(["--", "NaN"], "NaN", id="json-nan-after-dd"),
    ],
)
def test_a_command_that_looks_like_json_after_dd_or_flag(
    db: str, store: Store, args: list[str], command: str
) -> None:
    assert stored(store, enqueue(db, *args)).command == command


def test_double_dash_combines_with_flags(db: str, store: Store) -> None:
    job_id = enqueue(db, "--id", "combo", "--queue", "q1", "--", "echo", "a b")
    job = stored(store, job_id)
    assert (job_id, job.queue, job.command) == ("combo", "q1", "echo 'a b'")


def test_generated_ids_are_unique(db: str) -> None:
    first = enqueue(db, "--", "true")
    second = enqueue(db, "--", "true")
    assert first != second


JSONL = (
    '{"id": "f1", "command": "echo one"}\n'
    "\n"
    '{"id": "f2", "command": "echo two", "queue": "other", "priority": 2}\n'
    '   {"command": "echo three", "timeout_sec": 4}   \n'
)


@pytest.mark.parametrize("source", ["path", "stdin"])
def test_file_enqueues_every_line(db: str, store: Store, tmp_path: Path, source: str) -> None:
    if source == "path":
        path = tmp_path / "jobs.jsonl"
        path.write_text(JSONL)
        result = run_cli(db, "enqueue", "--file", str(path))
    else:
        result = run_cli(db, "enqueue", "--file", "-", input=JSONL)
    printed = ok(result).splitlines()
    jobs = all_jobs(store)
    assert printed == [job.id for job in reversed(jobs)]  # the ids made, one a line, in order
    assert [job.command for job in jobs] == ["echo three", "echo two", "echo one"]
    assert [job.id for job in jobs][1:] == ["f2", "f1"]
    assert GENERATED_ID.fullmatch(jobs[0].id)
    assert (jobs[0].timeout, jobs[1].queue, jobs[1].priority) == (4.0, "other", 2)


def test_short_file_flag(db: str, store: Store, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text('{"id": "only", "command": "true"}')  # no final newline
    assert ok(run_cli(db, "enqueue", "-f", str(path))) == "only\n"
    assert stored(store, "only").command == "true"


def test_default_cwd_is_the_callers_directory(db: str, store: Store, tmp_path: Path) -> None:
    caller = tmp_path / "caller"
    caller.mkdir()
    job_id = enqueue(db, "--", "pwd", cwd=caller)
    assert stored(store, job_id).cwd == str(caller)


def test_relative_cwd_is_taken_from_the_callers_directory(
    db: str, store: Store, tmp_path: Path
) -> None:
    caller = tmp_path / "caller"
    caller.mkdir()
    flag_id = enqueue(db, "--cwd", "sub/dir", "--", "pwd", cwd=caller)
    json_id = enqueue(db, json.dumps({"command": "pwd", "cwd": "sub"}), cwd=caller)
    assert stored(store, flag_id).cwd == str(caller / "sub" / "dir")
    assert stored(store, json_id).cwd == str(caller / "sub")


def test_file_jobs_default_to_the_callers_directory(db: str, store: Store, tmp_path: Path) -> None:
    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "jobs.jsonl").write_text('{"id": "a", "command": "pwd"}\n')
    ok(run_cli(db, "enqueue", "--file", "jobs.jsonl", cwd=caller))
    assert stored(store, "a").cwd == str(caller)


@pytest.mark.parametrize(
    ("spec", "timeout"),
    [
        pytest.param({"timeout_sec": 5}, 5.0, id="timeout_sec"),
        pytest.param({"timeout": 2.5}, 2.5, id="timeout"),
        pytest.param({"timeout": None, "timeout_sec": 7}, 7.0, id="null-timeout"),
        pytest.param({"timeout": 8, "timeout_sec": None}, 8.0, id="null-timeout_sec"),
    ],
)
def test_timeout_sec_is_an_alias_of_timeout(
    db: str, store: Store, spec: dict[str, object], timeout: float
) -> None:
    job_id = enqueue(db, json.dumps({"command": "true", **spec}))
    assert stored(store, job_id).timeout == timeout


def test_null_fields_mean_the_default(db: str, store: Store) -> None:
    fields = ["id", "priority", "run_at", "delay", "max_retries", "timeout", "queue", "cwd", "env"]
    job_id = enqueue(db, json.dumps({"command": "true", **dict.fromkeys(fields)}))
    assert GENERATED_ID.fullmatch(job_id)
    job = stored(store, job_id)
    assert (job.queue, job.priority, job.max_retries, job.timeout) == ("default", 0, 3, None)


def test_default_max_retries_is_read_from_config_at_enqueue_time(db: str, store: Store) -> None:
    before = enqueue(db, "--", "true")
    ok(run_cli(db, "config", "set", "max_retries", "7"))
    after = enqueue(db, "--", "true")
    explicit = enqueue(db, "--max-retries", "0", "--", "true")
    assert stored(store, before).max_retries == 3  # config changes do not rewrite queued jobs
    assert stored(store, after).max_retries == 7
    assert stored(store, explicit).max_retries == 0  # 0 is a value, not "use the default"


def test_job_timeout_config_is_the_default_timeout(db: str, store: Store) -> None:
    none = enqueue(db, "--", "true")  # job_timeout defaults to 0: no timeout
    ok(run_cli(db, "config", "set", "job-timeout", "45"))
    defaulted = enqueue(db, "--", "true")
    explicit = enqueue(db, "--timeout", "3", "--", "true")
    ok(run_cli(db, "config", "set", "job_timeout", "0"))
    zero_again = enqueue(db, "--", "true")
    assert stored(store, none).timeout is None
    assert stored(store, defaulted).timeout == 45.0
    assert stored(store, explicit).timeout == 3.0
    assert stored(store, zero_again).timeout is None


def test_list_json_shows_what_enqueue_stored(db: str, tmp_path: Path) -> None:
    enqueue(db, "--id", "seen", "--env", "A=1", "--cwd", str(tmp_path), "--", "echo", "x y")
    listed = json.loads(ok(run_cli(db, "list", "--json")))
    assert len(listed) == 1
    job = listed[0]
    assert {k: job[k] for k in ("id", "command", "state", "env", "cwd", "timeout")} == {
        "id": "seen",
        "command": "echo 'x y'",
        "state": "pending",
        "env": {"A": "1"},
        "cwd": str(tmp_path),
        "timeout": None,
    }
    assert (job["attempts"], job["max_retries"], job["worker_id"]) == (0, 3, None)


# --- conveniences: durations, local times, tags, the shell's environment, --wait --------------


@pytest.mark.parametrize(("delay", "seconds"), [("90", 90), ("10m", 600), ("1h30m", 5400)])
def test_delay_takes_seconds_or_a_duration(db: str, store: Store, delay: str, seconds: int) -> None:
    job_id = ok(run_cli(db, "enqueue", "--delay", delay, "--", "true")).strip()
    job = stored(store, job_id)
    assert abs((job.run_at - job.created_at).total_seconds() - seconds) < 1
    in_json = ok(run_cli(db, "enqueue", json.dumps({"command": "true", "delay": delay}))).strip()
    job = stored(store, in_json)
    assert abs((job.run_at - job.created_at).total_seconds() - seconds) < 1


def test_run_at_without_a_zone_is_local_time(db: str, store: Store, tmp_path: Path) -> None:
    env_tz = {"TZ": "America/New_York"}
    import os
    import subprocess

    from tests.helpers import QUEUECTL

    done = subprocess.run(
        [QUEUECTL, "--db", db, "enqueue", "--run-at", "2030-06-01 09:00", "--", "true"],
        capture_output=True,
        text=True,
        env={**os.environ, **env_tz},
        check=True,
    )
    job = stored(store, done.stdout.strip())
    assert job.run_at == datetime(2030, 6, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_tags_are_stored_and_shown(db: str, store: Store) -> None:
    job_id = ok(run_cli(db, "enqueue", "-t", "nightly", "--tag", "db", "--", "true")).strip()
    assert stored(store, job_id).tags == ("nightly", "db")
    shown = json.loads(ok(run_cli(db, "show", job_id, "--json")))
    assert shown["tags"] == ["nightly", "db"]


def test_inherit_env_snapshots_the_shell_and_env_flags_win(db: str, store: Store) -> None:
    import os
    import subprocess

    from tests.helpers import QUEUECTL

    done = subprocess.run(
        [QUEUECTL, "--db", db, "enqueue", "--inherit-env", "--env", "B=flag", "--", "true"],
        capture_output=True,
        text=True,
        env={**os.environ, "A_FROM_SHELL": "yes", "B": "shell"},
        check=True,
    )
    env = stored(store, done.stdout.strip()).env
    assert (env["A_FROM_SHELL"], env["B"]) == ("yes", "flag")
    plain = ok(run_cli(db, "enqueue", "--", "true")).strip()
    assert stored(store, plain).env == {}


def test_enqueue_wait_reports_and_exits_with_the_jobs_state(db: str, store: Store) -> None:
    from tests.helpers import WorkerPool

    with WorkerPool(db, 1):
        good = run_cli(db, "enqueue", "--id", "good", "--wait", "--", "true")
        assert (good.returncode, good.stdout) == (0, "good\ngood: completed\n")
        bad = run_cli(db, "enqueue", "--id", "bad", "--max-retries", "0", "--wait", "--", "false")
        assert (bad.returncode, bad.stdout) == (1, "bad\nbad: dead\n")
