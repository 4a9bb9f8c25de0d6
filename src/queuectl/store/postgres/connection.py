"""Opening PostgreSQL connections, and turning psycopg's failures into one-line store errors.

libpq's conventions hold: PG* environment variables, ~/.pgpass, service files and every URL
parameter (sslmode, connect_timeout, ...). queuectl adds only what the URL does not set: its
schema first on the search_path, UTC as the session's time zone, `synchronous_commit=on` (a
server or database that turns it off would let an acknowledged claim or finish vanish in a crash;
a URL whose `options` name it keeps its own, e.g. `remote_apply`), a connect timeout and TCP
keepalives (so that a worker notices a dead server within a minute).
"""

from __future__ import annotations

import contextlib
import re
import select
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from queuectl import errors
from queuectl.store import location

CONNECT_TIMEOUT = 10
"""Seconds a connection attempt may take, unless the URL or PGCONNECT_TIMEOUT says otherwise."""
_DEFAULTS = {
    "connect_timeout": str(CONNECT_TIMEOUT),
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "queuectl",
}

Connection = psycopg.Connection[dict[str, Any]]

_REFUSED_VALUE = re.compile(
    "(?:^|: )("
    r'invalid integer value "[^"]*" for connection option "\w+"'  # keepalives=q, port=x
    r'|invalid "?\w+"? value: .*'  # sslmode=bogus, target_session_attrs=zz
    r"|invalid port number: .*"  # older libpq
    r"|bad value for \w+: .*"  # psycopg's own: connect_timeout=x
    ")"
)
"""libpq's (and psycopg's) words for a URL parameter's value they refuse, which they check only
when connecting (sslmode=bogus, connect_timeout=x, keepalives=q...): the URL's fault, no outage."""


def parse(where: location.PostgresLocation) -> dict[str, Any]:
    """The URL's parameters as libpq reads them. Raises FieldError for one it refuses.

    libpq's message quotes the token it refused, which may be the password itself (a bad
    percent-escape in it): the raw password is cut out of the message before it is shown.
    """
    try:
        return conninfo_to_dict(where.conninfo)
    except psycopg.Error as exc:
        message = reason(exc)
        secret = _raw_password(where.conninfo)
        if secret:
            message = message.replace(secret, "***")
        raise errors.FieldError(
            "db", f"is not a valid PostgreSQL URL ({message}): {where.shown}"
        ) from None


def _raw_password(url: str) -> str:
    """The password as written in the URL (percent-escapes and all), or ''."""
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    return userinfo.partition(":")[2]


def connect(where: location.PostgresLocation, autocommit: bool = True) -> Connection:
    """A new connection to `where`. Raises StoreUnavailable in one line, never a traceback."""
    given = parse(where)
    extra = {key: value for key, value in _DEFAULTS.items() if key not in given}
    options = f"-c search_path={where.schema} -c timezone=UTC"
    if "synchronous_commit" not in str(given.get("options", "")):
        options += " -c synchronous_commit=on"
    if given.get("options"):
        options = f"{given['options']} {options}"
    try:
        return psycopg.connect(
            make_conninfo(where.conninfo, options=options, **extra),
            autocommit=autocommit,
            row_factory=dict_row,
        )
    except psycopg.Error as exc:
        refused = _REFUSED_VALUE.search(reason(exc))
        if refused:
            raise errors.FieldError(
                "db", f"is not a valid PostgreSQL URL ({refused.group(1)}): {where.shown}"
            ) from None
        raise errors.StoreUnavailable(
            f"db: cannot connect to PostgreSQL {target(where)}: {reason(exc)}"
        ) from None


def target(where: location.PostgresLocation) -> str:
    """Which server and database `where` names, libpq's defaults (PG* variables) filled in."""
    given = {k: v for k, v in parse(where).items() if v not in (None, "")}
    defaults = {
        option.keyword.decode(): option.val.decode()
        for option in pq.Conninfo.get_defaults()
        if option.val is not None
    }
    values = {**defaults, **given}
    host = str(values.get("host") or values.get("hostaddr") or "localhost")
    port = values.get("port", "5432")
    user = values.get("user", "?")
    return f"at {host}:{port}, database {values.get('dbname', user)}, user {user}"


def reason(exc: BaseException) -> str:
    """The server's (or libpq's) reason for a failure, on one line, any password masked."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else text
    # "connection failed: connection to server at "h" (1.2.3.4), port 5432 failed: <reason>"
    if "failed:" in first:
        first = first.rsplit("failed:", 1)[1].strip() or first
    return location.redact(first)


@contextlib.contextmanager
def unavailable_on_error(where: location.PostgresLocation) -> Iterator[None]:
    """Turn a lost connection, a server going away or out of space into StoreUnavailable.

    psycopg's OperationalError covers them all (class 08 connection, 53 resources, 57 operator
    intervention, 40 serialisation); InterfaceError is a connection already closed. A bug in a
    statement (ProgrammingError) keeps its traceback.
    """
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise errors.StoreUnavailable(f"db: {where.shown}: {reason(exc)}") from exc


def broken(conn: Connection | None) -> bool:
    """Whether `conn` can no longer be used (closed, or its server connection lost)."""
    return conn is None or conn.closed or conn.broken


def hung_up(conn: Connection) -> bool:
    """Whether the server has closed an idle connection that does not LISTEN.

    A restart (`pg_ctl restart -m fast`) or pg_terminate_backend sends an idle connection its
    goodbye and closes it, and little else comes unasked on a connection that does not LISTEN
    (a reported setting changed by a reload, rarely; reconnecting then costs one connect): a
    readable socket between two statements means it is gone. Looked at before each use, so a
    worker back from a restart reconnects at once instead of failing its next statement.
    """
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):  # a closed socket, or no socket at all
        return True
    return bool(readable)
