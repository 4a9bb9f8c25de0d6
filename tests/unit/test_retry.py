"""The retry policy: backoff delays and the state a job moves to after an attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from queuectl import config, models, retry
from queuectl.record import replace

NOW = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
CFG = config.Config(backoff_base=2.0, max_backoff=3600.0, backoff_jitter=0.0)


def make_job(attempts: int = 1, max_retries: int = 3, last_error: str | None = None) -> models.Job:
    """A job as a claim returns it: `attempts` already counts the attempt being decided."""
    return models.Job(
        id="j1",
        seq=1,
        command="false",
        queue="default",
        priority=0,
        state=models.JobState.PROCESSING,
        attempts=attempts,
        max_retries=max_retries,
        timeout=None,
        cwd=None,
        env={},
        run_at=NOW - timedelta(minutes=5),
        created_at=NOW - timedelta(minutes=5),
        updated_at=NOW,
        run_count=attempts,
        worker_id="w1",
        lease_expires_at=NOW + timedelta(seconds=30),
        last_error=last_error,
    )


def make_outcome(end: models.AttemptEnd, **kwargs: Any) -> models.Outcome:
    return models.Outcome(end=end, started_at=NOW - timedelta(seconds=1), ended_at=NOW, **kwargs)


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not cryptography


# --- backoff_delay -----------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "base", "cap", "expected"),
    [
        (0, 2.0, 3600.0, 1.0),
        (1, 2.0, 3600.0, 2.0),
        (3, 2.0, 3600.0, 8.0),
        (5, 3.0, 3600.0, 243.0),
        (10, 2.0, 3600.0, 1024.0),
        (12, 2.0, 3600.0, 3600.0),  # 4096 is capped
        (4, 1.0, 3600.0, 1.0),
        (3, 2.0, 0.0, 0.0),
        (-2, 2.0, 3600.0, 1.0),  # never less than base ** 0
    ],
)
def test_backoff_is_base_to_the_attempts_capped(attempts, base, cap, expected):
    assert retry.backoff_delay(attempts, base, cap) == expected


@pytest.mark.parametrize("attempts", [1100, 10_000, 10**9])
def test_backoff_overflow_gives_the_cap(attempts):
    assert retry.backoff_delay(attempts, 2.0, 60.0) == 60.0
    assert retry.backoff_delay(attempts, 10.0, 60.0, jitter=0.5, rng=rng(1)) <= 60.0


def test_jitter_stays_within_its_factor_and_varies():
    gen = rng(42)
    samples = [retry.backoff_delay(3, 2.0, 3600.0, jitter=0.25, rng=gen) for _ in range(500)]
    assert all(8.0 * 0.75 <= s <= 8.0 * 1.25 for s in samples)
    assert len(set(samples)) > 100  # really random, not a constant factor
    assert min(samples) < 7.0
    assert max(samples) > 9.0


def test_jitter_is_still_capped():
    gen = rng(7)
    samples = [retry.backoff_delay(6, 2.0, 64.0, jitter=0.5, rng=gen) for _ in range(200)]
    assert all(32.0 <= s <= 64.0 for s in samples)
    assert 64.0 in samples  # the upper half of the spread is clipped to the cap


def test_full_jitter_never_goes_negative():
    gen = rng(3)
    samples = [retry.backoff_delay(2, 2.0, 100.0, jitter=1.0, rng=gen) for _ in range(200)]
    assert all(0.0 <= s <= 8.0 for s in samples)


def test_jitter_uses_the_given_rng():
    a = [retry.backoff_delay(4, 2.0, 3600.0, 0.3, rng(9)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# --- next_transition -----------------------------------------------------------


def test_success_completes_the_job():
    job = make_job(attempts=2)
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.SUCCEEDED, exit_code=0), CFG, NOW)
    assert t == models.Transition(state=models.JobState.COMPLETED, attempts=2)


def test_failure_with_retries_left_waits_the_backoff():
    job = make_job(attempts=1, max_retries=3)
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.FAILED, exit_code=7), CFG, NOW)
    assert t.state is models.JobState.FAILED
    assert t.attempts == 1
    assert t.run_at == NOW + timedelta(seconds=2)
    assert t.last_error == "exit code 7"


def test_later_failures_wait_longer():
    delays = []
    for attempts in (1, 2, 3):
        t = retry.next_transition(
            make_job(attempts=attempts, max_retries=3),
            make_outcome(models.AttemptEnd.FAILED, exit_code=1),
            CFG,
            NOW,
        )
        assert t.state is models.JobState.FAILED
        assert t.run_at is not None
        delays.append((t.run_at - NOW).total_seconds())
    assert delays == [2.0, 4.0, 8.0]


def test_backoff_respects_the_configured_cap_and_jitter():
    cfg = config.Config(backoff_base=10.0, max_backoff=50.0, backoff_jitter=0.5)
    for seed in range(20):
        t = retry.next_transition(
            make_job(attempts=1, max_retries=5),
            make_outcome(models.AttemptEnd.FAILED, exit_code=1),
            cfg,
            NOW,
            rng=rng(seed),
        )
        assert t.run_at is not None
        assert NOW + timedelta(seconds=5) <= t.run_at <= NOW + timedelta(seconds=15)
    t = retry.next_transition(
        make_job(attempts=3, max_retries=5),
        make_outcome(models.AttemptEnd.FAILED, exit_code=1),
        cfg,
        NOW,
        rng=rng(0),
    )
    assert t.run_at is not None
    assert t.run_at - NOW <= timedelta(seconds=50)


def test_last_retry_exhausted_is_dead():
    job = make_job(attempts=4, max_retries=3)
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.FAILED, exit_code=2), CFG, NOW)
    assert t.state is models.JobState.DEAD
    assert t.attempts == 4
    assert t.last_error == "exit code 2"


def test_no_retries_means_the_first_failure_is_dead():
    job = make_job(attempts=1, max_retries=0)
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.FAILED, exit_code=1), CFG, NOW)
    assert t.state is models.JobState.DEAD


@pytest.mark.parametrize("max_retries", [0, 1, 3, 7])
def test_a_failing_job_runs_max_retries_plus_one_times(max_retries):
    job = make_job(attempts=0, max_retries=max_retries, last_error=None)
    runs = 0
    while True:
        job = replace(job, attempts=job.attempts + 1, run_count=job.run_count + 1)  # the claim
        runs += 1
        t = retry.next_transition(
            job, make_outcome(models.AttemptEnd.FAILED, exit_code=1), CFG, NOW
        )
        job = replace(job, attempts=t.attempts, last_error=t.last_error)
        if t.state is models.JobState.DEAD:
            break
        assert t.state is models.JobState.FAILED
        assert runs <= max_retries
    assert runs == max_retries + 1


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (make_outcome(models.AttemptEnd.TIMEOUT, signal=15), "timed out"),
        (
            make_outcome(models.AttemptEnd.NOT_FOUND, error="sh: 1: nope: not found"),
            "sh: 1: nope: not found",
        ),
        (make_outcome(models.AttemptEnd.WORKER_LOST, error="worker lost"), "worker lost"),
        (make_outcome(models.AttemptEnd.FAILED, signal=9), "killed by signal 9"),
        (make_outcome(models.AttemptEnd.FAILED, exit_code=127), "exit code 127"),
    ],
)
def test_every_kind_of_failure_counts_against_the_budget(outcome, error):
    retried = retry.next_transition(make_job(attempts=1, max_retries=1), outcome, CFG, NOW)
    assert retried.state is models.JobState.FAILED
    assert retried.attempts == 1
    assert retried.last_error == error
    dead = retry.next_transition(make_job(attempts=2, max_retries=1), outcome, CFG, NOW)
    assert dead.state is models.JobState.DEAD
    assert dead.last_error == error


def test_shutdown_gives_the_attempt_back():
    job = make_job(attempts=2, max_retries=3, last_error="exit code 1")
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.SHUTDOWN, signal=15), CFG, NOW)
    assert t.state is models.JobState.PENDING
    assert t.attempts == 1
    assert t.run_at == NOW
    assert t.last_error == "exit code 1"  # a shutdown is not an error of the job


def test_shutdown_on_the_last_attempt_is_not_dead():
    job = make_job(attempts=4, max_retries=3)
    t = retry.next_transition(job, make_outcome(models.AttemptEnd.SHUTDOWN), CFG, NOW)
    assert t.state is models.JobState.PENDING
    assert t.attempts == 3


def test_shutdown_never_makes_attempts_negative():
    t = retry.next_transition(
        make_job(attempts=0), make_outcome(models.AttemptEnd.SHUTDOWN), CFG, NOW
    )
    assert t.attempts == 0
