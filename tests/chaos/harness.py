"""One chaos run: real supervisors and workers drain a mixed load while a killer injects faults.

The harness drives queuectl only through its public surfaces: the console script (`enqueue
--file`, `worker start`, `worker stop`, `config set`, `status --json`, `list --json`, `show
--json`) and the store's read API, on either store: a SQLite file, or a PostgreSQL database on a
server of the run's own that the killer also restarts, stops and cuts off (server.py). Every job
runs `job.sh` (written into the run's directory), which appends `start`, `end`, `child` and
`overlap` lines to one history file and holds a flock per job for as long as any of its
processes lives, so that a run starting while an earlier run of the same job (or anything it
left behind) is alive is seen exactly. `checks.evaluate()` judges what the run saw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from queuectl import errors, models
from queuectl.store import Store, is_postgres, open_store
from tests.chaos import checks, procs, server
from tests.helpers import QUEUECTL, run_cli, wait_until

T = TypeVar("T")

# --- what a run is made of -----------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """The size and pace of a run."""

    name: str
    jobs: int
    sleep_max: float
    """The longest plain `sleep` job, in seconds (the shortest is 0.1 s)."""
    hold: float
    """Seconds that over-running jobs and background children sleep."""
    slow: tuple[float, float]
    """The range of a slow job's sleep: longer than the leases, so that it is still running when
    a frozen or lost worker's job is retried."""
    timeout: float
    """The timeout of jobs meant to exceed it. Not shorter: a job must have written its start
    line before its timeout even on a loaded machine, or a correct run would look wrong."""
    deadline: float
    """Seconds the jobs may take to drain before the harness stops waiting and reports."""
    batches: int
    """The jobs are enqueued in this many files, the next whenever the backlog runs low."""


PROFILES = {
    "quick": Profile("quick", jobs=300, sleep_max=0.8, hold=2.0, slow=(4.0, 7.0), timeout=1.5,
                     deadline=300.0, batches=6),
    "long": Profile("long", jobs=2000, sleep_max=2.0, hold=3.0, slow=(4.0, 10.0), timeout=1.5,
                    deadline=1800.0, batches=10),
}  # fmt: skip

SUPERVISORS = 2
WORKERS_EACH = 2
INITIAL_LEASE = 4
LEASES = (2, 3, 4, 5, 6)
"""The lease values the killer switches between (`config set lease N`)."""
RETRIES = 20
"""max_retries of every job but the dead-on-purpose ones: enough to outlast the faults."""
PACE = (0.5, 2.0)
"""The killer waits a random time in this range (seconds) between faults."""
SAMPLE_INTERVAL = 1.0
"""Seconds between the status sampler's `status --json` calls."""
ACTIVITY_WINDOW = 58 * 60
"""Seconds back from now within which every attempt is inside `status`'s last hour (its window
starts at a minute's start, 59 to 60 minutes back)."""
LISTING_SLACK = 3.0
"""A worker whose pid is dead may stay listed for the longest lease plus this many seconds."""
STOP_TIMEOUT = 15.0
"""`worker stop --timeout`: what the run waits for is EXIT_DEADLINE, checked on the processes."""
EXIT_DEADLINE = 60.0
"""Seconds the supervisors and workers get to exit after `worker stop`."""
SURVIVOR_GRACE = 1.0
"""Seconds for a SIGKILL already sent to take effect before a job process counts as a survivor;
far shorter than any job's sleep, so a leftover child cannot simply outwait the check."""
CLI_SAMPLE = 12
"""How many jobs `show --json` is compared with the store for (the most-retried, then random)."""

MIX: tuple[tuple[str, int], ...] = (
    ("instant", 30),
    ("sleep", 24),
    ("fail", 10),
    ("dead", 4),
    ("timeout", 6),
    ("noterm", 6),
    ("bg", 12),
    ("escape", 8),
    ("slow", 3),
)
"""Job kinds and their weights. `escape` leaves a `setsid` child with its output closed; `slow`
outlasts any lease, so that a frozen or lost worker's job is still running when it is retried."""

JOB_SCRIPT = """\
# One chaos job: `sh job.sh KIND ARGS...` (written by tests/chaos/harness.py).
# Each note is one small O_APPEND write (< PIPE_BUF), so lines of concurrent runs never mix.
h=$CHAOS_DIR/history j=$QUEUECTL_JOB_ID a=$QUEUECTL_ATTEMPT
note() { echo "$1 $j $a $$ $(date +%s.%N)" >> "$h"; }
if [ "$1" = child ]; then
    # A background child: its note is written after its attempt only if nobody killed it.
    sleep "$2"; note child; exit 0
fi
# fd 9 keeps the job's lock while this shell or anything it started lives (children inherit
# it): the kernel drops a flock with the last descriptor of its open file, so a run starting
# while an earlier run of the job or any of its leftovers lives finds the lock taken.
exec 9>>"$CHAOS_DIR/locks/$j"
if ! flock -n 9; then note overlap; exit 99; fi
note start
kind=$1; shift
code=0
case $kind in
    instant) ;;
    sleep) sleep "$1" ;;
    fail) if [ "$a" -le "$1" ]; then code=3; fi ;;
    dead) code=5 ;;
    timeout) if [ "$a" -le "$2" ]; then sleep "$1"; fi ;;
    noterm) trap '' TERM; if [ "$a" -le "$2" ]; then sleep "$1"; fi ;;
    bg)
        case $2 in
            group) sh "$0" child "$1" & ;;
            group-quiet) sh "$0" child "$1" >/dev/null 2>&1 & ;;
            setsid) setsid sh "$0" child "$1" & ;;
            setsid-quiet) setsid sh "$0" child "$1" >/dev/null 2>&1 & ;;
        esac
        if [ "$a" -le "$3" ]; then code=4; fi ;;
esac
note end
exit $code
"""


@dataclass(frozen=True)
class JobPlan:
    """One job to enqueue: `sh job.sh KIND ARGS...`."""

    id: str
    kind: str
    args: tuple[str, ...] = ()
    max_retries: int = RETRIES
    timeout: float | None = None
    priority: int = 0

    def describe(self) -> str:
        timeout = f", timeout {self.timeout:g}" if self.timeout is not None else ""
        return " ".join([self.kind, *self.args]) + timeout

    def json_line(self, script: Path, env: dict[str, str]) -> str:
        data: dict[str, object] = {
            "id": self.id,
            "command": shlex.join(["sh", str(script), self.kind, *self.args]),
            "max_retries": self.max_retries,
            "priority": self.priority,
            "env": env,
        }
        if self.timeout is not None:
            data["timeout"] = self.timeout
        return json.dumps(data)


def make_plans(rng: random.Random, profile: Profile, escapes: bool = True) -> list[JobPlan]:
    """The run's jobs, drawn from MIX (without `escape` jobs when `escapes` is false)."""
    kinds = [kind for kind, _ in MIX]
    weights = [0 if kind == "escape" and not escapes else weight for kind, weight in MIX]
    plans = []
    for n in range(profile.jobs):
        kind = rng.choices(kinds, weights)[0]
        plan = _PLANNERS[kind](f"c{n:05d}", rng, profile)
        # A retry is due a second later, behind every job already waiting, so it would seldom
        # start while what an earlier run left still lives; a priority lets some jump the queue.
        plans.append(dataclasses.replace(plan, priority=rng.randint(0, 3)))
    return plans


def _sleep(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    return JobPlan(job, "sleep", (f"{rng.uniform(0.1, profile.sleep_max):.2f}",))


def _fail(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    return JobPlan(job, "fail", (str(rng.randint(1, 3)),))  # fails its first 1-3 attempts


def _dead(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    return JobPlan(job, "dead", max_retries=rng.randint(0, 2))


def _timeout(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    # Exceeds its timeout on its first 1-2 attempts.
    args = (f"{profile.hold:g}", str(rng.randint(1, 2)))
    return JobPlan(job, "timeout", args, timeout=profile.timeout)


def _noterm(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    # Ignores SIGTERM: over its timeout once, or slow every time.
    if rng.random() < 0.5:
        return JobPlan(job, "noterm", (f"{profile.hold:g}", "1"), timeout=profile.timeout)
    return JobPlan(job, "noterm", (f"{profile.hold:g}", "99"))


def _slow(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    seconds = f"{rng.uniform(*profile.slow):.2f}"
    if rng.random() < 0.5:  # half of them ignore the SIGTERM of an abort
        return JobPlan(job, "noterm", (seconds, "99"))
    return JobPlan(job, "sleep", (seconds,))


def _bg(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    # Leaves a child holding its output, or in its group; fails its first attempt half the time.
    how = rng.choice(("group", "group-quiet", "setsid"))
    return JobPlan(job, "bg", (f"{profile.hold:g}", how, str(rng.randint(0, 1))))


def _escape(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    # A child in its own session with its output closed: only a kill by marker can reach it.
    return JobPlan(job, "bg", (f"{profile.hold:g}", "setsid-quiet", str(rng.randint(0, 1))))


def _instant(job: str, rng: random.Random, profile: Profile) -> JobPlan:
    return JobPlan(job, "instant")


_PLANNERS: dict[str, Callable[[str, random.Random, Profile], JobPlan]] = {
    "instant": _instant,
    "sleep": _sleep,
    "fail": _fail,
    "dead": _dead,
    "timeout": _timeout,
    "noterm": _noterm,
    "bg": _bg,
    "escape": _escape,
    "slow": _slow,
}


# --- the run -----------------------------------------------------------------------------


class Supervisors:
    """The `worker start --count 2` processes, each in its own session, kept at SUPERVISORS.

    They find the store in QUEUECTL_DB (`env`), as the workers they start do.
    """

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with (self.root / f"supervisor-{len(self.procs) + 1}.log").open("ab") as log:
            proc = subprocess.Popen(
                [QUEUECTL, "worker", "start", "--count", str(WORKERS_EACH)],
                cwd=self.root,  # the jobs' cwd too: workers start them with posix_spawn
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [proc for proc in self.procs if proc.poll() is None]

    def keep(self) -> int:
        """Start supervisors until SUPERVISORS run; return how many were started."""
        started = 0
        while len(self.live()) < SUPERVISORS:
            self.start()
            started += 1
        return started

    def workers(self) -> list[int]:
        return sorted(pid for proc in self.live() for pid in procs.children(proc.pid))


class Killer(threading.Thread):
    """Every PACE seconds, one random fault; resumes frozen workers when their time is up.

    On a PostgreSQL run with a server of its own, the faults include the server's (server.FAULTS).
    """

    FAULTS: tuple[tuple[str, int], ...] = (
        ("SIGKILL worker", 4),
        ("SIGKILL supervisor", 1),
        ("SIGKILL supervisor+workers, jobs left", 1),
        ("SIGKILL supervisor+workers+jobs", 1),
        ("SIGSTOP worker past its lease", 2),
        ("config set lease", 2),
    )

    def __init__(self, run: ChaosRun, rng: random.Random) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.run_, self.rng = run, rng
        self.done = threading.Event()
        self.faults: Counter[str] = Counter()
        self.kills: list[checks.Kill] = []
        self.frozen: dict[int, float] = {}  # pid -> when to SIGCONT it (monotonic)
        self.lease = INITIAL_LEASE
        self.next_lease = INITIAL_LEASE
        self.setter: threading.Thread | None = None
        self.cli_problems: list[str] = []
        self.error: Exception | None = None
        self.restarts = 0
        self.table = self.FAULTS + (server.FAULTS if run.server is not None else ())
        """The faults of this run and their weights."""

    def run(self) -> None:
        try:
            next_fault = time.monotonic() + self.rng.uniform(*PACE)
            while True:
                wake = min([next_fault, *self.frozen.values()])
                # The random pacing is the point of this wait: it is the only one that is not a
                # poll on a condition.
                if self.done.wait(max(wake - time.monotonic(), 0.0)):
                    return
                self._resume(due_only=True)
                self.restarts += self.run_.supervisors.keep()
                if time.monotonic() >= next_fault:
                    if self.run_.sampler.unfinished >= SUPERVISORS * WORKERS_EACH:
                        self._inject()
                    else:
                        # The load has drained: faults now would only hit the last few jobs
                        # over and over and drive them into the DLQ, testing nothing new.
                        self.faults["withheld (fewer jobs left than workers)"] += 1
                    next_fault = time.monotonic() + self.rng.uniform(*PACE)
        except Exception as exc:  # noqa: BLE001 - re-raised by ChaosRun: a broken killer voids the run
            self.error = exc
        finally:
            if self.run_.server is not None:
                self.run_.server.ensure_up()  # whatever happened, the run goes on to drain

    def _resume(self, due_only: bool) -> None:
        now = time.monotonic()
        for pid, until in list(self.frozen.items()):
            if not due_only or until <= now:
                procs.send(pid, signal.SIGCONT, self.run_.owner)
                del self.frozen[pid]

    def resume_all(self) -> None:
        self._resume(due_only=False)

    def _inject(self) -> None:
        kinds = [kind for kind, _ in self.table]
        weights = [weight for _, weight in self.table]
        for _ in range(5):  # a fault may find nothing to hit (say, workers still starting)
            kind = self.rng.choices(kinds, weights)[0]
            if self._do(kind):
                self.faults[kind] += 1
                return
        self.faults["skipped (nothing to hit)"] += 1

    def _do(self, kind: str) -> bool:
        sups = self.run_.supervisors
        if kind == "SIGKILL worker":
            workers = sups.workers()
            if not workers:
                return False
            pid = self.rng.choice(workers)
            return self._kill_workers([pid], "SIGKILL worker") > 0
        if kind == "config set lease":
            return self._change_lease()
        if kind.startswith("pg_"):
            assert self.run_.server is not None
            return self.run_.server.inject(kind, self.rng, self.done)
        if kind == "SIGSTOP worker past its lease":
            candidates = [pid for pid in sups.workers() if pid not in self.frozen]
            # Freezing an idle worker tests nothing: prefer one with a job. (Kills stay uniform:
            # once a single job is left, aiming them all at it would only drive it to the DLQ.)
            busy = [pid for pid in candidates if procs.children(pid)]
            if not candidates:
                return False
            pid = self.rng.choice(busy or candidates)
            if not procs.send(pid, signal.SIGSTOP, self.run_.owner):
                return False
            lease = max(self.lease, self.next_lease)  # a change may be on its way
            self.frozen[pid] = time.monotonic() + lease + self.rng.uniform(1.0, 3.0)
            return True
        live = sups.live()
        if not live:
            return False
        proc = self.rng.choice(live)
        if kind == "SIGKILL supervisor":
            proc.kill()
            proc.wait()
        else:
            self._kill_tree(proc, with_jobs=kind.endswith("+jobs"), how=kind)
        self.restarts += sups.keep()
        return True

    def _change_lease(self) -> bool:
        """`config set lease N` in a thread of its own, so that the killer never waits for it.

        A worker frozen inside a write transaction holds SQLite's write lock until its SIGCONT,
        and `config set` waits for that lock: run here, it would hold up the very SIGCONT it
        waits for. A change refused during a server fault is made again once the server is back.
        """
        if self.setter is not None and self.setter.is_alive():
            return False  # the last change is still waiting for the write lock
        lease = self.rng.choice([n for n in LEASES if n != self.next_lease])
        self.next_lease = lease

        def set_lease() -> None:
            try:
                result = self.run_.cli("config set", "config", "set", "lease", str(lease))
            except subprocess.TimeoutExpired:
                self.cli_problems.append(f"config set lease {lease}: no answer within 60 s")
                return
            except AssertionError as exc:  # refused by server faults for EXIT_DEADLINE
                self.cli_problems.append(f"config set lease {lease}: {exc}")
                return
            if result.returncode != 0:
                self.cli_problems.append(
                    f"config set lease {lease} exited {result.returncode}: {result.stderr}"
                )
            else:
                self.lease = lease

        self.setter = threading.Thread(target=set_lease, name="chaos-lease", daemon=True)
        self.setter.start()
        return True

    def _kill_workers(self, pids: Sequence[int], how: str) -> int:
        killed = 0
        for pid in pids:
            worker_id = procs.worker_id_of(pid) or self.run_.sampler.worker_ids.get(pid)
            at = time.time()
            if procs.send(pid, signal.SIGKILL, self.run_.owner):
                self.kills.append(checks.Kill(worker_id, pid, at, how))
                self.frozen.pop(pid, None)
                killed += 1
        return killed

    def _kill_tree(self, proc: subprocess.Popen[bytes], with_jobs: bool, how: str) -> None:
        """SIGKILL a supervisor, then its workers (and their jobs): a crash of the whole tree.

        The supervisor goes first, so that it cannot clean up after its dying workers.
        """
        workers = procs.children(proc.pid)
        worker_ids = [procs.worker_id_of(pid) for pid in workers]
        jobs = [pid for worker in workers for pid in procs.descendants(worker)]
        proc.kill()
        proc.wait()
        self._kill_workers(workers, how)
        if with_jobs:
            # Also what left the tree (setsid, reparented): it still carries its worker's id.
            for worker_id in filter(None, worker_ids):
                jobs += procs.marked(f"QUEUECTL_WORKER_ID={worker_id}")
            for pid in set(jobs):
                procs.send(pid, signal.SIGKILL, self.run_.owner)


class Sampler(threading.Thread):
    """Runs `status --json` every SAMPLE_INTERVAL and checks the workers it lists."""

    def __init__(self, run: ChaosRun) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.run_ = run
        self.done = threading.Event()
        self.worker_ids: dict[int, str] = {}
        self.dead_listed: dict[str, str] = {}  # worker id -> the worst sighting
        self.worst_age: dict[str, float] = {}
        self.problems: list[str] = []
        self.samples = 0
        self.unfinished = 1 << 30  # jobs neither completed nor dead at the last sample
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(SAMPLE_INTERVAL):
                self.sample()
        except Exception as exc:  # noqa: BLE001 - re-raised by ChaosRun
            self.error = exc

    def sample(self) -> None:
        result, refused = self.run_.try_cli("status", "status", "--json")
        if result.returncode != 0:
            if not refused:
                self.problems.append(f"status --json exited {result.returncode}: {result.stderr}")
            return
        self.samples += 1
        data = json.loads(result.stdout)
        self.unfinished = sum(n for state, n in data["jobs"].items() if state not in checks.FINAL)
        now = time.time()
        outages = self.run_.server.outages if self.run_.server is not None else None
        for worker in data["workers"]:
            pid, worker_id, age = worker["pid"], worker["id"], worker["heartbeat_age"]
            self.worker_ids[pid] = worker_id
            # While the server was down, no worker could forget a dead one: that time is allowed.
            down = outages.down_within(now - age, now) if outages is not None else 0.0
            limit = max(LEASES) + LISTING_SLACK + down
            if age > limit and not procs.is_alive(pid) and age > self.worst_age.get(worker_id, 0.0):
                self.worst_age[worker_id] = age
                self.dead_listed[worker_id] = (
                    f"worker {worker_id} (pid {pid}, dead) listed at "
                    f"{checks.clock(time.time())} with heartbeat_age {age:.1f}s > {limit:g}s"
                )


@dataclass
class ChaosResult:
    """What a run saw and which invariants it broke."""

    profile: Profile
    seed: int
    faults_on: bool
    escapes: bool
    root: Path
    elapsed: float
    drained: bool
    faults: Counter[str]
    restarts: int
    store: str
    server: server.Server | None
    refusals: Counter[str]
    stored_though_refused: int
    samples: int
    stop_output: str
    evidence: checks.Evidence
    problems: dict[str, list[str]]

    def failed(self) -> list[str]:
        return [name for name, found in self.problems.items() if found]

    def explain(self, invariant: str, examples: int = 8) -> str:
        found = self.problems[invariant]
        shown = "\n  ".join(found[:examples])
        more = f"\n  ... and {len(found) - examples} more" if len(found) > examples else ""
        return (
            f"{invariant}: {checks.INVARIANTS[invariant]}: broken {len(found)} time(s) "
            f"(seed {self.seed}; history, logs and summary in {self.root}):\n  {shown}{more}"
        )

    def _server_line(self) -> str:
        if self.server is None:
            return ""
        outages = self.server.outages
        refused = ", ".join(f"{n} {what}" for what, n in sorted(self.refusals.items())) or "none"
        return (
            f" on a server of its own: {len(outages)} server faults, {outages.total():.1f}s in "
            f"all, {self.server.terminated} connections terminated; CLI calls refused during "
            f"them: {refused}; enqueues stored though refused: {self.stored_though_refused}"
        )

    def summary(self) -> str:
        ev = self.evidence
        records = [a for attempts in ev.attempts.values() for a in attempts]
        outcomes = Counter(a.outcome for a in records)
        states = Counter(state or "missing" for state in ev.states.values())
        overlaps = len(self.problems["no_overlap_lines"])
        concurrent = len(self.problems["no_concurrent_runs"])
        injected = {k: n for k, n in self.faults.items() if not k.startswith(("withheld", "skip"))}
        faults = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items())) or "none"
        lines = [
            f"chaos {self.profile.name} run, seed {self.seed}, faults "
            f"{'on' if self.faults_on else 'off'}, escaping children "
            f"{'on' if self.escapes else 'off'}: {self.elapsed:.1f}s"
            + ("" if self.drained else " (the jobs did NOT drain before the deadline)"),
            f"  dir: {self.root}",
            f"  store: {self.store}" + self._server_line(),
            f"  faults injected: {sum(injected.values())} ({faults}); "
            f"supervisors restarted: {self.restarts}",
            f"  jobs: {len(ev.enqueued)} ("
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            + ")",
            f"  executions (start lines): {sum(1 for line in ev.lines if line.kind == 'start')}; "
            f"attempts recorded: {len(records)} ("
            + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
            + f"); retries: {len(records) - len({a.job for a in records})}",
            f"  duplicates: {overlaps + concurrent} (overlap lines {overlaps}, concurrent runs "
            f"{concurrent}); losses: {len(self.problems['none_lost'])}; "
            f"stuck: {len(self.problems['none_stuck'])}; survivors: {len(ev.survivors)}; "
            f"status samples: {self.samples}",
            f"  worker stop: {self.stop_output}",
            "  invariants:",
        ]
        for name, found in self.problems.items():
            head = f"    {'FAIL' if found else 'ok  '} {name}"
            lines.append(head + (f" ({len(found)}): {found[0]}" if found else ""))
        return "\n".join(lines)


class ChaosRun:
    """One run in `root`: enqueue, start supervisors and the killer, drain, stop, check.

    `db` is the store's location (a SQLite file in `root` when None). `pg` is the PostgreSQL
    server of `db` when the run has one of its own (server.own_store): the killer then injects
    server faults too.
    """

    def __init__(
        self,
        root: Path,
        profile: Profile,
        seed: int,
        faults: bool = True,
        escapes: bool = True,
        log: Callable[[str], None] = print,
        db: str | None = None,
        pg: server.Server | None = None,
    ) -> None:
        self.root, self.profile, self.seed = root, profile, seed
        self.faults_on, self.escapes, self.log = faults, escapes, log
        self.db = db if db is not None else str(root / "queue.db")
        self.server = pg
        self.refusals: Counter[str] = Counter()
        """CLI calls a server fault refused, by command (counted, not problems)."""
        self.stored_though_refused = 0
        """Enqueues that failed during a server fault yet were stored whole (at-least-once)."""
        self.store_problems: list[str] = []
        self.history = root / "history"
        self.script = root / "job.sh"
        tag = uuid.uuid4().hex
        self.run_marker = f"CHAOS_RUN={tag}"
        """Every job process carries this (the jobs' `env`): a survivor is one that has it."""
        self.owner = f"CHAOS_OWNER={tag}"
        """Every process the run started carries this (supervisors, workers, jobs)."""
        env = dict(os.environ)
        env["CHAOS_OWNER"] = tag
        env["QUEUECTL_DB"] = self.db
        self.supervisors = Supervisors(root, env)
        self.sampler = Sampler(self)
        # Two streams, so that the jobs of a seed stay the same whatever the faults do.
        self.killer = Killer(self, seeded(f"{seed}-faults"))
        self.plans = make_plans(seeded(f"{seed}-jobs"), profile, escapes)
        self.enqueued: list[str] = []

    def try_cli(
        self, what: str, *args: str, cwd: Path | None = None
    ) -> tuple[subprocess.CompletedProcess[str], bool]:
        """`queuectl --db DB ARGS...` once; and whether a server fault refused it (exit 1, one
        `db:` line, during or just after a fault), which is counted under `what`."""
        began = time.time()
        result = run_cli(self.db, *args, cwd=cwd)
        refused = (
            self.server is not None
            and result.returncode == 1
            and server.refused(result.stderr)
            and self.server.outages.touches(began, time.time())
        )
        if refused:
            self.refusals[what] += 1
        return result, refused

    def cli(self, what: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`queuectl --db DB ARGS...`, made again while server faults refuse it (for calls that
        may be repeated: a refused one may still have been done)."""

        def attempt() -> subprocess.CompletedProcess[str] | None:
            result, refused = self.try_cli(what, *args)
            return None if refused else result

        result = wait_until(attempt, EXIT_DEADLINE, f"`{what}` past the server faults", 0.2)
        assert result is not None  # wait_until returns only a truthy value
        return result

    def _read(self, read: Callable[[], T]) -> T:
        """`read()` on the harness's own store, again while a server fault has it unavailable
        (a PostgreSQL store reopens a broken connection on the call after the one that broke)."""

        def attempt() -> tuple[T] | None:
            try:
                return (read(),)
            except errors.StoreUnavailable:
                if self.server is None:
                    raise
                return None

        answer = wait_until(attempt, EXIT_DEADLINE, "the store to answer", 0.2)
        assert answer is not None  # wait_until returns only a truthy value
        return answer[0]

    def run(self) -> ChaosResult:
        self.log(
            f"chaos: {self.profile.name} run, seed {self.seed} (QUEUECTL_CHAOS_SEED={self.seed} "
            f"repeats its jobs and faults), {len(self.plans)} jobs, in {self.root}, on "
            f"{store_name(self.db)}"
        )
        began = time.monotonic()
        try:
            self._prepare()
            store = open_store(self.db)
            try:
                drained, stop_output, unstopped, survivors = self._drive(store)
                self._clean_up()  # before the history is read: no process may still write to it
                evidence = self._collect(store)
            finally:
                store.close()
        finally:
            self._clean_up()
        evidence.unstopped = unstopped
        evidence.survivors = survivors
        evidence.kills = self.killer.kills
        evidence.store_problems = self.store_problems
        evidence.dead_listed = list(self.sampler.dead_listed.values())
        evidence.cli_problems = (
            self.sampler.problems + self.killer.cli_problems + evidence.cli_problems
        )
        result = ChaosResult(
            profile=self.profile,
            seed=self.seed,
            faults_on=self.faults_on,
            escapes=self.escapes,
            root=self.root,
            elapsed=time.monotonic() - began,
            drained=drained,
            faults=self.killer.faults,
            restarts=self.killer.restarts,
            store=store_name(self.db),
            server=self.server,
            refusals=self.refusals,
            stored_though_refused=self.stored_though_refused,
            samples=self.sampler.samples,
            stop_output=stop_output,
            evidence=evidence,
            problems=checks.evaluate(evidence),
        )
        (self.root / "summary.txt").write_text(result.summary() + "\n")
        return result

    def _prepare(self) -> None:
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        self.script.write_text(JOB_SCRIPT)
        self.history.touch()
        for key, value in (
            ("backoff_base", "1.1"),
            ("max_backoff", "1"),
            ("lease", str(INITIAL_LEASE)),
        ):
            result = run_cli(self.db, "config", "set", key, value)
            assert result.returncode == 0, result.stderr

    def _enqueue(self, store: Store, batch: Sequence[JobPlan], number: int) -> None:
        """Enqueue one batch file; again if a server fault refused it and it was not stored.

        A refused enqueue may still have been stored (the connection lost during COMMIT), and
        then whole: a batch is one transaction, so a part of it stored is a problem.
        """
        env = {"CHAOS_RUN": self.run_marker.partition("=")[2], "CHAOS_DIR": str(self.root)}
        path = self.root / f"batch-{number}.jsonl"
        path.write_text("".join(plan.json_line(self.script, env) + "\n" for plan in batch))
        ids = [plan.id for plan in batch]
        while True:
            result, refused = self.try_cli("enqueue", "enqueue", "--file", str(path), cwd=self.root)
            if result.returncode == 0 and result.stdout.split() == ids:
                self.enqueued += ids
                return
            if not refused:
                raise RuntimeError(f"enqueue of {path} failed: {result.stdout}{result.stderr}")
            stored = self._read(lambda: [i for i in ids if store.get_job(i) is not None])
            if stored:
                self.enqueued += stored  # acknowledged or not, they are in the queue now
                if len(stored) == len(ids):
                    self.stored_though_refused += 1
                else:
                    self.store_problems.append(
                        f"enqueue of {path} was refused ({result.stderr.strip()}) yet stored "
                        f"{len(stored)} of its {len(ids)} jobs: a batch is not atomic"
                    )
                return

    def _drive(self, store: Store) -> tuple[bool, str, list[str], list[str]]:
        """Run the load under faults; return (drained, stop's output, unstopped, survivors)."""
        size = -(-len(self.plans) // self.profile.batches)
        batches = [self.plans[i : i + size] for i in range(0, len(self.plans), size)]
        deadline = time.monotonic() + self.profile.deadline
        drained = True
        try:
            self._enqueue(store, batches[0], 1)
            self.supervisors.keep()
            self.sampler.start()
            if self.faults_on:
                self.killer.start()
            try:
                for number, batch in enumerate(batches[1:], start=2):
                    wait_until(
                        lambda: self._unfinished(store) < size,
                        max(deadline - time.monotonic(), 0.0),
                        "the backlog to run low",
                        interval=0.2,
                    )
                    self._enqueue(store, batch, number)
                wait_until(
                    lambda: self._unfinished(store) == 0,
                    max(deadline - time.monotonic(), 0.0),
                    "every job to be completed or dead",
                    interval=0.2,
                )
            except AssertionError as exc:
                drained = False
                self.log(f"chaos: {exc}")
        finally:
            self.killer.done.set()
            self.sampler.done.set()
            for thread in (self.killer, self.sampler, self.killer.setter):
                if thread is not None and thread.is_alive():
                    thread.join(timeout=90)
            self.killer.resume_all()
            if self.server is not None:
                self.server.ensure_up()
        self._healthy()
        self._settle(store)
        stop_output, unstopped = self._stop()
        return drained, stop_output, unstopped, self._survivors()

    def _unfinished(self, store: Store) -> int:
        self._healthy()  # a dead killer or sampler voids the run: stop waiting at once
        try:
            return _unfinished(store)
        except errors.StoreUnavailable:
            if self.server is None:
                raise
            return 1 << 30  # a server fault: ask again at the next poll

    def _healthy(self) -> None:
        for thread in (self.killer, self.sampler):
            if thread.error is not None:
                raise RuntimeError(f"the {thread.name} thread failed") from thread.error

    def _settle(self, store: Store) -> None:
        """Wait until every live supervisor's workers are registered.

        `worker stop` asks the workers registered when it runs, so a worker that a supervisor is
        still restarting after the last fault would miss it and keep running (a race of its own,
        outside what this run checks).
        """

        def settled() -> bool:
            registered = {w.pid for w in self._read(store.list_workers)}
            live = self.supervisors.live()
            return bool(live) and all(
                len(procs.children(p.pid)) == WORKERS_EACH
                and set(procs.children(p.pid)) <= registered
                for p in live
            )

        with contextlib.suppress(AssertionError):  # _stop() reports whatever is left
            wait_until(settled, EXIT_DEADLINE, "the workers to register", interval=0.1)

    def _stop(self) -> tuple[str, list[str]]:
        """`worker stop`, then wait for every supervisor and worker to exit."""
        result = self.cli("worker stop", "worker", "stop", "--timeout", f"{STOP_TIMEOUT:g}")
        output = f"exit {result.returncode}: {(result.stdout + result.stderr).strip()}"
        unstopped = []
        deadline = time.monotonic() + EXIT_DEADLINE
        for proc in self.supervisors.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                unstopped.append(f"supervisor {procs.describe(proc.pid)} still running")
        try:
            wait_until(
                lambda: not self._workers_left(),
                max(deadline - time.monotonic(), 0.1),
                "the workers to exit",
                interval=0.1,
            )
        except AssertionError:
            unstopped += [
                f"worker {procs.describe(pid)} still running" for pid in self._workers_left()
            ]
        return output, unstopped

    def _workers_left(self) -> list[int]:
        jobs = set(procs.marked(self.run_marker))
        return [pid for pid in procs.marked(self.owner) if pid not in jobs and procs.is_alive(pid)]

    def _survivors(self) -> list[str]:
        def left() -> list[int]:
            return [pid for pid in procs.marked(self.run_marker) if procs.is_alive(pid)]

        with contextlib.suppress(AssertionError):
            wait_until(lambda: not left(), SURVIVOR_GRACE, "job processes to go", interval=0.05)
        return [f"{procs.describe(pid)} outlived the run" for pid in left()]

    def _collect(self, store: Store) -> checks.Evidence:
        lines, malformed = checks.parse_history(self.history.read_text(errors="replace"))
        self._read(store.counts)  # the faults are over: reopen a connection the last one broke
        states: dict[str, str | None] = {}
        attempts: dict[str, list[checks.Recorded]] = {}
        for job_id in self.enqueued:
            job = store.get_job(job_id)
            states[job_id] = None if job is None else job.state.value
            attempts[job_id] = [
                checks.Recorded(
                    job=job_id,
                    number=a.number,
                    outcome=a.end.value,
                    worker_id=a.worker_id,
                    started=a.started_at.timestamp(),
                    ended=a.ended_at.timestamp(),
                )
                for a in store.attempts(job_id)
            ]
        counts = store.counts()
        total = sum(n for states_ in counts.by_queue.values() for n in states_.values())
        evidence = checks.Evidence(
            enqueued=list(self.enqueued),
            states=states,
            total_jobs=total,
            attempts=attempts,
            lines=lines,
            malformed=malformed,
            commands={plan.id: plan.describe() for plan in self.plans},
        )
        evidence.cli_problems = self._compare_cli(store, attempts)
        return evidence

    def _compare_cli(self, store: Store, attempts: dict[str, list[checks.Recorded]]) -> list[str]:
        problems = []
        busiest = sorted(attempts, key=lambda job: (-len(attempts[job]), job))[: CLI_SAMPLE // 2]
        rest = sorted(set(attempts) - set(busiest))
        sample = busiest + seeded(str(self.seed)).sample(rest, min(len(rest), CLI_SAMPLE // 2))
        for job_id in sample:
            result = run_cli(self.db, "show", job_id, "--json")
            if result.returncode != 0:
                problems.append(f"show {job_id} --json exited {result.returncode}: {result.stderr}")
                continue
            shown = json.loads(result.stdout)
            job = store.get_job(job_id)
            history = [(h["number"], h["outcome"]) for h in shown["history"]]
            expected = [(a.number, a.outcome) for a in attempts[job_id]]
            state = None if job is None else job.state.value
            if shown["state"] != state or history != expected:
                problems.append(
                    f"show {job_id} --json: {shown['state']} {history}, store: {state} {expected}"
                )
        dead = {j.id for j in store.list_jobs(models.JobFilter(state=models.JobState.DEAD), 10**6)}
        result = run_cli(self.db, "list", "--state", "dead", "--limit", "1000000", "--json")
        if result.returncode != 0:
            problems.append(f"list --json exited {result.returncode}: {result.stderr}")
        elif {j["id"] for j in json.loads(result.stdout)} != dead:
            problems.append("list --state dead --json differs from the store's dead jobs")
        problems += self._compare_activity(attempts)
        return problems

    def _compare_activity(self, attempts: dict[str, list[checks.Recorded]]) -> list[str]:
        """`status --json`'s last hour counts every recorded attempt as the README says, though
        workers were killed and frozen mid-finish (each counts in the finish's transaction)."""
        recorded = [a for job in attempts.values() for a in job]
        if recorded and time.time() - min(a.ended for a in recorded) > ACTIVITY_WINDOW:
            return []  # a run longer than status's hour: its first attempts are out of it
        result = run_cli(self.db, "status", "--json")
        if result.returncode != 0:
            return [f"status --json exited {result.returncode}: {result.stderr}"]
        hour = json.loads(result.stdout)["last_hour"]
        shown = (
            sum(q["completed"] for q in hour.values()),
            sum(q["failed"] for q in hour.values()),
        )
        expected = (
            sum(a.outcome == "succeeded" for a in recorded),
            sum(a.outcome in ("failed", "timeout", "not_found", "worker_lost") for a in recorded),
        )
        if shown != expected:
            return [f"status --json's last hour: (completed, failed) {shown}, attempts {expected}"]
        return []

    def _clean_up(self) -> None:
        """Whatever happened: resume frozen processes, then kill everything the run started."""
        self.killer.done.set()
        self.sampler.done.set()
        self.killer.resume_all()
        for proc in self.supervisors.procs:
            if proc.poll() is None:
                proc.kill()
        for _ in range(3):  # a dying worker may still start a job: sweep again
            for pid in procs.marked(self.owner):
                procs.send(pid, signal.SIGKILL, self.owner)
        for proc in self.supervisors.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if self.server is not None:
            self.server.ensure_up()


def store_name(db: str) -> str:
    """`sqlite` or `postgres`: which store a location names."""
    return "postgres" if is_postgres(db) else "sqlite"


def seeded(seed: str) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible choices, not cryptography


def _unfinished(store: Store) -> int:
    counts = store.counts()
    return sum(
        n
        for states in counts.by_queue.values()
        for state, n in states.items()
        if state.value not in checks.FINAL
    )


# --- entry points ------------------------------------------------------------------------


def settings_from_env() -> tuple[Profile, int, bool, bool]:
    """(profile, seed, faults, escapes) from QUEUECTL_CHAOS, _SEED, _FAULTS and _ESCAPES."""
    profile = PROFILES[os.environ.get("QUEUECTL_CHAOS", "quick")]
    seed_text = os.environ.get("QUEUECTL_CHAOS_SEED", "")
    seed = int(seed_text) if seed_text else secrets.randbelow(2**31)
    faults = os.environ.get("QUEUECTL_CHAOS_FAULTS", "on") != "off"
    escapes = os.environ.get("QUEUECTL_CHAOS_ESCAPES", "on") != "off"
    return profile, seed, faults, escapes
