"""Wake idle workers at once through LISTEN/NOTIFY (the PostgreSQL backend's mechanism).

Whoever adds work (enqueue, a retry, `dlq retry`, `config set`, `worker stop`) sends NOTIFY in
its transaction; each worker LISTENs on a connection of its own, in autocommit mode, and waits
on its socket together with its signal pipe. The listening connection dies with a server
restart or a dropped connection, and a listener that silently never comes back is the classic
bug of this design: here a failed wait closes it and raises StoreUnavailable (the worker logs
the outage once and backs off, polling meanwhile); the next wait connects again and returns at
once, since wake-ups sent meanwhile were lost. Polling at poll_interval stays as the fallback.
"""

from __future__ import annotations

import select
import time

import psycopg
from psycopg import sql

from queuectl import errors
from queuectl.store import location
from queuectl.store.postgres import connection


def channel(schema: str) -> str:
    """The NOTIFY channel of one queuectl schema (two schemas in one database never mix)."""
    return f"queuectl_{schema}"


class Listener:
    """One worker's listening connection; made lazily, remade after every failure."""

    def __init__(self, where: location.PostgresLocation, listen_sql: str) -> None:
        self.where = where
        self._listen = sql.SQL(listen_sql).format(channel=sql.Identifier(channel(where.schema)))
        self._conn: connection.Connection | None = None

    def wait(self, timeout: float, interrupt: int | None = None) -> bool:
        """Block until a wake-up, `interrupt` readable, or `timeout`; True when woken.

        A listener that just connected (again) returns True at once: what was sent while it
        was away is lost, so the caller looks at the queue. A connection found lost is replaced
        at once; when that fails, StoreUnavailable is raised, and the caller backs off and
        calls again, which tries again.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        conn = self._conn
        if conn is None or connection.broken(conn):
            self.close()
            self._conn = self._connect()
            return True
        fds = [conn.fileno()] if interrupt is None else [conn.fileno(), interrupt]
        try:
            if self._drain(conn):
                return True
            ready, _, _ = select.select(fds, [], [], max(deadline - time.monotonic(), 0.0))
            return conn.fileno() in ready and self._drain(conn)
        except (psycopg.Error, OSError, ValueError):  # ValueError: fileno of a closed one
            self.close()  # lost (a restart, a killed backend): listen again at once, or raise
        self._conn = self._connect()
        return True

    def _drain(self, conn: connection.Connection) -> bool:
        """Take every wake-up already received, without blocking; True when there was one."""
        return sum(1 for _ in conn.notifies(timeout=0)) > 0

    def _connect(self) -> connection.Connection:
        """A new connection, LISTENing."""
        conn = connection.connect(self.where)
        try:
            conn.execute(self._listen)
        except psycopg.Error as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        return conn

    def _unavailable(self, exc: BaseException) -> errors.StoreUnavailable:
        return errors.StoreUnavailable(
            f"db: {self.where.shown}: wake-up listener: {connection.reason(exc)}"
        )

    def close(self) -> None:
        """Stop listening."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
