"""Open the store a location names. Backends are imported lazily, only when used."""

from __future__ import annotations

import os

from queuectl import errors
from queuectl.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(location: str | os.PathLike[str], create: bool = True) -> Store:
    """Open (creating and migrating when needed) the store at `location`.

    A PostgreSQL URL (postgresql://…) names a server; anything else is a SQLite file path.
    With `create` False a missing store is an error (StoreUnavailable), not made anew: for a
    worker's second and third connections, which must never start a store of their own.
    """
    text = os.fspath(location)
    if text.startswith(("postgres://", "postgresql://")):
        raise errors.UsageError(
            "db: PostgreSQL is not supported yet; give a SQLite file path (--db PATH)"
        )
    from queuectl.store.sqlite.store import SqliteStore

    store = SqliteStore(text, create=create)
    store.migrate()
    return store
