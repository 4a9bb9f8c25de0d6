"""Load: eight enqueuers at once, single calls and bulk files, while four workers drain.

Every enqueuer is a thread running the real console script one call after another, so eight
`queuectl enqueue` processes write at the same time, and the four workers (`worker start --count
4`, jobs are `true`) claim and finish meanwhile. Afterwards every acknowledged job (an id a
single call printed, a line of a file the CLI said it enqueued) is in the store exactly once,
completed, after exactly one attempt (there are no faults here, so no worker_lost either), and
no enqueuer saw an error of any kind (exit code and stderr of every call are checked), nor did
a worker log a store error.

Count: 100,000 jobs, in `make test` too. Measured on the project's 2-core machine, with other
test runs on it: 1 min 53 s to 2 min 28 s in all (the enqueues done after 78-110 s, the queue
drained after 108-172 s); 20,000 jobs took 38 s. That is under the 3 minutes beyond which the
full count would have been kept for QUEUECTL_CHAOS=long only.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from queuectl import models
from queuectl.store import open_store
from tests.helpers import WorkerPool, run_cli, wait_until

JOBS = 100_000
ENQUEUERS = 8
SINGLES = 25
"""Single `queuectl enqueue` calls per enqueuer, between its files."""
FILES = 4
"""Bulk files per enqueuer (one of them through stdin); they hold the rest of its jobs."""
WORKER_LOG_ERRORS = re.compile(r"(?i)traceback|locked|error|unavailable|failed: ")
"""A worker's store errors and crashes. Not "lost": that no job was rescued is checked on the
attempts themselves, and a heartbeat racing its job's finish may warn of a lost lease."""


class Enqueuer(threading.Thread):
    """One enqueuer: its single calls and files, interleaved, one process at a time."""

    def __init__(self, number: int, db: str | Path, root: Path, jobs: int) -> None:
        super().__init__(name=f"enqueuer-{number}", daemon=True)  # never outlives a failed test
        self.number, self.db, self.root = number, db, root
        self.ids = [f"load{number}-{n:06d}" for n in range(jobs)]
        self.accepted: list[str] = []
        self.problems: list[str] = []

    def run(self) -> None:
        singles, bulk = self.ids[:SINGLES], self.ids[SINGLES:]
        size = -(-len(bulk) // FILES)
        files = [bulk[i : i + size] for i in range(0, len(bulk), size)]
        per_gap = -(-len(singles) // (len(files) + 1))
        for part in range(len(files) + 1):
            for job_id in singles[part * per_gap : (part + 1) * per_gap]:
                self._single(job_id)
            if part < len(files):
                self._file(files[part], part, stdin=part == 0)

    def _call(self, what: str, *args: str, input: str | None = None) -> str | None:
        """Run the CLI; return its stdout, or None after noting what went wrong."""
        try:
            result = run_cli(self.db, "enqueue", *args, input=input)
        except subprocess.TimeoutExpired:
            self.problems.append(f"{what}: no answer within 60 s")
            return None
        if result.returncode != 0 or result.stderr:
            self.problems.append(f"{what}: exit {result.returncode}, stderr {result.stderr!r}")
            return None
        return result.stdout

    def _single(self, job_id: str) -> None:
        # Each of the three ways to give one job.
        style = int(job_id.rsplit("-", 1)[1]) % 3
        if style == 0:
            args: tuple[str, ...] = (json.dumps({"id": job_id, "command": "true"}),)
        elif style == 1:
            args = ("--id", job_id, "--command", "true")
        else:
            args = ("--id", job_id, "--", "true")
        out = self._call(f"enqueue {job_id}", *args)
        if out is not None and out.strip() != job_id:
            self.problems.append(f"enqueue {job_id} printed {out!r}")
        elif out is not None:
            self.accepted.append(job_id)

    def _file(self, ids: list[str], part: int, stdin: bool) -> None:
        text = "".join(json.dumps({"id": job_id, "command": "true"}) + "\n" for job_id in ids)
        if stdin:
            out = self._call(f"enqueue --file - ({len(ids)} jobs)", "--file", "-", input=text)
        else:
            path = self.root / f"jobs-{self.number}-{part}.jsonl"
            path.write_text(text)
            out = self._call(f"enqueue --file {path.name}", "--file", str(path))
        if out is not None and out.split() != ids:
            self.problems.append(f"file {part} of enqueuer {self.number} printed {out!r}")
        elif out is not None:
            self.accepted += ids


@pytest.mark.timeout(1500)  # generous: the machine is shared; a run takes about 150 s
def test_concurrent_enqueuers_and_workers_lose_and_repeat_nothing(db: str, tmp_path: Path):
    run_cli(db, "status")  # create the store before the enqueuers race to
    share = JOBS // ENQUEUERS
    enqueuers = [Enqueuer(n, db, tmp_path, share) for n in range(ENQUEUERS)]
    began = time.monotonic()
    with WorkerPool(db, 4) as pool:
        for enqueuer in enqueuers:
            enqueuer.start()
        for enqueuer in enqueuers:
            enqueuer.join(timeout=1200)
            assert not enqueuer.is_alive(), f"{enqueuer.name} still enqueuing after 20 minutes"
        enqueued = time.monotonic()
        problems = [p for e in enqueuers for p in e.problems]
        assert not problems, f"{len(problems)} enqueue call(s) failed:\n  " + "\n  ".join(
            problems[:10]
        )
        accepted = [job_id for e in enqueuers for job_id in e.accepted]
        assert len(accepted) == ENQUEUERS * share
        store = open_store(db)
        try:
            wait_until(
                lambda: store.counts().total(models.JobState.COMPLETED) >= len(accepted),
                timeout=900,
                message=f"{len(accepted)} jobs to complete",
                interval=0.5,
            )
            drained = time.monotonic()
            log = pool.log_text()
        finally:
            store.close()
    print(
        f"load: {len(accepted)} jobs; enqueued in {enqueued - began:.1f}s, "
        f"drained in {drained - began:.1f}s"
    )
    _check_every_job_ran_once(db, accepted)
    errors = [line for line in log.splitlines() if WORKER_LOG_ERRORS.search(line)]
    assert not errors, "the workers logged errors:\n  " + "\n  ".join(errors[:10])


def _check_every_job_ran_once(db: str, accepted: list[str]) -> None:
    store = open_store(db)
    try:
        counts = store.counts()
        states = {s: counts.total(s) for s in models.JobState}
        assert states[models.JobState.COMPLETED] == len(accepted), states
        assert sum(states.values()) == len(accepted), states
        jobs = store.list_jobs(models.JobFilter(), len(accepted) + 1)
        ids = [job.id for job in jobs]
        assert len(ids) == len(set(ids)) == len(accepted)
        assert set(ids) == set(accepted)
        assert all(job.state is models.JobState.COMPLETED and job.run_count == 1 for job in jobs)
        wrong = []
        for job_id in accepted:
            attempts = store.attempts(job_id)
            if [(a.number, a.end) for a in attempts] != [(1, models.AttemptEnd.SUCCEEDED)]:
                wrong.append(f"{job_id}: {[(a.number, a.end.value) for a in attempts]}")
        assert not wrong, f"{len(wrong)} job(s) did not run exactly once:\n  " + "\n  ".join(
            wrong[:10]
        )
    finally:
        store.close()
