"""Where the store lives when no --db is given."""

from __future__ import annotations

import os

from queuectl import errors

ENV_VAR = "QUEUECTL_DB"
"""Environment variable naming the store when --db is not given."""


def resolve_db(option: str | None) -> str:
    """The store location: --db, else $QUEUECTL_DB, else the per-user data directory."""
    if option is not None:
        if not option.strip():
            raise errors.FieldError("db", "must be a file path, like --db ./queue.db")
        return option
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    import platformdirs

    data_dir = platformdirs.user_data_dir("queuectl", appauthor=False)
    return os.path.join(data_dir, "queue.db")  # noqa: PTH118 - pathlib: 4 ms of CLI start-up
