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

import enum
import select
import time

import psycopg
from psycopg import sql

from queuectl import errors
from queuectl.store import location
from queuectl.store.postgres import connection

WORK = "work"
"""The payload of a wake-up for new work (enqueue, a retry, a resume, `config set`)."""
STOP = "stop"
"""The payload of a wake-up for `worker stop`; any payload but WORK means "look for a stop"."""


class Wake(enum.Enum):
    """What ended a wait."""

    NOTHING = "nothing"  # the timeout, or the interrupt fd
    WORK = "work"  # wake-ups that all said new work: no stop request among them
    OTHER = "other"  # a stop request, an unknown payload, or wake-ups maybe lost (reconnect)


def channel(schema: str) -> str:
    """The NOTIFY channel of one queuectl schema (two schemas in one database never mix)."""
    return f"queuectl_{schema}"


def done_channel(schema: str) -> str:
    """The channel on which jobs someone waits for say they ended (migration 5's trigger)."""
    return f"queuectl_{schema}_done"


class Listener:
    """One listening connection (a worker's, or a waiter's); made lazily, remade after failures."""

    def __init__(
        self, where: location.PostgresLocation, listen_sql: str, name: str | None = None
    ) -> None:
        """Listen on `name`, the schema's wake-up channel() when None."""
        self.where = where
        listened = channel(where.schema) if name is None else name
        self._listen = sql.SQL(listen_sql).format(channel=sql.Identifier(listened))
        self._conn: connection.Connection | None = None

    def wait(self, timeout: float, interrupt: int | None = None) -> Wake:
        """Block until a wake-up, `interrupt` readable, or `timeout`; say what ended it.

        A listener that just connected (again) returns Wake.OTHER at once: what was sent while
        it was away is lost (a stop request among it, maybe), so the caller looks at the queue
        and for a stop. A connection found lost is replaced at once; when that fails,
        StoreUnavailable is raised, and the caller backs off and calls again, which tries again.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        conn = self._conn
        if conn is None or connection.broken(conn):
            self.close()
            self._conn = self._connect()
            return Wake.OTHER
        fds = [conn.fileno()] if interrupt is None else [conn.fileno(), interrupt]
        try:
            woken = self._drain(conn)
            if woken is Wake.NOTHING:
                ready, _, _ = select.select(fds, [], [], max(deadline - time.monotonic(), 0.0))
                woken = self._drain(conn) if conn.fileno() in ready else Wake.NOTHING
            return woken
        except (psycopg.Error, OSError, ValueError):  # ValueError: fileno of a closed one
            self.close()  # lost (a restart, a killed backend): listen again at once, or raise
        self._conn = self._connect()
        return Wake.OTHER

    def _drain(self, conn: connection.Connection) -> Wake:
        """Take every wake-up already received, without blocking, and say what they were."""
        payloads = {note.payload for note in conn.notifies(timeout=0)}
        if not payloads:
            return Wake.NOTHING
        return Wake.WORK if payloads == {WORK} else Wake.OTHER

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
