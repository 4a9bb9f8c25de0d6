"""Test helpers: wait on conditions with a deadline, run the real CLI, run real workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import apsw

from queuectl import api, proctree, spec
from queuectl.models import JobState
from queuectl.store import Store, is_postgres

T = TypeVar("T")

QUEUECTL = shutil.which("queuectl", path=str(Path(sys.executable).parent)) or "queuectl"


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, message: str = "", interval: float = 0.02
) -> T:
    """Poll `predicate` until it returns something truthy; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message} (last: {value!r})"
            )
        time.sleep(interval)


def enqueue_one(store: Store, **fields: object) -> str:
    """Enqueue one job given as JSON-like fields; return its id."""
    return api.enqueue(store, [spec.from_mapping(fields)])[0]


def state_of(store: Store, job_id: str) -> JobState:
    """A job's state (the job must exist)."""
    job = store.get_job(job_id)
    assert job is not None, f"no job {job_id}"
    return job.state


def alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run_cli(
    db: str | Path, *args: str, input: str | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script against `db` and capture its output."""
    return subprocess.run(
        [QUEUECTL, "--db", str(db), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a CLI call succeeded quietly on stderr; return its stdout."""
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _default_log(db: str) -> Path:
    """A pool's log: beside a SQLite file, else in a temporary directory of its own."""
    if is_postgres(db):
        import tempfile

        return Path(tempfile.mkdtemp(prefix="queuectl-pool-")) / "workers.log"
    return Path(db).with_suffix(".workers.log")


class WorkerPool:
    """`queuectl worker start --count N` as a real subprocess; always cleaned up on exit."""

    def __init__(
        self,
        db: str | Path,
        count: int = 1,
        *extra: str,
        log: Path | None = None,
        db_in_env: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db, self.count, self.extra = str(db), count, extra
        self.db_in_env = db_in_env
        """Name the store in QUEUECTL_DB instead of --db (so that no argv holds it)."""
        self.env = dict(env or {})
        """Variables added to the pool's environment (QUEUECTL_HOSTNAME, LD_PRELOAD...)."""
        self.log = log or _default_log(self.db)
        self.proc: subprocess.Popen[bytes] | None = None
        self.mark = os.urandom(8).hex()
        """Every process of the pool carries QUEUECTL_TEST_POOL=mark: the supervisor, its workers
        and their jobs, whatever sessions they moved to."""

    def __enter__(self) -> WorkerPool:
        with self.log.open("ab") as out:
            store = {"QUEUECTL_DB": self.db} if self.db_in_env else {}
            self.proc = subprocess.Popen(
                [
                    QUEUECTL,
                    *([] if self.db_in_env else ["--db", self.db]),
                    "worker",
                    "start",
                    "--count",
                    str(self.count),
                    *self.extra,
                ],
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={**os.environ, **store, **self.env, "QUEUECTL_TEST_POOL": self.mark},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The pids of the supervisor's worker processes."""
        return _children(self.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor (graceful stop) and wait for it; return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            workers = self.worker_pids()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
                self.proc.send_signal(signal.SIGTERM)  # the second signal: stop jobs too
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Whatever of the pool is left (a test's job in a session of its own, a worker whose
        # supervisor the test killed): a test never leaves processes behind for the next ones.
        proctree.kill_marked({"QUEUECTL_TEST_POOL": self.mark})


def sqlite_row(path: str | Path, sql: str) -> tuple[Any, ...]:
    """The first row a statement gives in a SQLite file, asked directly (not through the store)."""
    con = apsw.Connection(str(path))
    try:
        rows: list[tuple[Any, ...]] = con.execute(sql).fetchall()
    finally:
        con.close()
    return rows[0]


def sqlite_value(path: str | Path, sql: str) -> Any:
    """The one value a query finds in a SQLite file (see sqlite_row)."""
    (value,) = sqlite_row(path, sql)
    return value
