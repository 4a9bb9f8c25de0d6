"""A throwaway PostgreSQL cluster for the test suite, and template-cloned databases on it.

`PgCluster` runs `initdb` into a private temporary directory and starts a server there. It listens
on 127.0.0.1 at a free port, uses a private Unix socket directory, and runs with durability off
(`fsync`, `synchronous_commit` and `full_page_writes` are all off), which is safe because
nothing is kept. `template_database` migrates a database once. `fresh_database` clones it with
`CREATE DATABASE … TEMPLATE`, which takes milliseconds. If `QUEUECTL_TEST_PG_URL` is set,
`PgCluster.from_env()` uses that server and starts nothing. It cannot be stopped or restarted
then: `stop()` and `restart()` skip the calling test.

Running as root
---------------
PostgreSQL will not run as root: `initdb`, `pg_ctl` and `postgres` all refuse. When the suite runs
with `os.geteuid() == 0`, as it does in CI containers, every server-side command runs as
`nobody` (uid 65534, through subprocess's `user=`, `group=` and `extra_groups=[]`, so root's
supplementary groups are dropped too). The cluster's directory is created with `mkdtemp` under
a temporary directory that `nobody` can traverse (`/tmp` if `$TMPDIR` is not), then given
to `nobody`. The directory holds `data/` (made by `initdb`, mode 0700), `sock/` (0700) and
`server.log`, and all of them belong to `nobody`. The test process stays root and only talks
to the server over TCP as the database superuser `queuectl` (trust authentication, loopback
only), so it never needs file access to the cluster. Root can still delete it all. When not
root, everything runs as the current user.

Clean-up: `close()` stops the server and deletes the directory. An `atexit` hook does the same
for a session that ends without `close()`. For a session that dies without running `atexit`
(SIGKILL, or `os._exit` from pytest-timeout's thread method), a watchdog `sh` waits on a pipe
from this process. When the pipe closes without a goodbye, the watchdog stops the server
(`-m immediate`) and deletes the directory.

Nothing here imports psycopg at module level: it is imported inside the functions that connect.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import quote, unquote, urlsplit

import pytest

if TYPE_CHECKING:
    from psycopg import sql

ENV_URL = "QUEUECTL_TEST_PG_URL"
"""An existing server to use instead of starting one, e.g. postgresql://u:pw@host:5432/postgres."""

SUPERUSER = "queuectl"
"""The superuser `initdb` creates; trust authentication, so no password."""

UNPRIVILEGED_USER = "nobody"
"""Who runs the cluster when the tests run as root (uid 65534 if the name is unknown)."""

START_TIMEOUT = 30.0
"""Seconds to wait for a server to accept connections after a start or restart."""

SETTINGS: Mapping[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
}
"""Server settings on top of initdb's defaults (port and socket directory are added per cluster)."""

ShutdownMode = Literal["smart", "fast", "immediate"]
Strategy = Literal["FILE_COPY", "WAL_LOG"]

_BIND_CLASH = re.compile(r"could not (bind|create listen socket)|Address already in use")
_PORT_ATTEMPTS = 5

_WATCHDOG = """
read -r _ && exit 0
"$1" stop -D "$2" -m immediate -w >/dev/null 2>&1
rm -rf "$3"
"""
# Reads one line from our pipe: "bye" means close() did the work; EOF alone means we died.


class PgClusterError(RuntimeError):
    """The throwaway PostgreSQL cluster could not be set up or started."""


def find_bindir() -> Path | None:
    """The newest PostgreSQL binaries directory: /usr/lib/postgresql/N/bin, pg_config, or PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found.sort(key=lambda bindir: _version_key(bindir.parent.name))
    if found:
        return found[-1]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out and (Path(out) / "initdb").is_file():
            return Path(out)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb is not None else None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL can be had (no binaries and no QUEUECTL_TEST_PG_URL), or None."""
    if os.environ.get(ENV_URL) or find_bindir() is not None:
        return None
    return (
        f"no PostgreSQL: no initdb under /usr/lib/postgresql/*/bin, pg_config or PATH, "
        f"and {ENV_URL} is unset (install the `postgresql` package, or set {ENV_URL})"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dbname_of(url: str) -> str:
    """The database name in a postgresql:// URL."""
    return unquote(urlsplit(url).path.lstrip("/"))


class PgCluster:
    """One PostgreSQL server for the tests: a throwaway local cluster, or an existing server.

    Use it as a context manager (start on enter, `close()` on exit), or call `start()` and
    `close()` yourself.
    """

    def __init__(
        self,
        bindir: Path | None = None,
        *,
        parent: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """A local cluster, not yet created: `start()` runs initdb and starts the server.

        Args:
            bindir: where initdb, pg_ctl and postgres are; `find_bindir()` when None.
            parent: the directory to create the cluster's directory in. When running as root it
                must be traversable by `nobody`. The default is the system temporary directory,
                or /tmp.
            settings: server settings added to (or replacing) `SETTINGS`.
        """
        self._external_url: str | None = None
        self._bindir = bindir
        self._parent = parent
        self._settings = {**SETTINGS, **(settings or {})}
        self.root: Path | None = None
        """The cluster's directory (data/, sock/, server.log), once created."""
        self.port = 0
        self._uid, self._gid = _server_user()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._server_version = 0
        self._created: set[str] = set()

    @classmethod
    def external(cls, url: str) -> Self:
        """An existing server at `url`. It is never started, stopped or restarted here."""
        cluster = cls()
        cluster._external_url = url
        parts = urlsplit(url)
        cluster.port = parts.port or 5432
        return cluster

    @classmethod
    def from_env(cls) -> Self:
        """The server named by QUEUECTL_TEST_PG_URL if set, else a new local cluster."""
        url = os.environ.get(ENV_URL)
        return cls.external(url) if url else cls()

    @property
    def can_restart(self) -> bool:
        """Whether stop() and restart() work (not on an external server)."""
        return self._external_url is None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (local clusters only)."""
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        """The private Unix socket directory (local clusters only)."""
        return self._require_root() / "sock"

    @property
    def log_file(self) -> Path:
        """The server log that pg_ctl writes (local clusters only)."""
        return self._require_root() / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """A connection URL for database `dbname`."""
        if self._external_url is not None:
            parts = urlsplit(self._external_url)
            return parts._replace(path="/" + quote(dbname)).geturl()
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(dbname)}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster on first use, start it, and wait until it accepts connections."""
        if self._external_url is not None:
            self._wait_ready()
            return
        if self.root is None:
            self._create()
            self._start_on_free_port()
        elif not self.running():
            self._pg_ctl_start("start")
        self._wait_ready()

    def stop(self, mode: ShutdownMode = "fast") -> None:
        """Stop the server and wait until it is down; the files stay for a later start()."""
        self._require_restartable("stop")
        if self.root is not None and self.running():
            self._run(self._bin("pg_ctl"), "stop", "-w", "-D", str(self.data_dir), "-m", mode)

    def restart(self, mode: ShutdownMode = "fast") -> None:
        """Restart the server on the same port (pg_ctl restart) and wait for connections."""
        self._require_restartable("restart")
        if self.root is None:
            self.start()
            return
        self._pg_ctl_start("restart", "-m", mode)
        self._wait_ready()

    def running(self) -> bool:
        """Whether the server is up: pg_ctl status locally, a connection for an external one."""
        if self._external_url is not None:
            return self._connectable()
        if self.root is None:
            return False
        status = self._run(self._bin("pg_ctl"), "status", "-D", str(self.data_dir), check=False)
        return status.returncode == 0

    def close(self) -> None:
        """Stop and delete a local cluster; on an external server, drop the databases made here."""
        atexit.unregister(self.close)
        if self._external_url is not None:
            for name in sorted(self._created):
                with contextlib.suppress(Exception):
                    self.drop_database(name)
            return
        if self.root is None:
            return
        with contextlib.suppress(PgClusterError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self._dismiss_watchdog()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- SQL helpers -------------------------------------------------------------------------

    def execute(
        self,
        query: str | sql.SQL | sql.Composed,
        params: tuple[Any, ...] | Mapping[str, Any] | None = None,
        dbname: str = "postgres",
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode on a new connection; return its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn:
            self._server_version = conn.info.server_version
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def create_database(
        self, name: str, template: str | None = None, strategy: Strategy = "FILE_COPY"
    ) -> None:
        """CREATE DATABASE `name`, copied from `template` (template1 when None).

        `strategy` is used on PostgreSQL 15 and later. FILE_COPY copies the files. WAL_LOG, the
        default there, writes every block through the WAL.
        """
        from psycopg import sql

        parts: list[sql.Composable] = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))]
        if template is not None:
            parts.append(sql.SQL("TEMPLATE {}").format(sql.Identifier(template)))
        if self.server_version() >= 150000:
            parts.append(sql.SQL("STRATEGY {}").format(sql.Identifier(strategy.lower())))
        self.execute(sql.SQL(" ").join(parts))
        self._created.add(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name` IF EXISTS WITH (FORCE): its open connections are terminated."""
        from psycopg import sql

        ident = sql.Identifier(name)
        # A template cannot be dropped; IS_TEMPLATE false first (harmless on a plain database).
        if self.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            self.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        self._created.discard(name)

    def terminate(
        self,
        dbname: str | None = None,
        *,
        application_name: str | None = None,
        pid: int | None = None,
    ) -> int:
        """pg_terminate_backend every client backend but our own that matches all given filters.

        With no filter at all, that is every other client connection. On PostgreSQL 14 and later
        this waits (up to 5 s each) until the backends have exited. Returns how many were
        signalled.
        """
        from psycopg import sql

        # pg_terminate_backend(pid, timeout) waits for the exit; PostgreSQL 14 added it.
        args = sql.SQL("pid, 5000" if self.server_version() >= 140000 else "pid")
        query = sql.SQL(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend({args}))::int"
            " FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            "   AND (%(db)s::text IS NULL OR datname = %(db)s::text)"
            "   AND (%(app)s::text IS NULL OR application_name = %(app)s::text)"
            "   AND (%(pid)s::int IS NULL OR pid = %(pid)s::int)"
        ).format(args=args)
        rows = self.execute(query, {"db": dbname, "app": application_name, "pid": pid})
        count: int = rows[0][0]
        return count

    def server_version(self) -> int:
        """The server's version number, e.g. 150010 (asked once, then remembered)."""
        if not self._server_version:
            self.execute("SELECT 1")
        return self._server_version

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the server log ("" when there is none)."""
        if self.root is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------

    def _require_root(self) -> Path:
        if self.root is None:
            raise PgClusterError("the cluster has not been created: call start() first")
        return self.root

    def _require_restartable(self, what: str) -> None:
        if not self.can_restart:
            pytest.skip(f"cannot {what} the external server in {ENV_URL}")

    def _bin(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_bindir()
        if self._bindir is None:
            raise PgClusterError(unavailable_reason() or "no PostgreSQL binaries found")
        return str(self._bindir / name)

    def _create(self) -> None:
        """Make the directories, run initdb, write the settings, arm the clean-ups."""
        parent = self._parent or _traversable_tempdir()
        root = Path(tempfile.mkdtemp(prefix="queuectl-pg-", dir=parent))
        self.root = root
        atexit.register(self.close)
        self.socket_dir.mkdir(mode=0o700)
        for path in (root, self.socket_dir):
            if self._uid is not None and self._gid is not None:
                os.chown(path, self._uid, self._gid)
        self._start_watchdog()
        initdb = self._run(
            self._bin("initdb"),
            *("-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
            check=False,
        )
        if initdb.returncode != 0:
            raise PgClusterError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'queuectl.conf'\n")

    def _write_settings(self) -> None:
        settings = {**self._settings, "port": str(self.port)}
        settings["unix_socket_directories"] = str(self.socket_dir)
        text = "".join(f"{k} = {_conf_quote(v)}\n" for k, v in settings.items())
        (self.data_dir / "queuectl.conf").write_text(text)

    def _start_on_free_port(self) -> None:
        """Start on a port picked now; pick again if another process took it meanwhile."""
        for attempt in range(_PORT_ATTEMPTS):
            self.port = free_port()
            self._write_settings()
            try:
                self._pg_ctl_start("start")
            except PgClusterError as e:
                if attempt + 1 < _PORT_ATTEMPTS and _BIND_CLASH.search(str(e)):
                    continue
                raise
            return

    def _pg_ctl_start(self, action: str, *options: str) -> None:
        log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
        result = self._run(
            self._bin("pg_ctl"),
            *(action, "-w", "-t", str(int(START_TIMEOUT)), *options),
            *("-D", str(self.data_dir), "-l", str(self.log_file)),
            check=False,
        )
        if result.returncode != 0:
            with self.log_file.open(errors="replace") as log:
                log.seek(log_size)
                new_log = "\n".join(log.read().splitlines()[-30:])
            raise PgClusterError(
                f"pg_ctl {action} failed ({result.returncode}) on port {self.port}:\n"
                f"{result.stdout}\n--- server log ---\n{new_log}"
            )

    def _connectable(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                self._server_version = conn.info.server_version
        except psycopg.OperationalError:
            return False
        return True

    def _wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll with new connections until one succeeds; fail with the server log's tail."""
        deadline = time.monotonic() + timeout
        while not self._connectable():
            if time.monotonic() >= deadline:
                raise PgClusterError(
                    f"no connection to {self.url()} after {timeout}s\n"
                    f"--- server log ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server-side command, as `nobody` when we are root."""
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_server_env(),
            cwd=self.root,
            user=self._uid,
            group=self._gid,
            extra_groups=[] if self._uid is not None else None,
            check=False,
            timeout=START_TIMEOUT + 30,
        )
        if check and result.returncode != 0:
            raise PgClusterError(
                f"{Path(cmd[0]).name} {cmd[1]} failed ({result.returncode}):\n{result.stdout}"
                f"\n--- server log ---\n{self.log_tail()}"
            )
        return result

    def _start_watchdog(self) -> None:
        self._watchdog = subprocess.Popen(
            [
                *("/bin/sh", "-c", _WATCHDOG, "pgcluster-watchdog"),
                *(self._bin("pg_ctl"), str(self.data_dir), str(self.root)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_server_env(),
            cwd="/",
            user=self._uid,
            group=self._gid,
            extra_groups=[] if self._uid is not None else None,
            start_new_session=True,  # a Ctrl-C to the test session must not kill the watchdog
        )

    def _dismiss_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None or watchdog.stdin is None:
            return
        with contextlib.suppress(OSError):
            watchdog.stdin.write(b"bye\n")
        with contextlib.suppress(OSError):
            watchdog.stdin.close()
        watchdog.wait(timeout=30)


def template_database(cluster: PgCluster, name: str, prepare: Callable[[str], None]) -> str:
    """Create database `name` afresh, `prepare(url)` it, and make it a template; return `name`.

    Any connection still open to it after `prepare` is terminated. Then it is marked IS_TEMPLATE
    and closed to connections, so that `CREATE DATABASE … TEMPLATE name` never finds it busy.
    """
    from psycopg import sql

    cluster.drop_database(name)
    cluster.create_database(name)
    prepare(cluster.url(name))
    ident = sql.Identifier(name)
    cluster.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
    cluster.terminate(name)
    cluster.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(ident))
    return name


def fresh_database(cluster: PgCluster, template: str) -> str:
    """A new, uniquely named database copied from `template`; returns its URL."""
    name = f"t_{uuid.uuid4().hex}"
    cluster.create_database(name, template=template)
    return cluster.url(name)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _server_user() -> tuple[int | None, int | None]:
    """The (uid, gid) to run the server as: `nobody` when we are root, else (None, None)."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


def _server_env() -> dict[str, str]:
    """Our environment without PG* variables (PGPORT, PGDATA… would steer the tools), in C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # English messages, so that a port clash can be recognised in the log
    return env


def _conf_quote(value: str) -> str:
    """A postgresql.conf value as a quoted string (any setting accepts one)."""
    return "'" + value.replace("'", "''") + "'"


def _traversable_tempdir() -> Path:
    """The system temporary directory if everyone can traverse it to the end, else /tmp."""
    path = Path(tempfile.gettempdir()).resolve()
    if all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents)):
        return path
    return Path("/tmp")


def serve(dbname: str = "queuectl") -> None:
    """Start a throwaway cluster with database `dbname`, print its URL, and keep it until stdin
    closes (`python -m tests.pgcluster`: `make demo DB=postgres` runs its demo on one)."""
    with PgCluster() as cluster:
        cluster.create_database(dbname)
        print(cluster.url(dbname), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    serve()
