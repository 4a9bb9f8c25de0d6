"""Open the store a location names. Backends are imported lazily, only when used."""

from __future__ import annotations

from pathlib import Path

from queuectl import errors
from queuectl.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(location: str | Path) -> Store:
    """Open (creating and migrating when needed) the store at `location`.

    A PostgreSQL URL (postgresql://…) names a server; anything else is a SQLite file path.
    """
    text = str(location)
    if text.startswith(("postgres://", "postgresql://")):
        raise errors.UsageError(
            "db: PostgreSQL is not supported yet; give a SQLite file path (--db PATH)"
        )
    from queuectl.store.sqlite.store import SqliteStore

    store = SqliteStore(Path(text))
    store.migrate()
    return store
