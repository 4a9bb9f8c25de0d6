"""The chaos run's invariants, checked on what a run observed. Pure: no processes, no store.

`evaluate()` turns the history lines, the store's attempt records and what the killer and the
status sampler saw into a list of problems per invariant, so `test_checks.py` can check each
rule on made-up evidence.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

TOLERANCE = 0.25
"""Seconds a history line may lie outside its attempt's recorded times (clock reads, not skew:
both are CLOCK_REALTIME on this host). A process that outlives its attempt does so by seconds."""
KILL_SLACK = 0.05
"""A SIGKILLed worker records nothing after this many seconds past the kill."""
FINAL = frozenset({"completed", "dead"})
LOST = frozenset({"worker_lost", "shutdown"})
"""Outcomes recorded on a run's behalf by someone else than the process that ran it."""

INVARIANTS: dict[str, str] = {
    "all_final": "every job ends completed or dead",
    "none_lost": "every acknowledged job is in the store, and nothing else is",
    "none_stuck": "no job is left processing",
    "no_overlap_lines": "no run of a job starts while an earlier run or its children still live "
    "(the job's flock)",
    "no_concurrent_runs": "no two runs of one job overlap in time (start/end lines), and no "
    "attempt number starts twice",
    "starts_recorded": "every start line's (job, attempt) has a recorded attempt",
    "attempts_have_starts": "every attempt recorded as succeeded/failed/timeout/not_found has a "
    "start line",
    "attempt_numbers": "a finished job's attempts are numbered 1..n, each once",
    "contained": "no job process writes after its attempt's recorded end (nothing outlives its "
    "attempt)",
    "killed_are_lost": "attempts of a SIGKILLed worker that end after its death are "
    "worker_lost or shutdown",
    "no_survivors": "no process carrying the run's marker is left after `worker stop`",
    "no_dead_listed": "`status --json` lists no worker whose pid is dead for longer than the "
    "longest lease + 3 s",
    "clean_stop": "every supervisor and worker exits after `worker stop`",
    "cli_agrees": "`status`, `show` and `list --json` work and agree with the store",
    "history_sane": "the history is well-formed and has runs in it (the harness works)",
}


@dataclass(frozen=True)
class Line:
    """One history line: `KIND JOB ATTEMPT PID TIME`."""

    kind: str
    job: str
    attempt: int
    pid: int
    at: float


def parse_history(text: str) -> tuple[list[Line], list[str]]:
    """The history's lines, and the lines that did not parse."""
    lines, malformed = [], []
    for raw in text.splitlines():
        parts = raw.split()
        try:
            kind, job, attempt, pid, at = parts
            if kind not in ("start", "end", "child", "overlap"):
                raise ValueError(kind)
            lines.append(Line(kind, job, int(attempt), int(pid), float(at)))
        except ValueError:
            malformed.append(raw)
    return lines, malformed


@dataclass(frozen=True)
class Recorded:
    """One attempt as the store recorded it (times as Unix seconds)."""

    job: str
    number: int
    outcome: str
    worker_id: str | None
    started: float
    ended: float


@dataclass(frozen=True)
class Kill:
    """A worker the killer SIGKILLed, and when (Unix seconds, read just before the signal)."""

    worker_id: str | None
    pid: int
    at: float
    how: str


@dataclass
class Evidence:
    """Everything a run observed, for evaluate()."""

    enqueued: list[str]
    states: dict[str, str | None]
    """Each enqueued job's final state; None when the store does not have it."""
    total_jobs: int
    attempts: dict[str, list[Recorded]]
    lines: list[Line]
    malformed: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    dead_listed: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    unstopped: list[str] = field(default_factory=list)
    cli_problems: list[str] = field(default_factory=list)
    store_problems: list[str] = field(default_factory=list)
    """What the store got wrong outside the jobs' history (a batch enqueue half stored)."""
    commands: dict[str, str] = field(default_factory=dict)
    """What each job runs (`sleep 6.10`), to say in messages."""

    def what(self, job: str) -> str:
        command = self.commands.get(job)
        return f"{job} ({command})" if command else job


def clock(at: float) -> str:
    """A time of day with milliseconds, for messages."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def evaluate(ev: Evidence) -> dict[str, list[str]]:
    """The problems found for each invariant (an empty list: it holds)."""
    problems: dict[str, list[str]] = {name: [] for name in INVARIANTS}
    _check_states(ev, problems)
    runs: dict[tuple[str, int], list[Line]] = defaultdict(list)
    for line in ev.lines:
        runs[line.job, line.attempt].append(line)
    recorded = {(a.job, a.number): a for attempts in ev.attempts.values() for a in attempts}
    _check_overlaps(ev, runs, recorded, problems)
    _check_runs(ev, runs, problems)
    _check_records(ev, runs, recorded, problems)
    _check_attempts(ev, runs, problems)
    _check_kills(ev, problems)
    problems["none_lost"] += ev.store_problems
    problems["no_survivors"] += ev.survivors
    problems["no_dead_listed"] += ev.dead_listed
    problems["clean_stop"] += ev.unstopped
    problems["cli_agrees"] += ev.cli_problems
    problems["history_sane"] += [f"malformed line: {line!r}" for line in ev.malformed]
    known = set(ev.enqueued)
    problems["history_sane"] += [
        f"line for a job never enqueued: {line}" for line in ev.lines if line.job not in known
    ]
    if ev.enqueued and not any(line.kind == "start" for line in ev.lines):
        problems["history_sane"].append("no job wrote a start line: the job script is broken")
    return problems


def _check_states(ev: Evidence, problems: dict[str, list[str]]) -> None:
    for job in ev.enqueued:
        state = ev.states.get(job)
        if state is None:
            problems["none_lost"].append(f"{job}: acknowledged by enqueue, missing from the store")
            continue
        if state not in FINAL:
            problems["all_final"].append(f"{job}: {state}")
        if state == "processing":
            problems["none_stuck"].append(f"{job}: still processing")
    if ev.total_jobs != len(ev.enqueued):
        problems["none_lost"].append(
            f"the store holds {ev.total_jobs} jobs, {len(ev.enqueued)} were enqueued"
        )


def _check_overlaps(
    ev: Evidence,
    runs: dict[tuple[str, int], list[Line]],
    recorded: dict[tuple[str, int], Recorded],
    problems: dict[str, list[str]],
) -> None:
    """Every overlap line, with the earlier runs that were seen alive after it (the holders)."""
    for line in ev.lines:
        if line.kind != "overlap":
            continue
        holders = []
        for (job, attempt), lines in sorted(runs.items()):
            if job != line.job or attempt >= line.attempt:
                continue
            last = max(lines, key=lambda other: other.at)
            if last.at > line.at:
                record = recorded.get((job, attempt))
                ended = (
                    f"recorded {record.outcome} at {clock(record.ended)}"
                    if record
                    else "unrecorded"
                )
                holders.append(
                    f"attempt {attempt} ({ended}) wrote a {last.kind} line at {clock(last.at)}"
                )
        held = "; ".join(holders) or "an earlier run, killed later without a line"
        problems["no_overlap_lines"].append(
            f"{ev.what(line.job)} attempt {line.attempt} found the job's lock held at "
            f"{clock(line.at)}: {held}"
        )


def _check_runs(
    ev: Evidence, runs: dict[tuple[str, int], list[Line]], problems: dict[str, list[str]]
) -> None:
    intervals: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for (job, attempt), lines in runs.items():
        starts = [line for line in lines if line.kind == "start"]
        if len(starts) > 1:
            problems["no_concurrent_runs"].append(
                f"{job} attempt {attempt} started {len(starts)} times (pids "
                + ", ".join(str(s.pid) for s in starts)
                + ")"
            )
        ends = [line for line in lines if line.kind == "end"]
        if len(starts) == 1 and ends:
            intervals[job].append((starts[0].at, max(e.at for e in ends), attempt))
    for job, spans in intervals.items():
        spans.sort()
        latest_end, latest = spans[0][1], spans[0][2]
        for start, end, attempt in spans[1:]:
            if start < latest_end:
                problems["no_concurrent_runs"].append(
                    f"{ev.what(job)}: attempt {attempt} started at {clock(start)}, before "
                    f"attempt {latest} ended at {clock(latest_end)}"
                )
            if end > latest_end:
                latest_end, latest = end, attempt


def _check_records(
    ev: Evidence,
    runs: dict[tuple[str, int], list[Line]],
    recorded: dict[tuple[str, int], Recorded],
    problems: dict[str, list[str]],
) -> None:
    """Each run's lines against its attempt record: recorded, and within the attempt's times."""
    finished = {job for job, state in ev.states.items() if state in FINAL}
    for (job, attempt), lines in sorted(runs.items()):
        record = recorded.get((job, attempt))
        if record is None:
            if job in finished and _ran(lines):
                problems["starts_recorded"].append(
                    f"{job} attempt {attempt} ran (pid {lines[0].pid} at {clock(lines[0].at)}) "
                    "but has no recorded attempt"
                )
            continue
        for line in lines:
            if line.at > record.ended + TOLERANCE:
                problems["contained"].append(
                    f"{ev.what(job)} attempt {attempt}: a {line.kind} line from pid {line.pid} at "
                    f"{clock(line.at)}, {line.at - record.ended:.2f}s after the attempt ended "
                    f"({record.outcome})"
                )
            elif line.at < record.started - TOLERANCE:
                problems["contained"].append(
                    f"{job} attempt {attempt}: a {line.kind} line from pid {line.pid} at "
                    f"{clock(line.at)}, {record.started - line.at:.2f}s before the attempt started"
                )


def _check_attempts(
    ev: Evidence, runs: dict[tuple[str, int], list[Line]], problems: dict[str, list[str]]
) -> None:
    """Each attempt record against the history: it ran, and the numbering has no gaps."""
    for job, attempts in sorted(ev.attempts.items()):
        for record in attempts:
            if record.outcome not in LOST and not _ran(runs.get((job, record.number), [])):
                problems["attempts_have_starts"].append(
                    f"{job} attempt {record.number} is recorded as {record.outcome} but never "
                    "wrote a start line"
                )
        numbers = sorted(a.number for a in attempts)
        if ev.states.get(job) in FINAL and numbers != list(range(1, len(numbers) + 1)):
            problems["attempt_numbers"].append(f"{job}: attempts numbered {numbers}")


def _ran(lines: list[Line]) -> bool:
    """Whether a run started: it wrote a start line, or found its lock taken."""
    return any(line.kind in ("start", "overlap") for line in lines)


def _check_kills(ev: Evidence, problems: dict[str, list[str]]) -> None:
    by_worker: dict[str, list[Recorded]] = defaultdict(list)
    for attempts in ev.attempts.values():
        for record in attempts:
            if record.worker_id is not None:
                by_worker[record.worker_id].append(record)
    for kill in ev.kills:
        if kill.worker_id is None:
            continue
        for record in by_worker.get(kill.worker_id, []):
            if record.outcome not in LOST and record.ended > kill.at + KILL_SLACK:
                problems["killed_are_lost"].append(
                    f"{record.job} attempt {record.number} ran on worker {kill.worker_id}, "
                    f"SIGKILLed at {clock(kill.at)} ({kill.how}), yet is recorded as "
                    f"{record.outcome}, ending at {clock(record.ended)}"
                )
