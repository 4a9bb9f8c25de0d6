"""executor.run against real processes: capture, timeouts, process groups, caps, abort."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from queuectl import executor
from queuectl.models import AttemptEnd
from tests.helpers import alive, wait_until


def test_success_captures_stdout_and_stderr_separately():
    outcome = executor.run("echo out; echo err >&2")
    assert outcome.end is AttemptEnd.SUCCEEDED
    assert (outcome.exit_code, outcome.signal) == (0, None)
    assert outcome.stdout == b"out\n"
    assert outcome.stderr == b"err\n"
    assert outcome.ended_at >= outcome.started_at


def test_nonzero_exit_is_a_failure_with_its_code():
    outcome = executor.run("exit 3")
    assert outcome.end is AttemptEnd.FAILED
    assert outcome.exit_code == 3


def test_command_not_found():
    outcome = executor.run("no_such_command_queuectl_test")
    assert outcome.end is AttemptEnd.NOT_FOUND
    assert outcome.error is not None and "not found" in outcome.error


def test_missing_cwd_cannot_start(tmp_path: Path):
    outcome = executor.run("true", cwd=str(tmp_path / "missing"))
    assert outcome.end is AttemptEnd.NOT_FOUND
    assert outcome.error is not None and "missing" in outcome.error


def test_cwd_and_env_are_applied(tmp_path: Path):
    outcome = executor.run('pwd; echo "$GREETING"', cwd=str(tmp_path), env={"GREETING": "hi"})
    assert outcome.stdout.decode().split() == [str(tmp_path), "hi"]


def test_runs_in_its_own_session():
    outcome = executor.run("exec python3 -c 'import os; print(os.getsid(0))'")
    assert int(outcome.stdout) == outcome.pid
    assert os.getsid(0) != outcome.pid


CWDS = pytest.mark.parametrize(
    "cwd", [None, os.getcwd(), "/"], ids=["posix_spawn", "posix_spawn_same_cwd", "popen_for_cwd"]
)


@CWDS
def test_the_command_gets_only_stdin_stdout_and_stderr(cwd: str | None):
    # A worker started from a careless shell inherits open descriptors; none may reach a job.
    code = (
        "import sys; from queuectl import executor\n"
        "out = executor.run('ls /proc/$$/fd; readlink /proc/$$/fd/0', cwd=sys.argv[1] or None)\n"
        "print(out.stdout.decode())\n"
    )
    leaked, other_end = os.pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, cwd or ""],
            pass_fds=(leaked,),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.close(leaked)
        os.close(other_end)
    *fds, stdin = done.stdout.split()
    assert sorted(fds) == ["0", "1", "2"]
    assert stdin == "/dev/null"


@CWDS
def test_the_command_runs_in_its_working_directory(cwd: str | None):
    outcome = executor.run("pwd", cwd=cwd)
    assert outcome.stdout.decode().strip() == (cwd or os.getcwd())


@CWDS
def test_sigpipe_is_at_its_default_in_the_command(cwd: str | None):
    # Python ignores SIGPIPE; were that inherited, `yes` would complain of a broken pipe.
    outcome = executor.run("yes | head -n 1", cwd=cwd)
    assert outcome.end is AttemptEnd.SUCCEEDED
    assert (outcome.stdout, outcome.stderr) == (b"y\n", b"")


@CWDS
def test_exit_by_signal_is_reported_as_the_signal(cwd: str | None):
    outcome = executor.run("kill -USR1 $$", cwd=cwd)
    assert outcome.end is AttemptEnd.FAILED
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGUSR1)


def test_a_nul_byte_cannot_start_and_says_why():
    outcome = executor.run("echo a\x00b")
    assert outcome.end is AttemptEnd.NOT_FOUND
    assert outcome.error == "could not start: embedded null byte"


def test_timeout_kills_the_command_and_its_children(tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    outcome = executor.run(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5)
    assert outcome.end is AttemptEnd.TIMEOUT
    child = int(pidfile.read_text())
    wait_until(lambda: not alive(child), timeout=5, message="the background child to die")


def test_command_ignoring_sigterm_is_killed_after_the_grace_period():
    outcome = executor.run("trap '' TERM; sleep 60", timeout=0.2, kill_grace=0.3)
    assert outcome.end is AttemptEnd.TIMEOUT
    assert outcome.signal == 9


def test_leftover_background_process_is_killed_when_the_command_exits(tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    outcome = executor.run(f"sleep 60 & echo $! > {pidfile}")
    assert outcome.end is AttemptEnd.SUCCEEDED
    child = int(pidfile.read_text())
    wait_until(lambda: not alive(child), timeout=5, message="the leftover child to die")


def test_output_keeps_only_the_tail_with_a_marker():
    outcome = executor.run(
        "head -c 3000000 /dev/zero; printf END; head -c 5000 /dev/zero >&2", output_limit=1000
    )
    assert outcome.stdout.endswith(b"END")
    marker, _, tail = outcome.stdout.partition(b"\n")
    assert marker == b"[queuectl: 2999003 earlier bytes truncated]"
    assert len(tail) == 1000
    assert outcome.stderr.startswith(b"[queuectl: 4000 earlier bytes truncated]\n")


def test_tail_buffer_never_holds_much_more_than_its_limit():
    buffer = executor.TailBuffer(100)
    for _ in range(1000):
        buffer.add(b"x" * 37)
        assert buffer._size < 100 + 37
    assert len(buffer.value().split(b"\n", 1)[1]) == 100


def test_abort_stops_the_command_as_shutdown():
    abort = threading.Event()
    timer = threading.Timer(0.3, abort.set)
    timer.start()
    outcome = executor.run("sleep 60", abort=abort)
    timer.join()
    assert outcome.end is AttemptEnd.SHUTDOWN
