"""Every bad input to the real console script is refused cleanly.

One line on stderr that names the field, exit code 2 (1 for a failed operation), no traceback,
and nothing written to the store.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from queuectl import api, spec
from queuectl.models import Attempt, AttemptEnd, Job, JobFilter, JobState, Outcome, Transition
from queuectl.store import open_store
from tests.helpers import run_cli

EXISTING = "existing"
DEAD = "dead-one"

Snapshot = tuple[list[Job], dict[str, str], dict[str, list[Attempt]]]


@pytest.fixture
def seeded(db: str) -> str:
    """A store holding a pending job, a dead job with one attempt, and a changed setting."""
    with closing(open_store(db)) as store:
        api.enqueue(
            store,
            [
                spec.from_mapping({"id": DEAD, "command": "exit 3", "priority": 9}),
                spec.from_mapping({"id": EXISTING, "command": "true"}),
            ],
        )
        api.set_config(store, "max_retries", "4")
        claim = store.claim("w-test", "host", None, 30.0)
        assert claim is not None and claim.job.id == DEAD
        now = store.now()
        outcome = Outcome(end=AttemptEnd.FAILED, started_at=now, ended_at=now, exit_code=3)
        transition = Transition(state=JobState.DEAD, attempts=1, last_error="exit code 3")
        assert store.finish(claim, outcome, transition)
    return db


def snapshot(db: str | Path) -> Snapshot:
    """Everything a failed command must leave alone: jobs, settings and attempt history."""
    with closing(open_store(db)) as store:
        jobs = store.list_jobs(JobFilter(), 10_000)
        return jobs, store.get_config(), {job.id: store.attempts(job.id) for job in jobs}


def assert_rejected(
    db: str | Path,
    *args: str,
    needle: str,
    code: int = 2,
    input: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run the CLI, expect one error line containing `needle`, and an untouched store."""
    before = snapshot(db)
    result = run_cli(db, *args, input=input, cwd=cwd)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("queuectl: error: "), lines[0]
    assert needle in lines[0], lines[0]
    assert snapshot(db) == before
    return lines[0]


def field(name: str, line: int | None = None) -> str:
    """The start of a one-line error about one field (of one JSON line)."""
    where = "" if line is None else f"line {line}: "
    return f"queuectl: error: {where}{name}: "


def _as_json(job: object) -> str:
    return job if isinstance(job, str) else json.dumps(job)


def _cmd(**fields: object) -> dict[str, object]:
    return {"command": "true", **fields}


JSON_CASES = [
    pytest.param("{bad", "job", id="invalid-json"),
    pytest.param('{"command": "true"} trailing', "job", id="trailing-garbage"),
    pytest.param(_cmd(foo=1), "foo", id="unknown-field"),
    pytest.param({}, "command", id="no-command"),
    pytest.param({"command": None}, "command", id="null-command"),
    pytest.param({"command": ""}, "command", id="empty-command"),
    pytest.param({"command": "   \t"}, "command", id="blank-command"),
    pytest.param({"command": ["ls", "-l"]}, "command", id="command-list"),
    pytest.param({"command": 5}, "command", id="command-int"),
    pytest.param({"command": "a\x00b"}, "command", id="command-nul"),
    pytest.param({"command": "\ud800"}, "command", id="command-lone-surrogate"),
    pytest.param(_cmd(id=7), "id", id="id-int"),
    pytest.param(_cmd(id=""), "id", id="id-empty"),
    pytest.param(_cmd(id="a b"), "id", id="id-space"),
    pytest.param(_cmd(id="-x"), "id", id="id-dash"),
    pytest.param(_cmd(id="x" * 201), "id", id="id-too-long"),
    pytest.param(_cmd(id="\udc80"), "id", id="id-lone-surrogate"),
    pytest.param(_cmd(priority="1"), "priority", id="priority-string"),
    pytest.param(_cmd(priority=1.5), "priority", id="priority-float"),
    pytest.param(_cmd(priority=True), "priority", id="priority-bool"),
    pytest.param(_cmd(priority=2**31), "priority", id="priority-too-big"),
    pytest.param(_cmd(run_at="2030-01-01T09:00:00"), "run_at", id="run_at-no-timezone"),
    pytest.param(_cmd(run_at="garbage"), "run_at", id="run_at-garbage"),
    pytest.param(_cmd(run_at=1_900_000_000), "run_at", id="run_at-number"),
    pytest.param(_cmd(run_at="2030-01-01T09:00:00+25:00"), "run_at", id="run_at-bad-offset"),
    pytest.param(_cmd(run_at="0001-01-01T00:00:00+01:00"), "run_at", id="run_at-before-year-1"),
    pytest.param(_cmd(run_at="2030-01-01T00:00:00Z", delay=5), "delay", id="run_at-and-delay"),
    pytest.param(_cmd(delay="soon"), "delay", id="delay-not-a-duration"),
    pytest.param(_cmd(delay="10 m"), "delay", id="delay-duration-with-a-space"),
    pytest.param(_cmd(tags="nightly"), "tags", id="tags-not-a-list"),
    pytest.param(_cmd(tags=["a b"]), "tags", id="tag-with-a-space"),
    pytest.param(_cmd(tags=[f"t{n}" for n in range(33)]), "tags", id="too-many-tags"),
    pytest.param(_cmd(delay=-1), "delay", id="delay-negative"),
    pytest.param('{"command": "true", "delay": 1e999}', "delay", id="delay-infinite"),
    pytest.param('{"command": "true", "delay": NaN}', "delay", id="delay-nan"),
    pytest.param(_cmd(delay=1e15), "delay", id="delay-past-year-9999"),
    pytest.param(_cmd(max_retries=-1), "max_retries", id="max_retries-negative"),
    pytest.param(_cmd(max_retries=1.5), "max_retries", id="max_retries-float"),
    pytest.param(_cmd(max_retries="3"), "max_retries", id="max_retries-string"),
    pytest.param(_cmd(max_retries=10_001), "max_retries", id="max_retries-too-big"),
    pytest.param(_cmd(timeout=0), "timeout", id="timeout-zero"),
    pytest.param(_cmd(timeout=-1), "timeout", id="timeout-negative"),
    pytest.param(_cmd(timeout="10"), "timeout", id="timeout-string"),
    pytest.param(_cmd(timeout=False), "timeout", id="timeout-bool"),
    pytest.param(_cmd(timeout_sec=0), "timeout_sec", id="timeout_sec-zero"),
    pytest.param(_cmd(timeout_sec="x"), "timeout_sec", id="timeout_sec-string"),
    pytest.param(_cmd(timeout=1, timeout_sec=2), "timeout_sec", id="timeout-and-timeout_sec"),
    pytest.param(_cmd(queue=""), "queue", id="queue-empty"),
    pytest.param(_cmd(queue="bad queue"), "queue", id="queue-space"),
    pytest.param(_cmd(queue="a/b"), "queue", id="queue-slash"),
    pytest.param(_cmd(queue="q" * 65), "queue", id="queue-too-long"),
    pytest.param(_cmd(queue=5), "queue", id="queue-int"),
    pytest.param(_cmd(cwd=""), "cwd", id="cwd-empty"),
    pytest.param(_cmd(cwd=5), "cwd", id="cwd-int"),
    pytest.param(_cmd(env=["A=1"]), "env", id="env-list"),
    pytest.param(_cmd(env={"A": 1}), "env", id="env-int-value"),
    pytest.param(_cmd(env={"A": None}), "env", id="env-null-value"),
    pytest.param(_cmd(env={"": "x"}), "env", id="env-empty-name"),
    pytest.param(_cmd(env={"A=B": "x"}), "env", id="env-name-with-equals"),
    pytest.param(_cmd(env={"A": "\ud800"}), "env", id="env-value-lone-surrogate"),
    pytest.param(_cmd(env={"\ud800": "x"}), "env", id="env-name-lone-surrogate"),
    pytest.param(_cmd(cwd="/tmp/\ud800"), "cwd", id="cwd-lone-surrogate"),
    pytest.param(_cmd(id="job\u202e1"), "id", id="id-bidi-override"),
    pytest.param(_cmd(id="job\u200b1"), "id", id="id-zero-width-space"),
    pytest.param(_cmd(id="\ufeffjob"), "id", id="id-byte-order-mark"),
    pytest.param(_cmd(id="job\u00a01"), "id", id="id-no-break-space"),
    pytest.param(_cmd(id="job\u009b1"), "id", id="id-c1-control"),
    pytest.param(_cmd(id="job\u20281"), "id", id="id-line-separator"),
    pytest.param(_cmd(queue="q\u202e1"), "queue", id="queue-bidi-override"),
    pytest.param(_cmd(queue="caf\u00e9"), "queue", id="queue-non-ascii"),
]


@pytest.mark.parametrize(("job", "name"), JSON_CASES)
def test_bad_json_job(seeded: str, job: object, name: str) -> None:
    line = assert_rejected(seeded, "enqueue", _as_json(job), needle=field(name))
    assert line.isprintable(), line  # invisible characters it repeats are escaped


FLAG_CASES = [
    pytest.param(["--command", ""], field("command"), id="empty-command"),
    pytest.param(["--command", " "], field("command"), id="blank-command"),
    pytest.param(["--command", "\udcff"], field("command"), id="command-not-utf8"),
    pytest.param(["--max-retries", "1"], field("command"), id="no-command"),
    pytest.param(["-c", "x", "--max-retries", "-1"], field("max_retries"), id="max-retries-neg"),
    pytest.param(["-c", "x", "--max-retries", "abc"], "'--max-retries'", id="max-retries-text"),
    pytest.param(["-c", "x", "--priority", "1.5"], "'--priority'", id="priority-float"),
    pytest.param(["-c", "x", "--priority", str(2**31)], field("priority"), id="priority-big"),
    pytest.param(["-c", "x", "--timeout", "0"], field("timeout"), id="timeout-zero"),
    pytest.param(["-c", "x", "--timeout", "-1"], field("timeout"), id="timeout-negative"),
    pytest.param(["-c", "x", "--timeout", "abc"], "'--timeout'", id="timeout-text"),
    pytest.param(["-c", "x", "--timeout", "inf"], field("timeout"), id="timeout-inf"),
    pytest.param(["-c", "x", "--delay", "-1"], field("delay"), id="delay-negative"),
    pytest.param(["-c", "x", "--delay", "nan"], field("delay"), id="delay-nan"),
    pytest.param(["-c", "x", "--delay", "1h3"], field("delay"), id="delay-bad-duration"),
    pytest.param(["-c", "x", "--tag", "no spaces"], field("tags"), id="tag-with-a-space"),
    pytest.param(["-c", "x", "--run-at", "tomorrow"], field("run_at"), id="run-at-words"),
    pytest.param(
        ["-c", "x", "--inherit-env", "--file", "j"], field("inherit-env"), id="inherit-file"
    ),
    pytest.param(["-c", "x", "--delay", "1e12"], field("delay"), id="delay-past-year-9999"),
    pytest.param(["-c", "x", "--run-at", "tomorrow"], field("run_at"), id="run-at-garbage"),
    pytest.param(
        ["-c", "x", "--run-at", "2030-01-01T09:00Z", "--delay", "1"],
        field("delay"),
        id="run-at-and-delay",
    ),
    pytest.param(["-c", "x", "--queue", "bad queue"], field("queue"), id="queue-space"),
    pytest.param(["-c", "x", "--queue", ""], field("queue"), id="queue-empty"),
    pytest.param(["-c", "x", "--env", "NOEQUALS"], field("env"), id="env-no-equals"),
    pytest.param(["-c", "x", "--env", "=value"], field("env"), id="env-empty-name"),
    pytest.param(["-c", "x", "--id", "a b"], field("id"), id="id-space"),
    pytest.param(["-c", "x", "--id", "-x"], field("id"), id="id-dash"),
    pytest.param(["-c", "x", "--id", ""], field("id"), id="id-empty"),
    pytest.param(["-c", "x", "--cwd", ""], field("cwd"), id="cwd-empty"),
    pytest.param(['{"command": "x"}', "--priority", "1"], field("priority"), id="json-and-flag"),
    pytest.param(['{"command": "x"}', "--id", "j"], field("id"), id="json-and-id"),
    pytest.param(["--command", "x", "--", "echo", "hi"], field("command"), id="command-and-dd"),
    pytest.param([], field("job"), id="nothing"),
    pytest.param(["--"], field("job"), id="nothing-after-dd"),
    pytest.param(["-c", "x", "--bogus"], "'--bogus'", id="unknown-option"),
    pytest.param(["-c"], "'-c'", id="option-without-value"),
    pytest.param(["--file", "jobs.jsonl", "-p", "1"], field("file"), id="file-and-flag"),
    pytest.param(["--file", "jobs.jsonl", "--", "true"], field("file"), id="file-and-command"),
]


# A lone argument (not after --) that is JSON but not an object: a mistake, not a command.
LONE_JSON = ["[1,2]", '"x"', "42", "null", " [1]", "true", "false", "1e5", "NaN", "[Infinity]"]
LONE_JSON.append("[" * 5000 + "]" * 5000)


@pytest.mark.parametrize("arg", [*LONE_JSON, "9" * 5000])
@pytest.mark.parametrize("where", ["alone", "before-dd"])
def test_lone_json_that_is_not_an_object_is_refused(seeded: str, arg: str, where: str) -> None:
    args = [arg] if where == "alone" else [arg, "--"]
    line = assert_rejected(seeded, "enqueue", *args, needle=field("job"))
    assert "must be a JSON object" in line and "--command" in line and "-- " in line, line
    assert len(line) < 300, line


@pytest.mark.parametrize(("args", "needle"), FLAG_CASES)
def test_bad_flags(seeded: str, args: list[str], needle: str) -> None:
    assert_rejected(seeded, "enqueue", *args, needle=needle)


GOOD = '{"id": "good1", "command": "true"}\n{"id": "good2", "command": "true"}\n'
FILE_CASES = [
    pytest.param(
        GOOD + '{"id": "bad", "command": "x", "foo": 1}\n', 2, field("foo", 3), id="unknown"
    ),
    pytest.param(GOOD + "{not json\n", 2, field("job", 3), id="invalid-json"),
    pytest.param(GOOD + '{"command": "x", "priority": "1"}\n', 2, field("priority", 3), id="type"),
    pytest.param(GOOD + "[1, 2]\n", 2, field("job", 3), id="not-an-object"),
    pytest.param(GOOD + '{"command": ""}\n' + GOOD, 2, field("command", 3), id="before-more"),
    pytest.param(
        '{"id": "g", "command": "true"}\n\n{"command": "x", "timeout": 0}\n',
        2,
        field("timeout", 3),
        id="after-blank-line",
    ),
    pytest.param("", 2, field("file"), id="empty"),
    pytest.param("\n  \n\n", 2, field("file"), id="only-blank-lines"),
    pytest.param(GOOD + '{"id": "good1", "command": "x"}\n', 1, field("id", 3), id="dup-in-file"),
    pytest.param(
        '{"id": "twice", "command": "x"}\n\n{"id": "twice", "command": "x"}\n',
        1,
        field("id", 3),
        id="dup-after-blank-line",
    ),
    pytest.param(GOOD + f'{{"id": "{EXISTING}", "command": "x"}}\n', 1, field("id", 3), id="dup"),
    pytest.param(
        GOOD + json.dumps({"command": "x" * 1_000_000}) + "\n",
        2,
        field("command", 3),
        id="command-of-1-MB",
    ),
    pytest.param(
        GOOD + json.dumps({"command": "x", "env": {"BIG": "x" * 200_000}}) + "\n",
        2,
        field("env", 3),
        id="env-entry-over-one-exec-string",
    ),
    pytest.param(
        GOOD + json.dumps({"command": "x", "env": {f"V{n}": "x" * 100_000 for n in range(30)}}),
        2,
        field("env", 3),
        id="env-over-the-exec-budget",
    ),
]


@pytest.mark.parametrize(("content", "code", "needle"), FILE_CASES)
def test_bad_jsonl_file_inserts_nothing(
    seeded: str, tmp_path: Path, content: str, code: int, needle: str
) -> None:
    (tmp_path / "jobs.jsonl").write_text(content)
    args = ["enqueue", "--file", "jobs.jsonl"]
    assert_rejected(seeded, *args, needle=needle, code=code, cwd=tmp_path)


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [case for case in FILE_CASES if case.id in ("unknown", "empty", "dup-in-file", "dup")],
)
def test_bad_jsonl_on_stdin_inserts_nothing(
    seeded: str, content: str, code: int, needle: str
) -> None:
    assert_rejected(seeded, "enqueue", "--file", "-", needle=needle, code=code, input=content)


def test_bad_line_three_names_line_three_and_keeps_the_good_lines_out(
    seeded: str, tmp_path: Path
) -> None:
    (tmp_path / "jobs.jsonl").write_text(GOOD + '{"command": "x", "max_retries": -2}\n')
    line = assert_rejected(seeded, "enqueue", "--file", str(tmp_path / "jobs.jsonl"), needle="")
    assert line.startswith(field("max_retries", 3))
    with closing(open_store(seeded)) as store:
        assert store.get_job("good1") is None
        assert store.get_job("good2") is None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d / "missing.jsonl", id="missing"),
        pytest.param(lambda d: d, id="directory"),
        pytest.param(
            lambda d: _write_bytes(d / "latin1.jsonl", b'{"command": "caf\xe9"}\n'), id="not-utf8"
        ),
    ],
)
def test_unreadable_file(seeded: str, tmp_path: Path, make: Any) -> None:
    path = make(tmp_path)
    line = assert_rejected(seeded, "enqueue", "--file", str(path), needle=field("file"))
    assert str(path) in line


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("args", "clash"),
    [
        pytest.param([json.dumps({"id": EXISTING, "command": "x"})], EXISTING, id="json"),
        pytest.param(["--id", EXISTING, "--", "x"], EXISTING, id="flags"),
        pytest.param(["--id", DEAD, "--command", "x"], DEAD, id="dead-job-id"),
    ],
)
def test_duplicate_id_exits_1(seeded: str, args: list[str], clash: str) -> None:
    line = assert_rejected(seeded, "enqueue", *args, needle=field("id"), code=1)
    assert f'"{clash}"' in line


OTHER_CASES = [
    pytest.param(["list", "--state", "bogus"], 2, "'--state'", id="list-bad-state"),
    pytest.param(["list", "--limit", "0"], 2, field("limit"), id="list-limit-zero"),
    pytest.param(["list", "--limit", "x"], 2, "'--limit'", id="list-limit-text"),
    pytest.param(["list", "--queue", "a b"], 2, field("queue"), id="list-bad-queue"),
    pytest.param(["status", "--bogus"], 2, "'--bogus'", id="status-unknown-option"),
    pytest.param(["frobnicate"], 2, "frobnicate", id="unknown-command"),
    pytest.param(["--bogus", "list"], 2, "'--bogus'", id="unknown-global-option"),
    pytest.param(["config", "get", "bogus"], 2, '"bogus"', id="config-get-unknown"),
    pytest.param(["config", "set", "bogus", "1"], 2, '"bogus"', id="config-set-unknown"),
    pytest.param(["config", "set", "max_retries"], 2, "VALUE", id="config-set-no-value"),
    pytest.param(["config", "set", "max_retries", "abc"], 2, field("max_retries"), id="cfg-text"),
    pytest.param(["config", "set", "max_retries", "1.5"], 2, field("max_retries"), id="cfg-float"),
    pytest.param(
        ["config", "set", "max_retries", "--", "-1"], 2, field("max_retries"), id="cfg-neg-dd"
    ),
    pytest.param(["config", "set", "max_retries", "-1"], 2, "max_retries", id="cfg-negative"),
    pytest.param(["config", "set", "max-backoff", "x"], 2, field("max_backoff"), id="cfg-hyphen"),
    pytest.param(["config", "set", "max_backoff", "nan"], 2, field("max_backoff"), id="cfg-nan"),
    pytest.param(["config", "set", "backoff_base", "0.5"], 2, field("backoff_base"), id="base"),
    pytest.param(["config", "set", "backoff_jitter", "2"], 2, field("backoff_jitter"), id="jit"),
    pytest.param(["config", "set", "job_timeout", "inf"], 2, field("job_timeout"), id="jt-inf"),
    pytest.param(["config", "set", "poll_interval", "0"], 2, field("poll_interval"), id="poll"),
    pytest.param(["config", "set", "output_limit", "0"], 2, field("output_limit"), id="out-zero"),
    pytest.param(["config", "set", "output_limit", "1XB"], 2, field("output_limit"), id="out-unit"),
    pytest.param(["config", "set", "lease", "0.5"], 2, field("lease"), id="lease-small"),
    pytest.param(["show", "nope"], 1, '"nope"', id="show-missing"),
    pytest.param(["show", "nope", "--json"], 1, '"nope"', id="show-missing-json"),
    pytest.param(["logs", "nope"], 1, '"nope"', id="logs-missing"),
    pytest.param(["logs", EXISTING], 1, f'"{EXISTING}"', id="logs-never-ran"),
    pytest.param(["logs", DEAD, "--attempt", "2"], 1, "attempt 2", id="logs-missing-attempt"),
    pytest.param(["logs", DEAD, "--attempt", "x"], 2, "'--attempt'", id="logs-attempt-text"),
    pytest.param(["dlq", "retry", EXISTING], 1, f'"{EXISTING}"', id="dlq-retry-pending"),
    pytest.param(["dlq", "retry", "nope"], 1, '"nope"', id="dlq-retry-missing"),
    pytest.param(["dlq", "retry", DEAD, EXISTING], 1, f'"{EXISTING}"', id="dlq-retry-mixed"),
    pytest.param(["dlq", "retry", DEAD, "nope"], 1, '"nope"', id="dlq-retry-dead-and-missing"),
    pytest.param(["dlq", "retry"], 2, field("job"), id="dlq-retry-nothing"),
    pytest.param(["dlq", "retry", DEAD, "--all"], 2, field("job"), id="dlq-retry-ids-and-all"),
    pytest.param(["dlq", "list", "--limit", "0"], 2, field("limit"), id="dlq-list-limit"),
    pytest.param(["list", "--limit", str(2**63)], 2, field("limit"), id="list-limit-past-int64"),
    pytest.param(["list", "--limit", "1000001"], 2, field("limit"), id="list-limit-too-big"),
    pytest.param(["list", "--limit", "-1"], 2, field("limit"), id="list-limit-negative"),
    pytest.param(["dlq", "list", "--limit", str(2**63)], 2, field("limit"), id="dlq-limit-huge"),
    pytest.param(["logs", DEAD, "--attempt", "0"], 2, field("attempt"), id="logs-attempt-zero"),
    pytest.param(["logs", DEAD, "--attempt", "-1"], 2, field("attempt"), id="logs-attempt-neg"),
    pytest.param(["logs", DEAD, "--attempt", str(2**64)], 2, field("attempt"), id="logs-att-huge"),
    pytest.param(["show", "\udcff"], 2, field("job"), id="show-id-not-utf8"),
    pytest.param(["logs", "\udcff"], 2, field("job"), id="logs-id-not-utf8"),
    pytest.param(["dlq", "retry", DEAD, "\udcff"], 2, field("job"), id="dlq-retry-id-not-utf8"),
    pytest.param(["show", ""], 2, field("job"), id="show-empty-id"),
    pytest.param(["worker", "stop", "--timeout", "-1"], 2, field("timeout"), id="stop-timeout-neg"),
    pytest.param(
        ["worker", "stop", "--timeout", "nan"], 2, field("timeout"), id="stop-timeout-nan"
    ),
    pytest.param(
        ["worker", "stop", "--timeout", "inf"], 2, field("timeout"), id="stop-timeout-inf"
    ),
    pytest.param(
        ["worker", "stop", "--timeout", "1e9"], 2, field("timeout"), id="stop-timeout-big"
    ),
    pytest.param(["worker", "run", "--queue", "a b"], 2, field("queue"), id="worker-run-bad-queue"),
    pytest.param(["worker", "run", "--id", "a b"], 2, field("id"), id="worker-run-bad-id"),
    pytest.param(["worker", "start", "--log", "w.log"], 2, field("log"), id="log-without-detach"),
    pytest.param(
        ["config", "set", "output_limit", "9" * 5000],
        2,
        field("output_limit"),
        id="out-5000-digits",
    ),
]


@pytest.mark.parametrize(("args", "code", "needle"), OTHER_CASES)
def test_bad_command_use(seeded: str, args: list[str], code: int, needle: str) -> None:
    assert_rejected(seeded, *args, needle=needle, code=code)


# Each is refused before the store is opened, so not even its directory is created.
BEFORE_THE_STORE = [
    pytest.param(["config", "get", "colour"], '"colour"', id="config-get-unknown"),
    pytest.param(["config", "set", "colour", "1"], '"colour"', id="config-set-unknown"),
    pytest.param(
        ["config", "set", "max_retries", "abc"], field("max_retries"), id="config-set-bad"
    ),
    pytest.param(["list", "--queue", "bad name"], field("queue"), id="list-bad-queue"),
    pytest.param(["list", "--limit", "0"], field("limit"), id="list-limit-zero"),
    pytest.param(["list", "--limit", str(2**63)], field("limit"), id="list-limit-huge"),
    pytest.param(["dlq", "list", "--limit", "0"], field("limit"), id="dlq-list-limit-zero"),
    pytest.param(["logs", "job1", "--attempt", "0"], field("attempt"), id="logs-attempt-zero"),
    pytest.param(["show", "\udcff"], field("job"), id="show-id-not-utf8"),
    pytest.param(["logs", "\udcff"], field("job"), id="logs-id-not-utf8"),
    pytest.param(["dlq", "retry", "\udcff"], field("job"), id="dlq-retry-id-not-utf8"),
    pytest.param(["dlq", "retry"], field("job"), id="dlq-retry-nothing"),
    pytest.param(["worker", "stop", "--timeout", "-1"], field("timeout"), id="stop-timeout-neg"),
    pytest.param(["worker", "stop", "--timeout", "nan"], field("timeout"), id="stop-timeout-nan"),
    pytest.param(["worker", "start", "--queue", "a b"], field("queue"), id="start-bad-queue"),
    pytest.param(["worker", "start", "--count", "0"], "'--count'", id="start-count-zero"),
    pytest.param(["worker", "start", "--detach", "--log", ""], field("log"), id="start-empty-log"),
    pytest.param(["worker", "run", "--queue", "a b"], field("queue"), id="run-bad-queue"),
    pytest.param(["enqueue", "--priority", str(2**31), "--", "true"], field("priority"), id="pri"),
    pytest.param(["enqueue", "--command", ""], field("command"), id="enqueue-empty-command"),
]


@pytest.mark.parametrize(("args", "needle"), BEFORE_THE_STORE)
def test_refused_before_the_store_is_created(tmp_path: Path, args: list[str], needle: str) -> None:
    db = tmp_path / "new" / "dir" / "q.db"
    result = run_cli(db, *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("queuectl: error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "new").exists()


def test_seeded_store_is_what_the_error_tests_assume(seeded: str) -> None:
    jobs, config, attempts = snapshot(seeded)
    assert {job.id: job.state for job in jobs} == {EXISTING: JobState.PENDING, DEAD: JobState.DEAD}
    assert config == {"max_retries": "4"}
    assert [a.number for a in attempts[DEAD]] == [1]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda d: d, "db: cannot open", id="directory"),
        pytest.param(
            lambda d: _write_bytes(d / "text.db", b"not a database\n" * 100),
            "db: ",
            id="not-sqlite",
        ),
        pytest.param(lambda d: "postgresql://localhost/q", "db: ", id="postgres-url"),
    ],
)
def test_unusable_db_is_one_line(tmp_path: Path, make: Any, needle: str) -> None:
    result = run_cli(make(tmp_path), "list")
    assert "Traceback" not in result.stderr
    assert result.returncode in (1, 2), result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("queuectl: error: " + needle), result.stderr


def test_usage_errors_point_at_help(seeded: str) -> None:
    line = assert_rejected(seeded, "enqueue", "-c", "x", "--bogus", needle="'--bogus'")
    assert line.endswith("(see `queuectl enqueue --help`)")


def test_non_utf8_id_argument_is_a_usage_error(seeded: str) -> None:
    """Bytes that are not UTF-8 must be refused before they reach SQLite."""
    assert_rejected(seeded, "enqueue", "--id", "ok\udcff", "--", "true", needle=field("id"))
