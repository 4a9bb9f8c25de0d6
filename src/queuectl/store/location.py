"""What a store location names (a SQLite path or a PostgreSQL URL), and showing it safely.

Pure text work on the location: no backend is imported here, so the CLI can mask a URL's
password in any message without loading psycopg.
"""

from __future__ import annotations

import re

from queuectl import errors
from queuectl.record import record

SCHEMES = ("postgresql://", "postgres://")
"""The URL prefixes that name a PostgreSQL server (libpq's own); anything else is a file path."""
DEFAULT_SCHEMA = "queuectl"
"""The PostgreSQL schema that holds queuectl's tables unless the URL's `schema` parameter names
another: so that queuectl can share a database with an application."""
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/?#@\s]*:)([^@/?#\s]*)@")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword=)([^&\s]*)")


def is_postgres(location: str) -> bool:
    """Whether `location` names a PostgreSQL server rather than a SQLite file."""
    return location.startswith(SCHEMES)


@record
class PostgresLocation:
    """A PostgreSQL URL split into what libpq takes and what queuectl keeps for itself."""

    conninfo: str
    """The URL as libpq takes it: queuectl's own `schema` parameter removed."""
    schema: str
    shown: str
    """The URL with any password masked: the only form that is ever printed or logged."""


def parse_postgres(url: str) -> PostgresLocation:
    """Split a PostgreSQL URL. Raises FieldError (naming `db`) for a malformed one.

    Every libpq parameter stays in the URL (sslmode, connect_timeout, ...); `schema=NAME` picks
    the schema, which must be a plain lower-case SQL name.
    """
    from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit  # not on SQLite's path

    try:
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise errors.FieldError(
            "db", f"is not a valid PostgreSQL URL ({exc}): {redact(url)}"
        ) from None
    schema = DEFAULT_SCHEMA
    for key, value in params:
        if key == "schema":
            schema = value
    # The other parameters go to libpq exactly as written: re-encoding them would turn a
    # space's %20 into '+', which libpq keeps as a plus (options=-c%20name%3Dvalue).
    kept = [
        item for item in parts.query.split("&") if item and unquote(item.split("=")[0]) != "schema"
    ]
    if not _SCHEMA_RE.fullmatch(schema):
        raise errors.FieldError(
            "db",
            f"schema must be 1-63 lower-case letters, digits or '_', not starting with a digit "
            f"(got {schema!r})",
        )
    conninfo = urlunsplit(parts._replace(query="&".join(kept)))
    return PostgresLocation(conninfo=conninfo, schema=schema, shown=redact(url))


def redact(text: str) -> str:
    """`text` with the password of every PostgreSQL URL in it masked as `***`."""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)
