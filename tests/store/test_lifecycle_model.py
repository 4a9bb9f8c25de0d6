"""A stateful model test: random operations on a real SqliteStore, checked against a dict model."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from queuectl import config, models, retry
from queuectl.store import Store, open_store
from tests.helpers import wait_until

CFG = config.Config(max_backoff=0.0)  # a failed job is due again at once
LEASE = 60.0
WAITING = (models.JobState.PENDING, models.JobState.FAILED)


@dataclass
class ModelJob:
    """What must be true of one job."""

    id: str
    order: int
    priority: int
    max_retries: int
    run_at: datetime
    state: models.JobState = models.JobState.PENDING
    attempts: int = 0
    run_count: int = 0
    history: list[models.AttemptEnd] = field(default_factory=list)


class Lifecycle(RuleBasedStateMachine):
    """Drive a real Store (two connections to one file) with random operations."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="queuectl-model-")
        path = Path(self.dir) / "queue.db"
        self.stores: list[Store] = [open_store(path), open_store(path)]
        # Model times lie an hour in the past, so every job is due, and are exact to the ms.
        self.t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.jobs: dict[str, ModelJob] = {}
        self.claims: dict[str, models.Claim] = {}  # job id -> the live claim
        self.stale: list[models.Claim] = []  # claims already finished or rescued
        self.workers = 0

    def teardown(self) -> None:
        for store in self.stores:
            store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers --------------------------------------------------------------------------------
    def at(self, ms: int) -> datetime:
        return self.t0 + timedelta(milliseconds=ms)

    def best(self) -> ModelJob | None:
        runnable = [j for j in self.jobs.values() if j.state in WAITING]
        if not runnable:
            return None
        return min(runnable, key=lambda j: (-j.priority, j.run_at, j.order))

    def new_worker(self) -> str:
        self.workers += 1
        return f"w{self.workers}"

    def claim_best(self, store: Store, lease: float) -> models.Claim | None:
        expected = self.best()
        got = store.claim(self.new_worker(), "host", None, lease)
        if expected is None:
            assert got is None, f"claimed {got} with nothing runnable"
            return None
        assert got is not None, f"nothing claimed, expected {expected.id}"
        assert got.job.id == expected.id, f"claimed {got.job.id}, expected {expected.id}"
        expected.state = models.JobState.PROCESSING
        expected.attempts += 1
        expected.run_count += 1
        assert (got.job.attempts, got.job.run_count) == (expected.attempts, expected.run_count)
        return got

    def apply(
        self, claim: models.Claim, end: models.AttemptEnd, transition: models.Transition
    ) -> None:
        job = self.jobs[claim.job.id]
        if end is models.AttemptEnd.SUCCEEDED:
            assert transition.state is models.JobState.COMPLETED
        elif job.attempts > job.max_retries:
            assert transition.state is models.JobState.DEAD
        else:
            assert transition.state is models.JobState.FAILED
        job.state = transition.state
        job.attempts = transition.attempts
        if transition.run_at is not None:
            job.run_at = transition.run_at
        job.history.append(end)
        self.claims.pop(job.id, None)
        self.stale.append(claim)

    def outcome(self, end: models.AttemptEnd) -> models.Outcome:
        now = datetime.now(UTC)
        return models.Outcome(
            end=end,
            started_at=now,
            ended_at=now,
            exit_code=0 if end is models.AttemptEnd.SUCCEEDED else 1,
        )

    # --- rules ------------------------------------------------------------------------------------
    @rule(
        priority=st.integers(-1, 1),
        max_retries=st.integers(0, 2),
        age=st.integers(0, 5),
        via=st.integers(0, 1),
    )
    def enqueue(self, priority: int, max_retries: int, age: int, via: int) -> None:
        job_id = f"j{len(self.jobs)}"
        run_at = self.at(age)
        self.stores[via].enqueue(
            [
                models.NewJob(
                    id=job_id,
                    command="true",
                    queue="default",
                    priority=priority,
                    run_at=run_at,
                    max_retries=max_retries,
                    timeout=None,
                    cwd=None,
                    env={},
                )
            ]
        )
        self.jobs[job_id] = ModelJob(
            id=job_id,
            order=len(self.jobs),
            priority=priority,
            max_retries=max_retries,
            run_at=run_at,
        )

    @rule(via=st.integers(0, 1))
    def claim(self, via: int) -> None:
        got = self.claim_best(self.stores[via], LEASE)
        if got is not None:
            self.claims[got.job.id] = got

    @precondition(lambda self: self.claims)
    @rule(ok=st.booleans(), pick=st.integers(0, 100), via=st.integers(0, 1), when=st.integers(0, 5))
    def finish(self, ok: bool, pick: int, via: int, when: int) -> None:
        claim = list(self.claims.values())[pick % len(self.claims)]
        end = models.AttemptEnd.SUCCEEDED if ok else models.AttemptEnd.FAILED
        out = self.outcome(end)
        transition = retry.next_transition(claim.job, out, CFG, self.at(when))
        assert self.stores[via].finish(claim, out, transition)
        self.apply(claim, end, transition)

    @precondition(lambda self: self.stale)
    @rule(pick=st.integers(0, 100), ok=st.booleans())
    def late_finish(self, pick: int, ok: bool) -> None:
        claim = self.stale[pick % len(self.stale)]
        before = self.stores[0].get_job(claim.job.id)
        end = models.AttemptEnd.SUCCEEDED if ok else models.AttemptEnd.FAILED
        out = self.outcome(end)
        transition = retry.next_transition(claim.job, out, CFG, self.at(0))
        assert not self.stores[1].finish(claim, out, transition)
        assert self.stores[0].get_job(claim.job.id) == before

    @rule(via=st.integers(0, 1), when=st.integers(0, 5))
    def crash_and_rescue(self, via: int, when: int) -> None:
        store = self.stores[via]
        claim = self.claim_best(store, lease=0.0)
        if claim is None:
            return
        expired = wait_until(
            lambda: [c for c in store.expired_claims(100) if c.job.id == claim.job.id],
            message=f"the lease of {claim.job.id} to expire",
        )
        [lost] = expired
        assert (lost.worker_id, lost.job.run_count) == (claim.worker_id, claim.job.run_count)
        out = self.outcome(models.AttemptEnd.WORKER_LOST)
        transition = retry.next_transition(lost.job, out, CFG, self.at(when))
        assert self.stores[1 - via].rescue(lost, out, transition)
        self.apply(lost, models.AttemptEnd.WORKER_LOST, transition)
        assert self.stores[via].attempts(claim.job.id)[-1].end is models.AttemptEnd.WORKER_LOST

    @rule(via=st.integers(0, 1))
    def retry_all_dead(self, via: int) -> None:
        store = self.stores[via]
        before = store.now()
        moved = store.retry(models.Selection(states=(models.JobState.DEAD,)))
        dead = sorted(j.id for j in self.jobs.values() if j.state is models.JobState.DEAD)
        assert sorted(moved) == dead
        for job_id in moved:
            job = self.jobs[job_id]
            stored = store.get_job(job_id)
            assert stored is not None
            assert before <= stored.run_at <= store.now()
            job.state = models.JobState.PENDING
            job.attempts = 0
            job.run_at = stored.run_at

    # --- invariants -------------------------------------------------------------------------------
    @invariant()
    def counts_match(self) -> None:
        expected: dict[models.JobState, int] = {}
        for job in self.jobs.values():
            expected[job.state] = expected.get(job.state, 0) + 1
        assert self.stores[0].counts().by_queue.get("default", {}) == expected

    @invariant()
    def never_two_owners(self) -> None:
        processing = self.stores[1].list_jobs(
            models.JobFilter(state=models.JobState.PROCESSING), 1000
        )
        owners = {job.id: job.worker_id for job in processing}
        assert owners == {job_id: c.worker_id for job_id, c in self.claims.items()}
        assert len(set(owners.values())) == len(owners)

    @invariant()
    def history_is_numbered_by_run_count(self) -> None:
        for job in self.jobs.values():
            stored = self.stores[0].get_job(job.id)
            assert stored is not None
            assert (stored.state, stored.attempts, stored.run_count) == (
                job.state,
                job.attempts,
                job.run_count,
            )
            history = self.stores[0].attempts(job.id)
            assert [a.end for a in history] == job.history
            assert [a.number for a in history] == list(range(1, len(history) + 1))
            finished = job.run_count - (1 if job.state is models.JobState.PROCESSING else 0)
            assert len(history) == finished


Lifecycle.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
TestLifecycle = Lifecycle.TestCase
