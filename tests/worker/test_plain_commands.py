"""Plain commands start without sh (plaincmd): each must behave as `/bin/sh -c` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from queuectl import executor, plaincmd
from queuectl.models import AttemptEnd

PATH = os.environ.get("PATH", "/usr/bin:/bin")


@pytest.mark.parametrize(
    "command",
    [
        "date +%s%N",
        "ls -l /",
        "  sleep 0  ",
        "printenv PWD",
        "env",
        "/usr/bin/env -0",
        "A=1 env",  # an assignment
        "echo hi",  # builtins differ from their programs (echo -e)
        "true",
        "cd /tmp",
        "-x",
        "ls *",
        "ls ~",
        "echo $HOME",
        "ls 'a b'",
        'ls "a"',
        "ls a\\ b",
        "ls; ls",
        "ls | cat",
        "ls > out",
        "ls &",
        "ls # c",
        "ls\nls",
        "ls `pwd`",
        "ls $(pwd)",
        "./script",
        "bin/script",
        "no_such_program_queuectl_test",
        "/etc/passwd",  # not executable
        "",
        " ",
    ],
)
def test_only_commands_sh_would_merely_split_and_search_run_directly(command: str):
    direct = plaincmd.argv(command, PATH)
    plain = command in {"date +%s%N", "ls -l /", "  sleep 0  ", "printenv PWD", "env"} or (
        command == "/usr/bin/env -0"
    )
    assert (direct is not None) is plain, command
    if direct is not None:
        program, argv = direct
        assert Path(program).is_absolute() and argv == command.split()


def test_the_path_is_searched_as_sh_searches_it(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").write_text("#!/bin/sh\necho a\n")  # not executable: passed over
    script = second / "tool"
    script.write_text("#!/bin/sh\necho b\n")
    script.chmod(0o755)
    assert plaincmd.argv("tool x", f"{first}:{second}") == (str(script), ["tool", "x"])
    assert plaincmd.argv("tool", f"{first}") is None
    assert plaincmd.argv("tool", f"relative:{second}") is None  # sh would look in the cwd
    assert plaincmd.argv("tool", f":{second}") is None  # an empty entry is the cwd too
    assert plaincmd.argv("tool", None) is None  # sh's own default search
    (second / "dir").mkdir(mode=0o755)
    assert plaincmd.argv("dir", str(second)) is None


def test_an_executable_fifo_is_left_to_sh_without_blocking(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o755)  # opening it to read would wait for a writer
    assert plaincmd.argv(str(fifo), PATH) is None


def test_a_script_without_a_shebang_is_left_to_sh(tmp_path: Path):
    script = tmp_path / "bare"
    script.write_text("echo ran by sh\nexit 4\n")
    script.chmod(0o755)
    assert plaincmd.argv(str(script), PATH) is None
    outcome = executor.run(str(script))
    assert (outcome.exit_code, outcome.stdout) == (4, b"ran by sh\n")


def _sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        "printenv PWD",
        "env",
        "ls /no_such_directory_queuectl_test",
        "tool one two=2 %x",
        "TOOL",
    ],
)
@pytest.mark.parametrize("here", [False, True], ids=["cwd", "own-dir"])
def test_a_plain_command_runs_as_sh_would_run_it(
    command: str, here: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "tool"
    tool.write_text('#!/bin/sh\necho "$0|$*|$PWD"\necho err >&2\nexit 5\n')
    tool.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{bindir}:{PATH}", "QUEUECTL_T": "1"}
    if here:  # the worker's own directory: posix_spawn, not Popen's chdir
        monkeypatch.chdir(work)
    outcome = executor.run(command, cwd=None if here else str(work), env=env)
    expected = _sh(command, work, env)
    if command == "env":
        assert sorted(outcome.stdout.splitlines()) == sorted(expected.stdout.splitlines())
    else:
        assert outcome.stdout == expected.stdout
    assert outcome.stderr == expected.stderr
    assert outcome.exit_code == expected.returncode
    assert plaincmd.argv(command, env["PATH"]) is not None or command == "TOOL"


def test_pwd_keeps_a_path_through_a_symlink_as_sh_does(tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    for pwd in (str(link), "/"):
        env = {"PWD": pwd}
        outcome = executor.run("printenv PWD", cwd=str(link), env=env)
        assert outcome.stdout == _sh("printenv PWD", link, env).stdout
    assert executor.run("printenv PWD", cwd=str(link), env={"PWD": str(link)}).stdout == (
        f"{link}\n".encode()
    )


def test_a_plain_command_is_the_job_and_dies_with_it():
    outcome = executor.run("sleep 30", timeout=0.3, kill_grace=0.5)
    assert outcome.end is AttemptEnd.TIMEOUT
    assert outcome.signal == signal.SIGTERM  # the program itself, no sh between


def test_a_plain_command_that_dies_of_a_signal_is_recorded_as_that_signal(tmp_path: Path):
    tool = tmp_path / "selfkill"
    tool.write_text("#!/bin/sh\nkill -TERM $$\n")
    tool.chmod(0o755)
    outcome = executor.run(str(tool))
    assert outcome.end is AttemptEnd.FAILED
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGTERM)  # sh: exit 143
