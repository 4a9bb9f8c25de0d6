"""queuectl's benchmark harness: each benchmark measures its own baseline in the same run.

    python bench/run.py                 # everything at full size (several minutes)
    python bench/run.py --quick         # tiny sizes: checks that every benchmark still works
    python bench/run.py throughput latency --json out.json

Results print as a table and are written as JSON (bench/results/latest.json by default).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import queuectl
from queuectl import api, retry
from queuectl import config as qconfig
from queuectl.models import AttemptEnd, JobSpec, JobState, NewJob, Outcome
from queuectl.store import Store, open_store

QUEUECTL = shutil.which("queuectl", path=str(Path(sys.executable).parent)) or "queuectl"


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


QUICK = Sizes(
    jobs=200, pickups=10, cli_runs=3, bulk=2000, depth_small=100, depth_large=2000,
    depth_ops=100, overhead_ops=200, memory_jobs=300, big_output=8 * 1024**2,
)  # fmt: skip


def _wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark timed out waiting for {what}")
        time.sleep(interval)


def _fresh_db(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _start_workers(db: Path, count: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [QUEUECTL, "--db", str(db), "worker", "start", "--count", str(count)],
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
def spawn_baseline(processes: int, seconds: float = 3.0) -> float:
    """Starts per second of `processes` Python processes running /bin/sh -c true, captured."""
    code = (
        "import subprocess, time, sys\n"
        "end = time.monotonic() + float(sys.argv[1]); n = 0\n"
        "while time.monotonic() < end:\n"
        "    subprocess.run(['/bin/sh', '-c', 'true'], capture_output=True,"
        " start_new_session=True); n += 1\n"
        "print(n)\n"
    )
    started = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(seconds)], stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    total = sum(int(p.communicate()[0]) for p in procs)
    return total / (time.monotonic() - started)


# --- 1. throughput ---------------------------------------------------------------------
def bench_throughput(tmp: Path, sizes: Sizes) -> Result:
    result = Result("throughput")
    seconds = 3.0 if sizes.jobs > 1000 else 0.5
    baselines = []
    for count in (1, 2, 4):
        # The baseline right before each run: the machine's speed drifts within minutes.
        baseline = spawn_baseline(2, seconds=seconds)
        baselines.append(baseline)
        db = _fresh_db(tmp, f"throughput{count}")
        store = open_store(db)
        api.enqueue(store, [JobSpec(command="true") for _ in range(sizes.jobs)])
        wal = db.with_name(db.name + "-wal")
        wal_peak = 0

        def done(store: Store = store, wal: Path = wal) -> bool:
            nonlocal wal_peak
            wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
            return _completed(store, sizes.jobs)

        started = time.monotonic()
        proc = _start_workers(db, count, tmp / "throughput.log")
        try:
            # Counting scans the table: look rarely, so as not to steal a core from the workers
            # (the figure comes from the attempts' own timestamps, not from this poll).
            _wait_until(done, 600, "all jobs", interval=0.25)
            wall = time.monotonic() - started
        finally:
            _stop_workers(proc)
        window = _run_window(db)
        store.close()
        rate = sizes.jobs / window
        result.figures[f"workers{count}_jobs_per_s"] = rate
        result.figures[f"workers{count}_wall_jobs_per_s"] = sizes.jobs / wall
        result.figures[f"workers{count}_baseline_per_s"] = baseline
        result.figures[f"workers{count}_ratio_to_baseline"] = rate / baseline
        result.figures[f"workers{count}_wal_peak_mib"] = wal_peak / 2**20
    result.figures["baseline_spawn_2proc_per_s"] = statistics.mean(baselines)
    result.notes.append(
        "jobs/s over the run window (first attempt start to last attempt end); "
        "wall includes starting the workers; each ratio is to the baseline measured just before"
    )
    return result


def _run_window(db: Path) -> float:
    con = sqlite3.connect(db)
    first, last = con.execute(
        "SELECT min(started_at), max(ended_at) FROM queuectl_attempts"
    ).fetchone()
    con.close()
    return float(last - first) / 1e6


def _completed(store: Store, count: int) -> bool:
    return store.counts().total(JobState.COMPLETED) >= count


# --- 2. pickup latency -----------------------------------------------------------------
def bench_latency(tmp: Path, sizes: Sizes) -> Result:
    result = Result("latency")
    db = _fresh_db(tmp, "latency")
    store = open_store(db)
    proc = _start_workers(db, 2, tmp / "latency.log")
    latencies: list[float] = []
    try:
        _wait_until(lambda: len(store.list_workers()) == 2, 30, "workers to register")
        for i in range(sizes.pickups):
            time.sleep(0.02)  # spaced out: each pickup starts from idle workers
            [job_id] = api.enqueue(store, [JobSpec(id=f"p{i}", command="date +%s%N")])
            committed = time.time_ns()
            _wait_until(partial(_done, store, job_id), 30, "the job to finish")
            started = int(store.attempts(job_id)[-1].stdout)
            latencies.append((started - committed) / 1e6)
        cpu = _idle_cpu(proc.pid, seconds=3.0 if sizes.pickups > 50 else 1.0)
    finally:
        _stop_workers(proc)
        store.close()
    latencies.sort()
    result.figures.update(
        p50_ms=_pct(latencies, 50), p95_ms=_pct(latencies, 95), p99_ms=_pct(latencies, 99),
        max_ms=latencies[-1], idle_worker_cpu_percent=cpu,
    )  # fmt: skip
    result.notes.append("enqueue committed -> `date` inside the job printed its time")
    return result


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


def bench_enqueue(tmp: Path, sizes: Sizes) -> Result:
    result = Result("enqueue")
    # pip compiles an installed package's bytecode; an editable checkout run with
    # PYTHONDONTWRITEBYTECODE (as here) would compile every module again on every call.
    compileall.compile_dir(Path(queuectl.__file__).parent, quiet=1)
    db = _fresh_db(tmp, "enqueue")
    open_store(db).close()
    base, cli = _interleaved_medians(
        [sys.executable, "-c", "import sqlite3"],
        [QUEUECTL, "--db", str(db), "enqueue", "--", "true"],
        sizes.cli_runs,
    )
    result.figures.update(
        cli_enqueue_ms=cli * 1000, python_import_sqlite3_ms=base * 1000, cli_ratio=cli / base
    )
    jsonl = tmp / "bulk.jsonl"
    jsonl.write_text("".join(f'{{"command":"echo {i}"}}\n' for i in range(sizes.bulk)))
    bulk_db = _fresh_db(tmp, "bulk")
    open_store(bulk_db).close()
    started = time.perf_counter()
    subprocess.run([QUEUECTL, "--db", str(bulk_db), "enqueue", "--file", str(jsonl)],
                   check=True, capture_output=True)  # fmt: skip
    result.figures["bulk_jobs_per_s"] = sizes.bulk / (time.perf_counter() - started)
    result.notes.append(f"bulk: {sizes.bulk} jobs from a JSON-lines file, one CLI call")
    return result


# --- 4. depth and 5. store overhead ---------------------------------------------------
def _fill(store: Store, count: int) -> None:
    now = datetime.now(UTC)
    batch = 50_000
    for start in range(0, count, batch):
        store.enqueue([
            NewJob(id=f"d{i}", command="true", queue="default", priority=0, run_at=now,
                   max_retries=3, timeout=None, cwd=None, env={})
            for i in range(start, min(start + batch, count))
        ])  # fmt: skip


def _claim_finish_rate(store: Store, ops: int) -> float:
    """Claims and completes `ops` jobs in-process (no command runs); jobs per second."""
    cfg = qconfig.Config()
    started = time.perf_counter()
    for _ in range(ops):
        claim = store.claim("bench", "host", None, 30.0)
        assert claim is not None  # noqa: S101
        now = datetime.now(UTC)
        outcome = executor_outcome(now)
        store.finish(claim, outcome, retry.next_transition(claim.job, outcome, cfg, now))
    return ops / (time.perf_counter() - started)


def executor_outcome(now: datetime) -> Outcome:
    """A succeeded outcome with no output, as the worker would record it."""
    return Outcome(end=AttemptEnd.SUCCEEDED, started_at=now, ended_at=now, exit_code=0, pid=1)


def bench_depth(tmp: Path, sizes: Sizes) -> Result:
    result = Result("depth")
    rates = {}
    for depth in (sizes.depth_small, sizes.depth_large):
        db = _fresh_db(tmp, f"depth{depth}")
        store = open_store(db)
        _fill(store, depth + sizes.depth_ops)
        rates[depth] = _claim_finish_rate(store, sizes.depth_ops)
        store.close()
        Path(db).unlink()
    result.figures.update(
        small_depth=sizes.depth_small, large_depth=sizes.depth_large,
        small_jobs_per_s=rates[sizes.depth_small], large_jobs_per_s=rates[sizes.depth_large],
        ratio=rates[sizes.depth_large] / rates[sizes.depth_small],
    )  # fmt: skip
    return result


RAW_SCHEMA = """
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, state TEXT, run_at INTEGER,
                   priority INTEGER, worker_id TEXT, lease INTEGER);
CREATE INDEX runnable ON jobs (priority DESC, run_at, seq) WHERE state = 'pending';
CREATE TABLE attempts (job_seq INTEGER, number INTEGER, outcome TEXT, stdout BLOB,
                       PRIMARY KEY (job_seq, number)) WITHOUT ROWID;
"""


def raw_sqlite_rate(path: Path, ops: int, synchronous: str) -> float:
    """The same two transactions (claim; record + complete) on a minimal schema, raw sqlite3."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"PRAGMA synchronous = {synchronous}")
    con.executescript(RAW_SCHEMA)
    con.execute("BEGIN")
    con.executemany("INSERT INTO jobs (id, state, run_at, priority) VALUES (?, 'pending', 0, 0)",
                    ((f"r{i}",) for i in range(ops)))  # fmt: skip
    con.execute("COMMIT")
    started = time.perf_counter()
    for _ in range(ops):
        con.execute("BEGIN IMMEDIATE")
        seq = con.execute(
            "UPDATE jobs SET state = 'processing', worker_id = 'w', lease = 1 WHERE seq = ("
            "SELECT seq FROM jobs WHERE state = 'pending' AND run_at <= 1"
            " ORDER BY priority DESC, run_at, seq LIMIT 1) RETURNING seq"
        ).fetchone()[0]
        con.execute("COMMIT")
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO attempts VALUES (?, 1, 'succeeded', x'')", (seq,))
        con.execute("UPDATE jobs SET state = 'completed' WHERE seq = ? AND worker_id = 'w'", (seq,))
        con.execute("COMMIT")
    rate = ops / (time.perf_counter() - started)
    con.close()
    return rate


def bench_overhead(tmp: Path, sizes: Sizes) -> Result:
    result = Result("overhead")
    db = _fresh_db(tmp, "overhead")
    store = open_store(db)
    _fill(store, sizes.overhead_ops)
    rate = _claim_finish_rate(store, sizes.overhead_ops)
    store.close()
    raw_full = raw_sqlite_rate(_fresh_db(tmp, "raw_full"), sizes.overhead_ops, "FULL")
    raw_normal = raw_sqlite_rate(_fresh_db(tmp, "raw_normal"), sizes.overhead_ops, "NORMAL")
    result.figures.update(
        queuectl_jobs_per_s=rate, raw_full_jobs_per_s=raw_full, raw_normal_jobs_per_s=raw_normal,
        ratio_to_raw_full=rate / raw_full, ratio_to_raw_normal=rate / raw_normal,
    )  # fmt: skip
    return result


# --- memory ----------------------------------------------------------------------------
def _rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def bench_memory(tmp: Path, sizes: Sizes) -> Result:
    result = Result("memory")
    db = _fresh_db(tmp, "memory")
    store = open_store(db)
    api.enqueue(store, [JobSpec(command="true") for _ in range(sizes.memory_jobs)])
    proc = _start_workers(db, 1, tmp / "memory.log")
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
    result.figures.update(
        rss_after_10pct_kib=early, rss_after_all_kib=late, rss_growth=late / early - 1,
        peak_before_big_output_kib=before_big, peak_after_big_output_kib=after_big,
        big_output_bytes=sizes.big_output,
    )  # fmt: skip
    result.notes.append(f"one worker over {sizes.memory_jobs} jobs, then one job printing "
                        f"{sizes.big_output} bytes with output_limit 1MiB")  # fmt: skip
    return result


BENCHMARKS: dict[str, Callable[[Path, Sizes], Result]] = {
    "throughput": bench_throughput,
    "latency": bench_latency,
    "enqueue": bench_enqueue,
    "depth": bench_depth,
    "overhead": bench_overhead,
    "memory": bench_memory,
}


def _print_table(results: list[Result]) -> None:
    for result in results:
        print(f"\n{result.name}")
        for key, value in result.figures.items():
            print(f"  {key:<32} {value:>14,.3f}")
        for note in result.notes:
            print(f"  ({note})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it works")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    names = args.names or list(BENCHMARKS)
    results = []
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as tmp:
        for name in names:
            print(f"running {name}…", file=sys.stderr, flush=True)
            results.append(BENCHMARKS[name](Path(tmp), sizes))
    _print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform()},
        "quick": args.quick,
        "results": {r.name: {"figures": r.figures, "notes": r.notes} for r in results},
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
