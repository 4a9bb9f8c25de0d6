"""queuectl's benchmark harness: each benchmark measures its own baseline in the same run.

    python bench/run.py                      # everything on SQLite at full size (several minutes)
    python bench/run.py --store postgres     # the same on a throwaway PostgreSQL server
    python bench/run.py --store both         # each benchmark on SQLite, then on PostgreSQL
    python bench/run.py --quick              # tiny sizes: checks that every benchmark still works
    python bench/run.py throughput latency --json out.json

Every benchmark gets a fresh store: a new SQLite file, or a new database (CREATE DATABASE) on
the PostgreSQL server. That server is a throwaway cluster started here (tests/pgcluster.py:
initdb into a temporary directory, 127.0.0.1 on a free port), run with PostgreSQL's durable
defaults (fsync, full_page_writes and synchronous_commit on), unlike the test suite's; or an
existing server given with `--pg-url` (its user needs CREATEDB; each database made there is
dropped afterwards).

Results print as a table and are written as JSON (bench/results/latest.json by default).
"""

from __future__ import annotations

import abc
import argparse
import compileall
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

import queuectl
from queuectl import activity, api, executor, retry
from queuectl import config as qconfig
from queuectl.models import AttemptEnd, JobSpec, JobState, NewJob, Outcome
from queuectl.store import Store, open_store

if TYPE_CHECKING:
    import psycopg
    from tests.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[1]
QUEUECTL = shutil.which("queuectl", path=str(Path(sys.executable).parent)) or "queuectl"
STORES = ("sqlite", "postgres")

DURABLE_PG_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
"""The bench's own server keeps PostgreSQL's durable defaults (the test suite turns them off);
queuectl's sessions set synchronous_commit=on whatever the server says."""
PG_REPORTED = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
               "shared_buffers", "max_connections")  # fmt: skip


@dataclass
class Result:
    """One benchmark's figures."""

    name: str
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs."""

    jobs: int = 5000
    pickups: int = 200
    cli_runs: int = 41
    bulk: int = 100_000
    depth_small: int = 1000
    depth_large: int = 1_000_000
    depth_ops: int = 2000
    overhead_ops: int = 5000
    memory_jobs: int = 100_000
    big_output: int = 1024**3
    status_small: int = 1000
    status_large: int = 10_000_000
    wait_returns: int = 20


QUICK = Sizes(
    jobs=200, pickups=10, cli_runs=3, bulk=2000, depth_small=100, depth_large=2000,
    depth_ops=100, overhead_ops=200, memory_jobs=300, big_output=8 * 1024**2,
    status_small=100, status_large=2000, wait_returns=2,
)  # fmt: skip


# --- where the stores live -------------------------------------------------------------
class Target(abc.ABC):
    """One store's benchmarks' locations: a fresh, empty store location for each benchmark."""

    store: str

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    @abc.abstractmethod
    def fresh(self, name: str) -> str:
        """A location with nothing in it (a file path or a postgresql:// URL)."""

    @abc.abstractmethod
    def discard(self, location: str) -> None:
        """Delete what `location` holds."""

    @abc.abstractmethod
    def run_window(self, location: str) -> float:
        """Seconds from the first attempt's start to the last attempt's end."""

    def log_bytes(self, location: str) -> int | None:
        """The size of the store's write-ahead log now, when the store has one of its own."""
        return None

    @abc.abstractmethod
    def fill_activity(self, location: str, rows: Sequence[ActivityFill]) -> None:
        """Write activity rows as the store keeps them (a busy hour's, for `status`)."""

    @abc.abstractmethod
    def settle(self, location: str, table: str = "queuectl.jobs") -> None:
        """Bring a freshly filled table to the state a running store's has (statistics, vacuum,
        the fill's writes on disk); a baseline's table gets the same as queuectl's."""


class SqliteTarget(Target):
    """SQLite files in the run's temporary directory."""

    store = "sqlite"

    def fresh(self, name: str) -> str:
        path = self.tmp / f"{name}.db"
        self.discard(str(path))
        return str(path)

    def discard(self, location: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{location}{suffix}").unlink(missing_ok=True)

    def run_window(self, location: str) -> float:
        con = apsw.Connection(location)
        ((first, last),) = con.execute(
            "SELECT min(started_at), max(ended_at) FROM queuectl_attempts"
        ).fetchall()
        con.close()
        return float(last - first) / 1e6  # type: ignore[operator]

    def fill_activity(self, location: str, rows: Sequence[ActivityFill]) -> None:
        con = apsw.Connection(location)
        with con:
            con.executemany("INSERT INTO queuectl_activity VALUES (?, ?, ?, ?, ?)", rows)
        con.close()

    def settle(self, location: str, table: str = "queuectl.jobs") -> None:
        pass  # its claim is pinned to its index, and inserts leave nothing to vacuum

    def log_bytes(self, location: str) -> int | None:
        wal = Path(location + "-wal")
        return wal.stat().st_size if wal.exists() else 0


class PostgresTarget(Target):
    """A database of its own on one PostgreSQL server for each benchmark."""

    store = "postgres"

    def __init__(self, tmp: Path, cluster: PgCluster) -> None:
        super().__init__(tmp)
        self.cluster = cluster

    def fresh(self, name: str) -> str:
        dbname = f"bench_{name}"
        self.cluster.drop_database(dbname)
        self.cluster.create_database(dbname)
        return self.cluster.url(dbname)

    def discard(self, location: str) -> None:
        from tests.pgcluster import dbname_of

        self.cluster.drop_database(dbname_of(location))

    def run_window(self, location: str) -> float:
        with _pg_connect(location) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(ended_at) - min(started_at))::float8"
                " FROM queuectl.attempts"
            ).fetchone()
        assert row is not None  # noqa: S101
        return float(row[0])

    def fill_activity(self, location: str, rows: Sequence[ActivityFill]) -> None:
        with _pg_connect(location) as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO queuectl.activity (minute, queue, bucket, completed, failed)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(activity.minute_start(minute), *rest) for minute, *rest in rows],
            )

    def settle(self, location: str, table: str = "queuectl.jobs") -> None:
        import psycopg
        from psycopg import sql

        with _pg_connect(location) as conn:
            # What autovacuum does to a filled table sooner or later, done now, so that it does
            # not start in the middle of the measurement.
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(*table.split("."))))
            # The fill's dirty pages (hundreds of MiB for a million jobs) written out now: else
            # the checkpoint they bring on writes them during the measurement that follows, and
            # its claims' WAL flushes queue behind those writes, a cost of the fill, not of the
            # depth. An external server's user may not be allowed to (PostgreSQL 15+:
            # pg_checkpoint); it is skipped there.
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")

    def settings(self) -> dict[str, str]:
        """The server's version and the settings that decide its speed here."""
        found = {"server_version": str(self.cluster.execute("SHOW server_version")[0][0])}
        for name in PG_REPORTED:
            found[name] = str(self.cluster.execute(f"SHOW {name}")[0][0])
        return found


def _pg_connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    import psycopg

    return psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on")


@contextlib.contextmanager
def _pg_cluster(url: str | None) -> Iterator[PgCluster]:
    """The server given by `url`, or a throwaway durable one started (and deleted) here."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests/ is not installed; run.py reuses its cluster
    from tests.pgcluster import PgCluster

    cluster = PgCluster.external(url) if url else PgCluster(settings=DURABLE_PG_SETTINGS)
    with cluster:
        yield cluster


# --- helpers ---------------------------------------------------------------------------
def _wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark timed out waiting for {what}")
        time.sleep(interval)


def _start_workers(db: str, count: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [QUEUECTL, "--db", db, "worker", "start", "--count", str(count)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _stop_workers(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _worker_pids(supervisor: int) -> list[int]:
    try:
        text = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- baselines -------------------------------------------------------------------------
LOOP_READY = "ready"
"""What a baseline loop prints once it is set up; it then waits for a line on stdin to start."""

_LOOP_WINDOW = f"""
print({LOOP_READY!r}, flush=True)
sys.stdin.readline()
n = 0
started = time.monotonic()
end = started + float(sys.argv[-1])
"""
"""Every baseline loop's start: say it is ready, wait for the go, then time a window of
argv[-1] seconds; the loop ends by printing `n started ended`."""

SPAWN_LOOP = (
    """
import subprocess, sys, time
"""
    + _LOOP_WINDOW
    + """
while time.monotonic() < end:
    subprocess.run(["/bin/sh", "-c", "true"], capture_output=True, start_new_session=True)
    n += 1
print(n, started, time.monotonic())
"""
)
"""One process of the raw spawn loop: /bin/sh -c true, captured, in a session of its own."""


def _parallel_rate(code: str, args: list[str], processes: int) -> float:
    """Operations per second of `processes` copies of the loop `code`, run at the same time.

    Each copy sets up (starts Python, imports, connects), says LOOP_READY and waits; all are
    let go together, and each prints how many operations it did, and when it started and ended
    (CLOCK_MONOTONIC is the machine's, the same in every process). The rate is all operations
    over the union of the windows: copies that start one after the other, each alone on the
    machine for a while, would otherwise add up to more than they can do together.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None  # noqa: S101
            if proc.stdout.readline().strip() != LOOP_READY:
                raise RuntimeError(f"a baseline loop failed to start ({proc.poll()})")
        for proc in procs:
            assert proc.stdin is not None  # noqa: S101
            proc.stdin.write("go\n")
            proc.stdin.close()
        reports = []
        for proc in procs:
            assert proc.stdout is not None  # noqa: S101
            out = proc.stdout.read()
            if proc.wait() != 0:
                raise RuntimeError(f"a baseline loop failed ({proc.returncode})")
            done, started, ended = out.split()
            reports.append((int(done), float(started), float(ended)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    window = max(r[2] for r in reports) - min(r[1] for r in reports)
    return sum(r[0] for r in reports) / window


def spawn_baseline(processes: int, seconds: float = 3.0) -> float:
    """Starts per second of `processes` Python processes running /bin/sh -c true, captured."""
    return _parallel_rate(SPAWN_LOOP, [str(seconds)], processes)


_PSYCOPG_SETUP = """
import subprocess, sys, time
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True, options="-c synchronous_commit=on")
claim = (
    "WITH next AS (SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 1"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs AS j SET state = 'processing' FROM next WHERE j.id = next.id RETURNING j.id"
)
"""
_PSYCOPG_RUN = """
while time.monotonic() < end:
    row = conn.execute(claim).fetchone()
    if row is None:
        break
    subprocess.run(["/bin/sh", "-c", "true"], capture_output=True, start_new_session=True)
    conn.execute("UPDATE jobs SET state = 'completed' WHERE id = %s", row)
    n += 1
print(n, started, time.monotonic())
"""
PSYCOPG_LOOP = _PSYCOPG_SETUP + _LOOP_WINDOW + _PSYCOPG_RUN
"""One process of the minimal psycopg worker loop: claim (SKIP LOCKED), run `sh -c true`,
mark completed; each statement its own transaction."""


def psycopg_loop_baseline(target: PostgresTarget, processes: int, seconds: float = 3.0) -> float:
    """Jobs per second of `processes` minimal psycopg worker loops on a table of their own."""
    url = target.fresh("rawloop")
    with _pg_connect(url) as conn:
        conn.execute(
            "CREATE TABLE jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " state text NOT NULL)"
        )
        conn.execute("CREATE INDEX jobs_pending ON jobs (id) WHERE state = 'pending'")
        rows = int(processes * seconds * 2000) + 1000  # more than they can run in `seconds`
        conn.execute(
            "INSERT INTO jobs (state) SELECT 'pending' FROM generate_series(1, %s)", (rows,)
        )
    target.settle(url, "jobs")
    rate = _parallel_rate(PSYCOPG_LOOP, [url, str(seconds)], processes)
    target.discard(url)
    return rate


# --- 1. throughput ---------------------------------------------------------------------
def bench_throughput(target: Target, sizes: Sizes) -> Result:
    result = Result("throughput")
    seconds = 3.0 if sizes.jobs > 1000 else 0.5
    baselines, loops = [], []
    for count in (1, 2, 4):
        # The baselines right before each run: the machine's speed drifts within minutes.
        baseline = spawn_baseline(2, seconds=seconds)
        baselines.append(baseline)
        if isinstance(target, PostgresTarget):
            loop = psycopg_loop_baseline(target, count, seconds=seconds)
            loops.append(loop)
            result.figures[f"workers{count}_psycopg_loop_per_s"] = loop
        db = target.fresh(f"throughput{count}")
        store = open_store(db)
        api.enqueue(store, [JobSpec(command="true") for _ in range(sizes.jobs)])
        target.settle(db)  # as the psycopg loop's table is
        log_peak = 0

        def done(store: Store = store, db: str = db) -> bool:
            nonlocal log_peak
            log_peak = max(log_peak, target.log_bytes(db) or 0)
            return _completed(store, sizes.jobs)

        started = time.monotonic()
        proc = _start_workers(db, count, target.tmp / "throughput.log")
        try:
            # Counting scans the table: look rarely, so as not to steal a core from the workers
            # (the figure comes from the attempts' own timestamps, not from this poll).
            _wait_until(done, 600, "all jobs", interval=0.25)
            wall = time.monotonic() - started
        finally:
            _stop_workers(proc)
        store.close()
        window = target.run_window(db)
        target.discard(db)
        rate = sizes.jobs / window
        result.figures[f"workers{count}_jobs_per_s"] = rate
        result.figures[f"workers{count}_wall_jobs_per_s"] = sizes.jobs / wall
        result.figures[f"workers{count}_baseline_per_s"] = baseline
        result.figures[f"workers{count}_ratio_to_baseline"] = rate / baseline
        if loops:
            result.figures[f"workers{count}_ratio_to_psycopg_loop"] = rate / loops[-1]
        if target.log_bytes(db) is not None:
            result.figures[f"workers{count}_wal_peak_mib"] = log_peak / 2**20
    result.figures["baseline_spawn_2proc_per_s"] = statistics.mean(baselines)
    result.notes.append(
        "jobs/s over the run window (first attempt start to last attempt end); "
        "wall includes starting the workers; each ratio is to the baseline measured just before"
    )
    if loops:
        result.notes.append(
            "psycopg loop: N processes each claiming one row (SKIP LOCKED CTE + UPDATE "
            "RETURNING), running `sh -c true`, marking it completed, on a table of its own"
        )
    return result


def _completed(store: Store, count: int) -> bool:
    return store.counts().total(JobState.COMPLETED) >= count


# --- 2. pickup latency -----------------------------------------------------------------
def bench_latency(target: Target, sizes: Sizes) -> Result:
    result = Result("latency")
    db = target.fresh("latency")
    store = open_store(db)
    proc = _start_workers(db, 2, target.tmp / "latency.log")
    latencies: list[float] = []
    floors: list[float] = []
    snapshot = dict(os.environb)
    try:
        _wait_until(lambda: len(store.list_workers()) == 2, 30, "workers to register")
        for i in range(sizes.pickups):
            time.sleep(0.02)  # spaced out: each pickup starts from idle workers
            [job_id] = api.enqueue(store, [JobSpec(id=f"p{i}", command="date +%s%N")])
            committed = time.time_ns()
            _wait_until(partial(_done, store, job_id), 30, "the job to finish")
            started = int(store.attempts(job_id)[-1].stdout)
            latencies.append((started - committed) / 1e6)
            floors.append(_spawn_floor_ms(snapshot))  # turn about: the same machine for both
        cpu = _idle_cpu(proc.pid, seconds=3.0 if sizes.pickups > 50 else 1.0)
    finally:
        _stop_workers(proc)
        store.close()
    target.discard(db)
    latencies.sort()
    floors.sort()
    result.figures.update(
        p50_ms=_pct(latencies, 50), p95_ms=_pct(latencies, 95), p99_ms=_pct(latencies, 99),
        max_ms=latencies[-1], idle_worker_cpu_percent=cpu,
        spawn_floor_p50_ms=_pct(floors, 50), spawn_floor_p99_ms=_pct(floors, 99),
    )  # fmt: skip
    result.notes.append("enqueue committed -> `date` inside the job printed its time")
    result.notes.append(
        "spawn floor: the worker's executor run here on `date +%s%N`, from the call to the time "
        "it printed (no store), after each pickup"
    )
    return result


def _spawn_floor_ms(inherit: dict[bytes, bytes]) -> float:
    """How long the worker's own way of starting a command takes to get `date` to run."""
    called = time.time_ns()
    outcome = executor.run("date +%s%N", inherit=inherit)
    return (int(outcome.stdout) - called) / 1e6


def _done(store: Store, job_id: str) -> bool:
    job = store.get_job(job_id)
    return job is not None and job.state is JobState.COMPLETED


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _idle_cpu(supervisor: int, seconds: float) -> float:
    """Mean CPU % of each idle worker over `seconds`."""
    pids = _worker_pids(supervisor)
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(seconds)
    ticks = sum(_cpu_ticks(pid) - before[pid] for pid in pids)
    hertz = os.sysconf("SC_CLK_TCK")
    return 100.0 * ticks / hertz / seconds / max(len(pids), 1)


# --- 3. enqueue ------------------------------------------------------------------------
def _timed_run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


def _interleaved_medians(a: list[str], b: list[str], runs: int) -> tuple[float, float]:
    """Median wall times of two commands run turn about, so both see the same machine."""
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(_timed_run(a))
        times_b.append(_timed_run(b))
    return statistics.median(times_a), statistics.median(times_b)


def bench_enqueue(target: Target, sizes: Sizes) -> Result:
    result = Result("enqueue")
    # pip compiles an installed package's bytecode; an editable checkout run with
    # PYTHONDONTWRITEBYTECODE (as here) would compile every module again on every call.
    compileall.compile_dir(Path(queuectl.__file__).parent, quiet=1)
    db = target.fresh("enqueue")
    open_store(db).close()
    if isinstance(target, PostgresTarget):
        # The least a CLI call on PostgreSQL does: start Python, import psycopg, connect.
        base_name, base_code = (
            "python_psycopg_connect_ms",
            f"import psycopg; psycopg.connect({db!r}).close()",
        )
    else:
        base_name, base_code = "python_import_sqlite3_ms", "import sqlite3"
    base, cli = _interleaved_medians(
        [sys.executable, "-c", base_code],
        [QUEUECTL, "--db", db, "enqueue", "--", "true"],
        sizes.cli_runs,
    )
    target.discard(db)
    result.figures.update({"cli_enqueue_ms": cli * 1000, base_name: base * 1000,
                           "cli_ratio": cli / base})  # fmt: skip
    jsonl = target.tmp / "bulk.jsonl"
    jsonl.write_text("".join(f'{{"command":"echo {i}"}}\n' for i in range(sizes.bulk)))
    bulk_db = target.fresh("bulk")
    open_store(bulk_db).close()
    started = time.perf_counter()
    subprocess.run([QUEUECTL, "--db", bulk_db, "enqueue", "--file", str(jsonl)],
                   check=True, capture_output=True)  # fmt: skip
    result.figures["bulk_jobs_per_s"] = sizes.bulk / (time.perf_counter() - started)
    target.discard(bulk_db)
    result.notes.append(f"bulk: {sizes.bulk} jobs from a JSON-lines file, one CLI call")
    return result


# --- 4. depth and 5. store overhead ---------------------------------------------------
def _fill(store: Store, count: int, queues: int = 1) -> None:
    now = datetime.now(UTC)
    batch = 50_000
    for start in range(0, count, batch):
        store.enqueue([
            NewJob(id=f"d{i}", command="true", queue=f"q{i % queues}" if queues > 1 else "default",
                   priority=0, run_at=now, max_retries=3, timeout=None, cwd=None, env={})
            for i in range(start, min(start + batch, count))
        ])  # fmt: skip


def _claim_finish_seconds(store: Store, ops: int) -> float:
    """Seconds to claim and complete `ops` jobs in-process (no command runs)."""
    cfg = qconfig.Config()
    started = time.perf_counter()
    for _ in range(ops):
        claim = store.claim("bench", "host", None, 30.0)
        assert claim is not None  # noqa: S101
        now = datetime.now(UTC)
        outcome = executor_outcome(now)
        store.finish(claim, outcome, retry.next_transition(claim.job, outcome, cfg, now))
    return time.perf_counter() - started


def _claim_finish_rate(store: Store, ops: int) -> float:
    """Claims and completes `ops` jobs in-process (no command runs); jobs per second."""
    return ops / _claim_finish_seconds(store, ops)


def executor_outcome(now: datetime) -> Outcome:
    """A succeeded outcome with no output, as the worker would record it."""
    return Outcome(end=AttemptEnd.SUCCEEDED, started_at=now, ended_at=now, exit_code=0, pid=1)


DEPTH_ROUNDS = 10
"""How many turns the two depths' claims take: the machine's speed drifts within minutes."""


def bench_depth(target: Target, sizes: Sizes) -> Result:
    result = Result("depth")
    depths = (sizes.depth_small, sizes.depth_large)
    chunk = max(sizes.depth_ops // DEPTH_ROUNDS, 1)
    ops = chunk * DEPTH_ROUNDS
    stores: dict[int, tuple[str, Store]] = {}
    fills, spent = {}, dict.fromkeys(depths, 0.0)
    try:
        for depth in depths:
            db = target.fresh(f"depth{depth}")
            stores[depth] = (db, open_store(db))
            started = time.perf_counter()
            _fill(stores[depth][1], depth + ops)
            fills[depth] = (depth + ops) / (time.perf_counter() - started)
        for db, _ in stores.values():  # both filled first: the large fill's writes are settled
            target.settle(db)
        # Turn about, each depth first every other round: both see the same machine.
        for turn in range(DEPTH_ROUNDS):
            for depth in depths if turn % 2 == 0 else depths[::-1]:
                spent[depth] += _claim_finish_seconds(stores[depth][1], chunk)
    finally:
        for db, store in stores.values():
            store.close()
            target.discard(db)
    rates = {depth: ops / spent[depth] for depth in depths}
    result.figures.update(
        small_depth=sizes.depth_small, large_depth=sizes.depth_large,
        small_jobs_per_s=rates[sizes.depth_small], large_jobs_per_s=rates[sizes.depth_large],
        ratio=rates[sizes.depth_large] / rates[sizes.depth_small],
        large_fill_jobs_per_s=fills[sizes.depth_large],
    )  # fmt: skip
    result.notes.append(
        f"claim + finish in-process, {ops} jobs at each depth, {DEPTH_ROUNDS} turns about"
    )
    if isinstance(target, PostgresTarget):
        result.notes.append("VACUUM (ANALYZE) and CHECKPOINT after the fills")
    return result


STATUS_QUEUES = 4
STATUS_CALLS = 20
"""`status` calls a round; rounds alternate the two sizes (DEPTH_ROUNDS of them)."""


ActivityFill = tuple[int, str, int, int, int]
"""An activity row: minute (since the epoch), queue, bucket, completed, failed."""
STATUS_BUCKETS = 30
"""Duration buckets each queue's every minute of the busy hour has (a spread of about 13x)."""
STATUS_UNFOLDED = 1000
"""Activity rows of the current minute not folded yet (PostgreSQL: about a second of finishes)."""


def busy_hour(now: datetime, unfolded: int) -> list[ActivityFill]:
    """The activity of an hour in which every queue ended attempts every minute, of many
    durations: the most rows `status` reads for the hour. `unfolded`: rows of a log not folded
    yet (PostgreSQL's, as the workers keep it: folded but for the last second's)."""
    last = activity.minute_of(now)
    rows: list[ActivityFill] = [
        (minute, f"q{queue}", 100 + bucket, 50, 1)
        for minute in range(last - activity.WINDOW_MINUTES + 1, last + 1)
        for queue in range(STATUS_QUEUES)
        for bucket in range(STATUS_BUCKETS)
    ]
    rows += [
        (last, f"q{n % STATUS_QUEUES}", 100 + n % STATUS_BUCKETS, 1, 0) for n in range(unfolded)
    ]
    return rows


def bench_status(target: Target, sizes: Sizes) -> Result:
    """`status` (api.status: counts, workers, paused queues, the hour's activity) at a small and
    a huge job count."""
    result = Result("status")
    counts = (sizes.status_small, sizes.status_large)
    stores: dict[int, tuple[str, Store]] = {}
    times: dict[int, list[float]] = {count: [] for count in counts}
    try:
        for count in counts:
            db = target.fresh(f"status{count}")
            stores[count] = (db, open_store(db))
            _fill(stores[count][1], count, STATUS_QUEUES)
            claim = stores[count][1].claim("bench", "host", None, 30.0)  # states other than one
            assert claim is not None  # noqa: S101
            unfolded = STATUS_UNFOLDED if isinstance(target, PostgresTarget) else 0
            target.fill_activity(db, busy_hour(stores[count][1].now(), unfolded))
        for db, _ in stores.values():
            target.settle(db)
        for turn in range(DEPTH_ROUNDS):
            for count in counts if turn % 2 == 0 else counts[::-1]:
                store = stores[count][1]
                found = api.status(store)
                for _ in range(STATUS_CALLS):
                    started = time.perf_counter()
                    found = api.status(store)
                    times[count].append(time.perf_counter() - started)
                assert sum(found.counts.total(s) for s in JobState) == count  # noqa: S101
                assert len(found.activity) == STATUS_QUEUES  # noqa: S101
    finally:
        for db, store in stores.values():
            store.close()
            target.discard(db)
    for values in times.values():
        values.sort()
    small, large = (statistics.median(times[count]) * 1000 for count in counts)
    result.figures.update(
        small_jobs=sizes.status_small, large_jobs=sizes.status_large,
        small_p50_ms=small, large_p50_ms=large,
        large_p95_ms=_pct([t * 1000 for t in times[sizes.status_large]], 95),
        ratio_large_to_small=large / small,
    )  # fmt: skip
    result.notes.append(
        f"api.status in-process (counts, workers, paused queues), {STATUS_QUEUES} queues, "
        f"{DEPTH_ROUNDS} rounds of {STATUS_CALLS} calls at each size, turn about"
    )
    result.notes.append(
        f"with a busy hour of activity: {STATUS_BUCKETS} duration buckets a queue and minute, "
        + (
            f"and {STATUS_UNFOLDED} rows of this minute not folded yet"
            if isinstance(target, PostgresTarget)
            else "each a row"
        )
    )
    return result


RAW_SCHEMA = """
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, state TEXT, run_at INTEGER,
                   priority INTEGER, worker_id TEXT, lease INTEGER);
CREATE INDEX runnable ON jobs (priority DESC, run_at, seq) WHERE state = 'pending';
CREATE TABLE attempts (job_seq INTEGER, number INTEGER, outcome TEXT, stdout BLOB,
                       PRIMARY KEY (job_seq, number)) WITHOUT ROWID;
"""


def raw_sqlite_rate(path: str, ops: int, synchronous: str) -> float:
    """The same two transactions (claim; record + complete) on a minimal schema, raw SQLite (the
    store's own: APSW's)."""
    con = apsw.Connection(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"PRAGMA synchronous = {synchronous}")
    con.execute(RAW_SCHEMA)  # APSW runs every statement of a script
    con.execute("BEGIN")
    con.executemany("INSERT INTO jobs (id, state, run_at, priority) VALUES (?, 'pending', 0, 0)",
                    ((f"r{i}",) for i in range(ops)))  # fmt: skip
    con.execute("COMMIT")
    started = time.perf_counter()
    for _ in range(ops):
        con.execute("BEGIN IMMEDIATE")
        ((seq,),) = con.execute(
            "UPDATE jobs SET state = 'processing', worker_id = 'w', lease = 1 WHERE seq = ("
            "SELECT seq FROM jobs WHERE state = 'pending' AND run_at <= 1"
            " ORDER BY priority DESC, run_at, seq LIMIT 1) RETURNING seq"
        ).fetchall()
        con.execute("COMMIT")
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO attempts VALUES (?, 1, 'succeeded', x'')", (seq,))
        con.execute("UPDATE jobs SET state = 'completed' WHERE seq = ? AND worker_id = 'w'", (seq,))
        con.execute("COMMIT")
    rate = ops / (time.perf_counter() - started)
    con.close()
    return rate


RAW_PG_SCHEMA = (
    "CREATE TABLE jobs (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text UNIQUE,"
    " state text NOT NULL, run_at timestamptz NOT NULL, priority integer NOT NULL,"
    " worker_id text, lease timestamptz)",
    "CREATE INDEX runnable ON jobs (priority DESC, run_at, seq) WHERE state = 'pending'",
    "CREATE TABLE attempts (job_seq bigint, number integer, outcome text, stdout bytea,"
    " PRIMARY KEY (job_seq, number))",
)
RAW_PG_CLAIM = (
    "WITH next AS (SELECT seq FROM jobs WHERE state = 'pending' AND run_at <= now()"
    " ORDER BY priority DESC, run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs AS j SET state = 'processing', worker_id = 'w',"
    " lease = now() + interval '30 seconds' FROM next WHERE j.seq = next.seq RETURNING j.seq"
)


def raw_psycopg_rate(target: PostgresTarget, ops: int, synchronous_commit: str) -> float:
    """The same two transactions (claim; record + complete) on a minimal schema, raw psycopg."""
    url = target.fresh(f"raw_{synchronous_commit}")
    with _pg_connect(url) as conn:
        conn.execute(f"SET synchronous_commit = {synchronous_commit}")
        for statement in RAW_PG_SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (id, state, run_at, priority)"
            " SELECT 'r' || i, 'pending', now(), 0 FROM generate_series(1, %s) AS i",
            (ops,),
        )
        target.settle(url, "jobs")
        started = time.perf_counter()
        for _ in range(ops):
            row = conn.execute(RAW_PG_CLAIM).fetchone()
            assert row is not None  # noqa: S101
            with conn.transaction():
                conn.execute("INSERT INTO attempts VALUES (%s, 1, 'succeeded', '')", row)
                conn.execute(
                    "UPDATE jobs SET state = 'completed' WHERE seq = %s AND worker_id = 'w'", row
                )
        rate = ops / (time.perf_counter() - started)
    target.discard(url)
    return rate


def bench_overhead(target: Target, sizes: Sizes) -> Result:
    result = Result("overhead")
    db = target.fresh("overhead")
    store = open_store(db)
    _fill(store, sizes.overhead_ops)
    target.settle(db)
    rate = _claim_finish_rate(store, sizes.overhead_ops)
    store.close()
    target.discard(db)
    result.figures["queuectl_jobs_per_s"] = rate
    if isinstance(target, PostgresTarget):
        sync_on = raw_psycopg_rate(target, sizes.overhead_ops, "on")
        sync_off = raw_psycopg_rate(target, sizes.overhead_ops, "off")
        result.figures.update(
            raw_sync_on_jobs_per_s=sync_on, raw_sync_off_jobs_per_s=sync_off,
            ratio_to_raw_sync_on=rate / sync_on, ratio_to_raw_sync_off=rate / sync_off,
        )  # fmt: skip
        result.notes.append("raw: psycopg, synchronous_commit on and off, same two transactions")
        return result
    raw_full = raw_sqlite_rate(target.fresh("raw_full"), sizes.overhead_ops, "FULL")
    raw_normal = raw_sqlite_rate(target.fresh("raw_normal"), sizes.overhead_ops, "NORMAL")
    result.figures.update(
        raw_full_jobs_per_s=raw_full, raw_normal_jobs_per_s=raw_normal,
        ratio_to_raw_full=rate / raw_full, ratio_to_raw_normal=rate / raw_normal,
    )  # fmt: skip
    return result


# --- memory ----------------------------------------------------------------------------
def _rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def bench_memory(target: Target, sizes: Sizes) -> Result:
    result = Result("memory")
    db = target.fresh("memory")
    store = open_store(db)
    api.enqueue(store, [JobSpec(command="true") for _ in range(sizes.memory_jobs)])
    proc = _start_workers(db, 1, target.tmp / "memory.log")
    try:
        _wait_until(lambda: _worker_pids(proc.pid) != [], 30, "the worker")
        [worker] = _worker_pids(proc.pid)
        tenth = sizes.memory_jobs // 10
        _wait_until(lambda: store.counts().total(JobState.COMPLETED) >= tenth, 600, "10 %")
        early = _rss_kib(worker)
        _wait_until(
            lambda: store.counts().total(JobState.COMPLETED) >= sizes.memory_jobs, 3600, "all"
        )
        late = _rss_kib(worker)
        before_big = _rss_kib(worker, "VmHWM")
        api.set_config(store, "output_limit", "1MiB")
        [big] = api.enqueue(store, [JobSpec(command=f"head -c {sizes.big_output} /dev/zero")])
        _wait_until(lambda: _done(store, big), 600, "the big-output job")
        after_big = _rss_kib(worker, "VmHWM")
    finally:
        _stop_workers(proc)
        store.close()
    target.discard(db)
    result.figures.update(
        rss_after_10pct_kib=early, rss_after_all_kib=late, rss_growth=late / early - 1,
        peak_before_big_output_kib=before_big, peak_after_big_output_kib=after_big,
        big_output_bytes=sizes.big_output,
    )  # fmt: skip
    result.notes.append(f"one worker over {sizes.memory_jobs} jobs, then one job printing "
                        f"{sizes.big_output} bytes with output_limit 1MiB")  # fmt: skip
    return result


WAIT_IDLE_SECONDS = 5.0
"""How long `wait`'s CPU is sampled while its job runs."""


def bench_wait(target: Target, sizes: Sizes) -> Result:
    """`queuectl wait JOB`: its CPU while the job runs, and how soon it returns once it ends.

    The job is claimed and finished in-process (no worker), so the return is timed from the
    finish's commit to the waiter's exit, `wait_returns` times; the CPU is the waiter's own.
    """
    result = Result("wait")
    db = target.fresh("wait")
    store = open_store(db)
    cpu: list[float] = []
    after_end: list[float] = []
    exited: list[float] = []
    try:
        for turn in range(sizes.wait_returns):
            [job_id] = api.enqueue(store, [JobSpec(command="true")])
            claim = store.claim("bench", "host", None, 600.0)
            assert claim is not None  # noqa: S101
            waiter = subprocess.Popen(
                [QUEUECTL, "--db", db, "wait", job_id], stdout=subprocess.PIPE
            )
            time.sleep(1.0)  # past its start-up: the part measured is its waiting
            if turn == 0:
                before = _cpu_ticks(waiter.pid)
                time.sleep(WAIT_IDLE_SECONDS)
                ticks = _cpu_ticks(waiter.pid) - before
                cpu.append(100.0 * ticks / os.sysconf("SC_CLK_TCK") / WAIT_IDLE_SECONDS)
            now = store.now()
            outcome = executor_outcome(now)
            store.finish(
                claim, outcome, retry.next_transition(claim.job, outcome, qconfig.Config(), now)
            )
            ended = time.perf_counter()
            assert waiter.stdout is not None  # noqa: S101
            said = waiter.stdout.readline()  # `JOB: completed`, printed once it saw the end
            after_end.append(time.perf_counter() - ended)
            waiter.communicate(timeout=30)
            exited.append(time.perf_counter() - ended)
            assert (waiter.returncode, said) == (0, f"{job_id}: completed\n".encode())  # noqa: S101
    finally:
        store.close()
        target.discard(db)
    ms = sorted(t * 1000 for t in after_end)
    result.figures.update(
        waiting_cpu_percent=cpu[0], returns=len(ms),
        return_p50_ms=statistics.median(ms), return_max_ms=ms[-1],
        exit_p50_ms=statistics.median(exited) * 1000,
    )  # fmt: skip
    result.notes.append(
        f"CPU of one `queuectl wait` over {WAIT_IDLE_SECONDS:g} s of its job running (% of a "
        "core; target < 1); return: from the finish's commit to the waiter printing the job's "
        "state (target: within 100 ms); exit: to the process's exit"
    )
    return result


BENCHMARKS: dict[str, Callable[[Target, Sizes], Result]] = {
    "throughput": bench_throughput,
    "latency": bench_latency,
    "enqueue": bench_enqueue,
    "depth": bench_depth,
    "overhead": bench_overhead,
    "memory": bench_memory,
    "status": bench_status,
    "wait": bench_wait,
}


def _print_table(store: str, results: list[Result]) -> None:
    for result in results:
        print(f"\n{result.name} ({store})")
        for key, value in result.figures.items():
            print(f"  {key:<36} {value:>14,.3f}")
        for note in result.notes:
            print(f"  ({note})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it works")
    parser.add_argument(
        "--store",
        choices=[*STORES, "both"],
        default="sqlite",
        help="the store to measure (both: each benchmark on SQLite, then on PostgreSQL)",
    )
    parser.add_argument(
        "--pg-url",
        help="an existing PostgreSQL server instead of a throwaway one "
        "(postgresql://user@host:port/postgres; the user needs CREATEDB)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    names = args.names or list(BENCHMARKS)
    stores = list(STORES) if args.store == "both" else [args.store]
    results: dict[str, list[Result]] = {store: [] for store in stores}
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "sqlite": apsw.sqlite_lib_version(), "platform": platform.platform(),
        "load_before": os.getloadavg(),
    }  # fmt: skip
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="queuectl-bench-")))
        targets: dict[str, Target] = {}
        for store in stores:
            if store == "sqlite":
                targets[store] = SqliteTarget(tmp / "sqlite")
            else:
                cluster = stack.enter_context(_pg_cluster(args.pg_url))
                targets[store] = pg = PostgresTarget(tmp / "postgres", cluster)
                machine["postgres"] = pg.settings()
            targets[store].tmp.mkdir()
        for name in names:
            for store in stores:
                print(f"running {name} on {store}…", file=sys.stderr, flush=True)
                results[store].append(BENCHMARKS[name](targets[store], sizes))
    machine["load_after"] = os.getloadavg()
    for store in stores:
        _print_table(store, results[store])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "quick": args.quick,
        "stores": stores,
        "results": {store: {r.name: {"figures": r.figures, "notes": r.notes}
                            for r in results[store]} for store in stores},
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
