"""Fixtures shared by every test: a fresh SQLite store in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.store import Store, open_store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's queue lives (created on first use)."""
    return tmp_path / "queue.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """An open, migrated store on a real SQLite file."""
    opened = open_store(db_path)
    yield opened
    opened.close()
