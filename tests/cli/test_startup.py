"""Start-up of the console script: lazy imports, --version/--help, and where the store lives."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import queuectl
from queuectl.models import JobFilter
from queuectl.store import open_store
from tests.helpers import QUEUECTL, run_cli

HEAVY = ("rich", "psycopg", "fastapi", "uvicorn", "jinja2", "platformdirs", "hypothesis")
COMMANDS = ("enqueue", "status", "list", "show", "logs", "worker", "dlq", "config")


def run(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
        umask=umask,
    )


def loaded_modules(code: str) -> list[str]:
    """Run `code` in a fresh interpreter and return the top-level packages it loaded."""
    script = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    result = run(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def heavy_in(modules: list[str]) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


def test_importing_the_cli_loads_no_heavy_module() -> None:
    modules = loaded_modules("import queuectl.cli")
    assert "queuectl.cli" in modules  # the probe itself works
    assert heavy_in(modules) == []


def test_enqueue_runs_without_rich(db_path: Path) -> None:
    code = (
        "from queuectl.cli import main\n"
        "try:\n"
        f"    main(['--db', {str(db_path)!r}, 'enqueue', '--id', 'lazy', '--', 'true'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code"
    )
    modules = loaded_modules(code)
    assert "queuectl.store.sqlite.store" in modules  # it really enqueued
    assert heavy_in(modules) == []
    with closing(open_store(db_path)) as store:
        assert store.get_job("lazy") is not None


def test_version() -> None:
    result = run(QUEUECTL, "--version")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"queuectl, version {queuectl.__version__}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(flag: str) -> None:
    result = run(QUEUECTL, flag)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: queuectl [OPTIONS] COMMAND [ARGS]...")
    listed = result.stdout.split("Commands:", 1)[1].split()
    for command in COMMANDS:
        assert command in listed


@pytest.mark.parametrize("command", ["enqueue", "dlq", "config"])
def test_subcommand_help(command: str, tmp_path: Path) -> None:
    result = run(QUEUECTL, command, "--help", env=_env(tmp_path), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"Usage: queuectl {command} ")
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # help opens no store


def test_python_dash_m() -> None:
    result = run(sys.executable, "-m", "queuectl", "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert "Usage: queuectl [OPTIONS] COMMAND" in result.stdout
    version = run(sys.executable, "-m", "queuectl", "--version")
    assert version.stdout == f"queuectl, version {queuectl.__version__}\n"


def test_db_file_is_private_even_with_an_open_umask(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "dir" / "queue.db"
    result = run(QUEUECTL, "--db", str(db), "enqueue", "--", "true", umask=0)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_db_file_created_by_a_read_command_is_private(db_path: Path) -> None:
    assert run_cli(db_path, "status").returncode == 0
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with a private HOME and no store variables of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("QUEUECTL_DB", "XDG_DATA_HOME")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**env, "HOME": str(home), **extra}


def _job_ids(db: Path) -> list[str]:
    with closing(open_store(db)) as store:
        return [job.id for job in store.list_jobs(JobFilter(), 100)]


def test_queuectl_db_variable_names_the_store(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    env = _env(tmp_path, QUEUECTL_DB=str(db))
    result = run(QUEUECTL, "enqueue", "--id", "via-env", "--", "true", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "via-env\n"), result.stderr
    assert _job_ids(db) == ["via-env"]
    assert not (tmp_path / "home" / ".local").exists()
    listed = run(QUEUECTL, "list", "--json", env=env, cwd=tmp_path)
    assert [job["id"] for job in json.loads(listed.stdout)] == ["via-env"]


def test_db_option_beats_the_variable(tmp_path: Path) -> None:
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    env = _env(tmp_path, QUEUECTL_DB=str(from_env))
    result = run(
        QUEUECTL, "--db", str(from_option), "enqueue", "--id", "opt", "--", "true", env=env
    )
    assert result.returncode == 0, result.stderr
    assert _job_ids(from_option) == ["opt"]
    assert not from_env.exists()


@pytest.mark.parametrize(
    ("xdg", "where"),
    [
        pytest.param(None, "home/.local/share/queuectl/queue.db", id="home"),
        pytest.param("xdg", "xdg/queuectl/queue.db", id="xdg-data-home"),
    ],
)
def test_default_store_is_in_the_user_data_directory(
    tmp_path: Path, xdg: str | None, where: str
) -> None:
    env = _env(tmp_path, **({} if xdg is None else {"XDG_DATA_HOME": str(tmp_path / xdg)}))
    result = run(QUEUECTL, "enqueue", "--id", "by-default", "--", "true", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = tmp_path / where
    assert _job_ids(db) == ["by-default"]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert not (tmp_path / "queue.db").exists()
