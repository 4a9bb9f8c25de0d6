"""The run's store, and the PostgreSQL server faults the killer injects when it is PostgreSQL.

A PostgreSQL run gets a cluster of its own (`own_store`), so that restarting it disturbs no other
test. Its server runs with `synchronous_commit = on`: PgCluster turns it off for speed, and then
`pg_ctl restart -m immediate` would lose commits already acknowledged (the WAL still in shared
memory), a loss the server's settings cause and queuectl cannot prevent. `fsync` stays off: the
killer crashes the server, never the machine, and what a commit wrote to the kernel survives.

`Outages` remembers when the server was down or its connections were cut, so that a CLI call
that failed then (exit 1, one `db:` line) is told from one that failed for no reason.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests import pgcluster

STORES = ("sqlite", "postgres")

OUTAGE_SLACK = 1.0
"""A CLI call may fail this many seconds after an outage ended (it connected just before)."""
STOP_FOR = (2.0, 5.0)
"""How long (seconds) the `pg_ctl stop` fault keeps the server down."""
REFUSAL = "queuectl: error: db: "
"""How the CLI says that the store is unavailable (StoreUnavailable: exit 1, one line)."""

FAULTS: tuple[tuple[str, int], ...] = (
    ("pg_ctl restart -m fast", 1),
    ("pg_ctl restart -m immediate", 1),
    ("pg_ctl stop -m fast, start 2-5 s later", 1),
    ("pg_terminate_backend queuectl connections", 2),
)
"""The server faults and their weights, added to the killer's when the store is PostgreSQL."""


class Outages:
    """When (Unix seconds) the server was down or its connections were cut."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: list[list[float]] = []

    def begin(self) -> int:
        with self._lock:
            self._windows.append([self._clock(), float("inf")])
            return len(self._windows) - 1

    def end(self, index: int) -> None:
        with self._lock:
            self._windows[index][1] = self._clock()

    def touches(self, began: float, ended: float) -> bool:
        """Whether [began, ended] meets an outage (or the OUTAGE_SLACK after one)."""
        with self._lock:
            return any(
                began <= end + OUTAGE_SLACK and start <= ended for start, end in self._windows
            )

    def down_within(self, began: float, ended: float) -> float:
        """Seconds of [began, ended] during which the server was down."""
        with self._lock:
            return sum(
                max(0.0, min(end, ended) - max(start, began)) for start, end in self._windows
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._windows)

    def total(self) -> float:
        """Seconds the server was down, all outages together (ended ones)."""
        with self._lock:
            return sum(end - start for start, end in self._windows if end != float("inf"))


class Server:
    """The run's own PostgreSQL server, which the killer restarts, stops and cuts off."""

    def __init__(self, cluster: pgcluster.PgCluster, dbname: str) -> None:
        self.cluster, self.dbname = cluster, dbname
        self.outages = Outages()
        self.terminated = 0
        """Connections pg_terminate_backend ended, all faults together."""

    def inject(self, kind: str, rng: random.Random, done: threading.Event) -> bool:
        """Inject the server fault `kind`; return whether it hit anything."""
        index = self.outages.begin()
        try:
            if kind == "pg_ctl restart -m fast":
                self.cluster.restart("fast")
            elif kind == "pg_ctl restart -m immediate":
                self.cluster.restart("immediate")
            elif kind.startswith("pg_ctl stop"):
                self.cluster.stop("fast")
                try:
                    # How long the server stays down is the fault itself, not a wait on anything;
                    # a finished run cuts it short.
                    done.wait(rng.uniform(*STOP_FOR))
                finally:
                    self.cluster.start()
            elif kind == "pg_terminate_backend queuectl connections":
                killed = self.cluster.terminate(self.dbname, application_name="queuectl")
                self.terminated += killed
                return killed > 0
            else:
                raise ValueError(kind)
            return True
        finally:
            self.outages.end(index)

    def ensure_up(self) -> None:
        """Start the server if a fault left it down (a killer that failed mid-fault)."""
        if not self.cluster.running():
            self.cluster.start()


def refused(stderr: str) -> bool:
    """Whether a CLI call failed only because the store was unavailable (one `db:` line)."""
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(REFUSAL)


@contextlib.contextmanager
def own_store(kind: str, root: Path) -> Iterator[tuple[str, Server | None]]:
    """(location, server) of a new store of `kind`: a file in `root`, or a database on a
    PostgreSQL cluster started for this run alone (and removed after it)."""
    if kind == "sqlite":
        yield str(root / "queue.db"), None
        return
    if kind != "postgres":
        raise ValueError(f"unknown store {kind!r} (one of {', '.join(STORES)})")
    reason = pgcluster.unavailable_reason()
    if reason is not None:
        raise pgcluster.PgClusterError(f"a PostgreSQL chaos run needs a server: {reason}")
    cluster = pgcluster.PgCluster(settings={"synchronous_commit": "on"})
    with cluster:
        cluster.create_database("chaos")
        yield cluster.url("chaos"), Server(cluster, "chaos")
