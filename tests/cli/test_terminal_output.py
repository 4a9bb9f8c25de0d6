"""What queuectl prints cannot drive the terminal: a job's text is shown, never obeyed.

A command, an error, a worker id or a job's output may carry terminal escape sequences
(`\\x1b]0;title\\x07` sets the window title, `\\x1b[2J` clears the screen), carriage returns,
C1 controls or bidirectional overrides. Tables show them as visible escapes on a terminal and in
a pipe; `logs` escapes them on a terminal (keeping newlines and tabs) and passes the bytes
through unchanged to a pipe; JSON is pure ASCII. The terminal cases run the real console script
with its stdout on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import tty
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from queuectl import api, spec
from queuectl.models import AttemptEnd, JobState, Outcome, Transition, WorkerInfo
from queuectl.store import open_store
from tests.helpers import QUEUECTL

COMMAND = "echo \x1b]0;title\x07 \x1b[2J \r \x9b31m \u202eevil \x7f\tq\nz"
ERROR = "boom\x1b[2J\u2066"
STDOUT = b"red \x1b[31mRED\x1b[0m\tcol\nline2\rover \xc2\x9b \xff\n"
STDERR = "\u202ertl\n".encode()
WORKER = "w-\x1b[2J"
# What must never reach a terminal raw, and the visible escape it is shown as instead.
RAW_AND_SHOWN = [
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("\x1b[2J", "\\x1b[2J"),
    ("\r", "\\r"),
    ("\x9b", "\\x9b"),
    ("\u202e", "\\u202e"),
    ("\u2066", "\\u2066"),
    ("\x7f", "\\x7f"),
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose job has a hostile command, a failed attempt with hostile output, and error."""
    db = tmp_path_factory.mktemp("terminal") / "queue.db"
    with closing(open_store(db)) as store:
        api.enqueue(store, [spec.from_mapping({"id": "evil", "command": COMMAND})])
        claim = store.claim("w-test", "host", None, 30.0)
        assert claim is not None
        now = store.now()
        outcome = Outcome(
            end=AttemptEnd.FAILED,
            started_at=now,
            ended_at=now,
            exit_code=3,
            error=ERROR,
            stdout=STDOUT,
            stderr=STDERR,
        )
        assert store.finish(
            claim, outcome, Transition(state=JobState.DEAD, attempts=1, last_error=ERROR)
        )
    return db


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**env, "COLUMNS": "400", "LINES": "50", "TERM": "xterm-256color"}


def on_terminal(db: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stdout on a pseudo-terminal; return its code, output and stderr."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no "\n" -> "\r\n" translation: what the CLI writes arrives as written
    try:
        proc = subprocess.Popen(
            [QUEUECTL, "--db", str(db), *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.stderr is not None
        with proc.stderr:
            err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, b"".join(chunks).decode("utf-8", errors="surrogateescape"), err


def assert_shown_not_obeyed(out: str, *, expect: list[str]) -> None:
    for raw, _ in RAW_AND_SHOWN:
        assert raw not in out, f"{raw!r} reached the terminal raw:\n{out!r}"
    for shown in expect:
        assert shown in out, f"{shown!r} not shown in:\n{out}"


def test_list_on_a_terminal_shows_escapes(hostile: Path) -> None:
    code, out, err = on_terminal(hostile, "list")
    assert (code, err) == (0, "")
    expect = ["\\x1b]0;title\\x07", "\\x1b[2J", "\\r", "\\x9b31m", "\\u202eevil", "\\t", "\\n"]
    assert_shown_not_obeyed(out, expect=[*expect, "boom\\x1b[2J\\u2066"])
    assert "\x1b[" in out  # rich's own styling still reaches the terminal: it is a terminal


def test_dlq_list_on_a_terminal_shows_escapes(hostile: Path) -> None:
    code, out, _ = on_terminal(hostile, "dlq", "list")
    assert code == 0
    assert_shown_not_obeyed(out, expect=["\\x1b]0;title\\x07", "boom\\x1b[2J\\u2066"])


def test_show_on_a_terminal_shows_escapes(hostile: Path) -> None:
    code, out, _ = on_terminal(hostile, "show", "evil")
    assert code == 0
    assert_shown_not_obeyed(out, expect=["\\x1b]0;title\\x07", "boom\\x1b[2J\\u2066"])


def test_tables_in_a_pipe_show_escapes_too(hostile: Path) -> None:
    for args in (["list"], ["show", "evil"], ["dlq", "list"]):
        result = subprocess.run(
            [QUEUECTL, "--db", str(hostile), *args],
            capture_output=True,
            text=True,
            env=_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert_shown_not_obeyed(result.stdout, expect=["\\x1b]0;title\\x07", "\\x1b[2J"])
        assert "\x1b" not in result.stdout  # and rich adds no styling of its own to a pipe


@pytest.fixture
def hostile_worker(hostile: Path) -> Iterator[str]:
    """A registered worker whose id and host carry escapes, forgotten afterwards."""
    with closing(open_store(hostile)) as store:
        now = store.now()
        info = WorkerInfo(
            id=WORKER, host="h\u202eost", pid=os.getpid(), queues=("default",),
            started_at=now, heartbeat_at=now, job_id="evil",
            expires_at=now + timedelta(hours=1),
        )  # fmt: skip
        store.register_worker(info, 3600.0)
        try:
            yield WORKER
        finally:
            store.deregister_worker(WORKER)


def test_status_on_a_terminal_shows_escapes(hostile: Path, hostile_worker: str) -> None:
    code, out, _ = on_terminal(hostile, "status")
    assert code == 0
    assert_shown_not_obeyed(out, expect=["w-\\x1b[2J", "h\\u202eost"])


@pytest.mark.parametrize(
    "args", [["list", "--json"], ["show", "evil", "--json"], ["dlq", "list", "--json"]]
)
def test_json_is_ascii_and_exact(hostile: Path, args: list[str]) -> None:
    code, out, _ = on_terminal(hostile, *args)
    assert code == 0
    assert out.isascii()  # ensure_ascii: C1 controls and bidi overrides are \u escapes too
    assert "\x1b" not in out and "\x07" not in out and "\x7f" not in out
    data = json.loads(out)
    job = data[0] if isinstance(data, list) else data
    assert (job["command"], job["last_error"]) == (COMMAND, ERROR)


def test_status_json_is_ascii(hostile: Path, hostile_worker: str) -> None:
    code, out, _ = on_terminal(hostile, "status", "--json")
    assert code == 0 and out.isascii()
    assert [w["id"] for w in json.loads(out)["workers"]] == [WORKER]


def test_logs_on_a_terminal_escape_controls_but_keep_lines_and_tabs(hostile: Path) -> None:
    code, out, _ = on_terminal(hostile, "logs", "evil")
    assert code == 0
    assert out == (
        "== attempt 1: failed ==\n"
        "-- stdout --\n"
        "red \\x1b[31mRED\\x1b[0m\tcol\nline2\\rover \\x9b \ufffd\n"
        "-- stderr --\n"
        "\\u202ertl\n"
    )


def test_logs_in_a_pipe_are_the_bytes_unchanged(hostile: Path) -> None:
    result = subprocess.run(
        [QUEUECTL, "--db", str(hostile), "logs", "evil"], capture_output=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == (
        b"== attempt 1: failed ==\n-- stdout --\n" + STDOUT + b"-- stderr --\n" + STDERR
    )


def test_logs_in_a_pipe_end_an_unterminated_stream_with_a_newline(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    with closing(open_store(db)) as store:
        api.enqueue(store, [spec.from_mapping({"id": "j", "command": "true"})])
        claim = store.claim("w", "h", None, 30.0)
        assert claim is not None
        now = store.now()
        outcome = Outcome(
            end=AttemptEnd.SUCCEEDED,
            started_at=now,
            ended_at=now,
            exit_code=0,
            stdout=b"\x1bno-eol",
        )
        assert store.finish(claim, outcome, Transition(state=JobState.COMPLETED, attempts=1))
    result = subprocess.run(
        [QUEUECTL, "--db", str(db), "logs", "j"], capture_output=True, check=False
    )
    assert result.stdout.endswith(b"-- stdout --\n\x1bno-eol\n-- stderr --\n")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        pytest.param(["config", "get", "\x1b[2J"], "\\x1b[2J", id="config-key"),
        pytest.param(["enqueue", "--bo\ngus"], "--bo\\ngus", id="unknown-option-with-newline"),
        pytest.param(["show", "\x1b]0;title\x07"], "\\x1b]0;title\\x07", id="missing-job"),
        pytest.param(["enqueue", "--env", "A\x9b", "--", "x"], "A\\u009b", id="env-flag"),
    ],
)
def test_error_lines_show_escapes(tmp_path: Path, args: list[str], shown: str) -> None:
    code, out, err = on_terminal(tmp_path / "q.db", *args)
    assert code in (1, 2) and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("queuectl: error: "), err
    assert shown in lines[0], lines[0]
    assert lines[0].isprintable(), lines[0]


def test_the_pty_helper_sees_a_terminal(tmp_path: Path) -> None:
    code, out, _ = on_terminal(tmp_path / "q.db", "status")
    assert code == 0 and "\x1b[" in out  # rich styles only what it believes is a terminal
