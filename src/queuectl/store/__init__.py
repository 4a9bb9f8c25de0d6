"""Open the store a location names. Backends are imported lazily, only when used."""

from __future__ import annotations

import os

from queuectl import errors
from queuectl.store.base import Store
from queuectl.store.location import is_postgres

__all__ = ["Store", "is_postgres", "open_store"]


def open_store(location: str | os.PathLike[str], create: bool = True) -> Store:
    """Open (creating and migrating when needed) the store at `location`.

    A PostgreSQL URL (postgresql://…) names a server; anything else is a SQLite file path.
    With `create` False a missing store is an error (StoreUnavailable), not made anew: for a
    worker's second and third connections, which must never start a store of their own.
    """
    text = os.fspath(location)
    store: Store
    if is_postgres(text):
        store = _postgres_store(text, create)
    else:
        from queuectl.store.sqlite.store import SqliteStore

        store = SqliteStore(text, create=create)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def _postgres_store(url: str, create: bool) -> Store:
    """Open a PostgreSQL store; psycopg is imported only here (an optional extra)."""
    try:
        import psycopg  # noqa: F401 - only to tell a missing extra from a failing import below
    except ImportError:
        raise errors.UsageError(
            "db: a PostgreSQL URL needs psycopg: pip install 'queuectl[postgres]'"
        ) from None
    from queuectl.store.postgres.store import PostgresStore

    return PostgresStore(url, create=create)
