"""Where the store lives when no --db is given, and creating private directories for it.

No module here imports pathlib: it costs every CLI call 4 ms at start-up.
"""

from __future__ import annotations

import errno
import os

from queuectl import errors

ENV_VAR = "QUEUECTL_DB"
"""Environment variable naming the store when --db is not given."""


def resolve_db(option: str | None) -> str:
    """The store location: --db, else $QUEUECTL_DB, else the per-user data directory."""
    if option is not None:
        if not option.strip():
            raise errors.FieldError(
                "db",
                "must be a file path or a PostgreSQL URL, like --db ./queue.db or "
                "--db postgresql://user@host/dbname",
            )
        return option
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return os.path.join(data_dir(), "queue.db")  # noqa: PTH118 - pathlib: 4 ms of CLI start-up


def data_dir() -> str:
    """The per-user data directory: the default store's and a detached supervisor's log's."""
    import platformdirs

    return platformdirs.user_data_dir("queuectl", appauthor=False)


def make_private_dirs(path: str) -> None:
    """Create the directory `path` and every missing level above it, each with mode 0o700.

    os.makedirs(mode=...) applies the mode to the last level only and lets the umask widen the
    ones above (umask 000 makes them world-writable, so anyone could swap the store under us).
    Directories that already exist are left as they are: they may be shared, like /tmp.

    Raises:
        FileExistsError: `path` exists and is not a directory.
        OSError: a level cannot be created (NotADirectoryError when a file is in the way).
    """
    missing: list[str] = []
    head = path.rstrip("/") or path
    while head and not os.path.lexists(head):
        missing.append(head)
        head = os.path.dirname(head)  # noqa: PTH120
    if not missing and path and not os.path.isdir(path):  # noqa: PTH112
        raise FileExistsError(errno.EEXIST, "exists and is not a directory", path)
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)  # noqa: PTH102
        except FileExistsError:
            if os.path.isdir(level):  # noqa: PTH112
                continue  # made by a concurrent caller: theirs to set, not ours to change
            raise
        # The umask can only take bits away; a umask like 0o277 would leave the owner unable
        # to create the next level, so the mode is set outright.
        os.chmod(level, 0o700)  # noqa: PTH101
