"""Nothing a job starts outlives its attempt, and a timeout or a stop always ends it (defect 4).

Each case runs the executor in a fresh interpreter that adopts orphans, as a worker does, so that
what a command leaves behind in another session comes back to it. The commands write the pids
they start to a file; afterwards none of those may be alive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import alive, wait_until

RUNNER = """
import json, sys, threading
from queuectl import executor
try:
    from queuectl import proctree
    proctree.adopt_orphans()
except ImportError:
    pass
abort = threading.Event()
if float(sys.argv[3]) >= 0:
    threading.Timer(float(sys.argv[3]), abort.set).start()
out = executor.run(sys.argv[1], timeout=float(sys.argv[2]) or None, abort=abort, kill_grace=1.0)
print(json.dumps({"end": out.end.value, "exit_code": out.exit_code,
                  "seconds": (out.ended_at - out.started_at).total_seconds()}))
"""


def _detached(pidfile: Path, body: str) -> str:
    """Start `body` in a new session, in the background, and wait until it is there."""
    return (
        f"setsid sh -c 'echo $$ > {pidfile}; {body}' & "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done"
    )


def _run(command: str, timeout: float = 0, abort_after: float = -1) -> dict[str, object]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, command, str(timeout), str(abort_after)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    result["wall"] = time.monotonic() - started
    return result


def _pids(path: Path) -> list[int]:
    text = wait_until(lambda: path.exists() and path.read_text().strip(), message="the pids")
    return [int(p) for p in str(text).split()]


@pytest.fixture
def pidfile(tmp_path: Path):
    path = tmp_path / "pids"
    yield path
    for pid in [int(p) for p in path.read_text().split()] if path.exists() else []:
        if alive(pid):
            os.kill(pid, 9)


def test_a_setsid_child_holding_the_output_is_killed_when_the_shell_exits(pidfile: Path):
    result = _run(_detached(pidfile, "exec sleep 20") + "; echo done", timeout=3)
    assert result["end"] == "succeeded"
    [pid] = _pids(pidfile)
    assert not alive(pid), "the setsid child outlived its attempt"
    assert float(str(result["seconds"])) < 3, "the attempt waited for the leftover child"


def test_a_detached_grandchild_with_its_output_redirected_is_killed(pidfile: Path):
    command = f'setsid sh -c "echo \\$\\$ > {pidfile}; exec sleep 26" >/dev/null 2>&1 & sleep 0.5'
    result = _run(command)
    assert result["end"] == "succeeded"
    [pid] = _pids(pidfile)
    assert not alive(pid), "sleep 26 outlived its attempt (re-parented to init)"


def test_the_timeout_reaches_processes_in_other_sessions_that_ignore_term(pidfile: Path):
    command = f"setsid sh -c \"trap '' TERM; echo \\$\\$ > {pidfile}; sleep 30\" & wait"
    result = _run(command, timeout=1)
    assert result["end"] == "timeout"
    [pid] = _pids(pidfile)
    assert not alive(pid)
    assert float(str(result["wall"])) < 20, "the timeout did not end the attempt"


def test_an_abort_ends_an_attempt_whose_shell_is_gone(pidfile: Path):
    # The shell exits at once; its setsid child holds the pipes. `worker stop --now` must end it.
    result = _run(_detached(pidfile, "exec sleep 30"), abort_after=0.5)
    [pid] = _pids(pidfile)
    assert not alive(pid)
    assert float(str(result["wall"])) < 20, "the abort did not end the attempt"
