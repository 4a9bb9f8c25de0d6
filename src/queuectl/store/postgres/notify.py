"""Wake idle workers at once through LISTEN/NOTIFY (the PostgreSQL backend's mechanism).

Whoever adds work (enqueue, a retry, `dlq retry`, `config set`, `worker stop`) sends NOTIFY in
its transaction; each worker LISTENs on a connection of its own, in autocommit mode, and waits
on its socket together with its signal pipe. The listening connection dies with a server
restart or a dropped connection, and a listener that silently never comes back is the classic
bug of this design: here a failed wait closes it, the next wait connects again (backing off up
to outage.RETRY_CAP while the server is away) and returns at once once it is back, since wake-ups
sent meanwhile were lost. Polling at poll_interval stays as the fallback throughout.
"""

from __future__ import annotations

import logging
import select
import time

import psycopg
from psycopg import sql

from queuectl import errors, outage
from queuectl.store import location
from queuectl.store.postgres import connection

log = logging.getLogger(__name__)


def channel(schema: str) -> str:
    """The NOTIFY channel of one queuectl schema (two schemas in one database never mix)."""
    return f"queuectl_{schema}"


class Listener:
    """One worker's listening connection; made lazily, remade after every failure."""

    def __init__(self, where: location.PostgresLocation, listen_sql: str) -> None:
        self.where = where
        self._listen = sql.SQL(listen_sql).format(channel=sql.Identifier(channel(where.schema)))
        self._conn: connection.Connection | None = None
        self._retry_at = 0.0
        self._outage = outage.Outage(log, "wake-up listener")

    def wait(self, timeout: float, interrupt: int | None = None) -> bool:
        """Block until a wake-up, `interrupt` readable, or `timeout`; True when woken.

        A listener that just connected again returns True at once: what was sent while it was
        away is lost, so the caller looks at the queue.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        conn = self._conn
        if conn is None or connection.broken(conn):
            if self._reconnect():
                return True
            timeout = min(timeout, max(self._retry_at - time.monotonic(), 0.0))
            select.select([] if interrupt is None else [interrupt], [], [], max(timeout, 0.0))
            return False
        fds = [conn.fileno()] if interrupt is None else [conn.fileno(), interrupt]
        try:
            if self._drain(conn):
                return True
            ready, _, _ = select.select(fds, [], [], max(deadline - time.monotonic(), 0.0))
            return conn.fileno() in ready and self._drain(conn)
        except (psycopg.Error, OSError, ValueError) as exc:  # ValueError: fileno of a closed one
            self._failed(exc)
            return False

    def _drain(self, conn: connection.Connection) -> bool:
        """Take every wake-up already received, without blocking; True when there was one."""
        return sum(1 for _ in conn.notifies(timeout=0)) > 0

    def _reconnect(self) -> bool:
        """Connect and LISTEN, unless the last failure was too recent; True when listening."""
        if time.monotonic() < self._retry_at:
            return False
        try:
            conn = connection.connect(self.where)
            conn.execute(self._listen)
        except (errors.StoreUnavailable, psycopg.Error) as exc:
            self._failed(exc)
            return False
        self._conn = conn
        self._outage.recovered()
        return True

    def _failed(self, exc: BaseException) -> None:
        self._outage.failed(exc)
        self.close()
        self._retry_at = time.monotonic() + self._outage.retry_delay()

    def close(self) -> None:
        """Stop listening."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
