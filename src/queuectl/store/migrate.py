"""Discover a backend's migrations (`migrations/NNNN_name.sql`) and plan which are pending.

Each backend applies them in its own way; both record applied versions in queuectl_schema_version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from queuectl.record import record
from queuectl.store.sqlfile import package_dir

_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@record
class Migration:
    """One schema change."""

    version: int
    name: str
    sql: str


def discover(package: str) -> list[Migration]:
    """All migrations of a backend package, in version order."""
    found = []
    directory = os.path.join(package_dir(package), "migrations")  # noqa: PTH118 - see sqlfile
    for entry in os.listdir(directory):  # noqa: PTH208 - ordered by version below
        match = _NAME.match(entry)
        if match:
            with open(os.path.join(directory, entry), encoding="utf-8") as file:  # noqa: PTH118, PTH123
                sql = file.read()
            found.append(Migration(version=int(match.group(1)), name=match.group(2), sql=sql))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{package}: two migrations share a version")
    return found


def pending(all_migrations: Iterable[Migration], applied: Iterable[int]) -> list[Migration]:
    """The migrations not yet applied, in order."""
    done = set(applied)
    return [m for m in all_migrations if m.version not in done]
