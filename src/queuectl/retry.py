"""The retry policy: how long to wait after a failure, and where a job goes after an attempt.

Pure functions: time and randomness are parameters. The store applies what they decide.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from queuectl import config, models


def backoff_delay(
    attempts: int,
    base: float,
    cap: float,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt after `attempts` attempts have failed.

    The delay is base ** attempts, multiplied by a random factor in [1 - jitter, 1 + jitter]
    when jitter > 0, and never more than cap.
    """
    try:
        delay = base ** max(attempts, 0)
    except OverflowError:
        delay = cap
    if jitter > 0:
        delay *= (rng or random).uniform(1 - jitter, 1 + jitter)
    return max(0.0, min(delay, cap))


def _error_text(outcome: models.Outcome) -> str:
    if outcome.error:
        return outcome.error
    if outcome.end is models.AttemptEnd.TIMEOUT:
        return "timed out"
    if outcome.signal is not None:
        return f"killed by signal {outcome.signal}"
    return f"exit code {outcome.exit_code}"


def next_transition(
    job: models.Job,
    outcome: models.Outcome,
    cfg: config.Config,
    now: datetime,
    rng: random.Random | None = None,
) -> models.Transition:
    """Decide the job's next state after a claimed attempt ended with `outcome`.

    `job.attempts` already counts this attempt (the claim raised it). A shutdown gives the attempt
    back; a cancel ends the job; a failure is retried while job.attempts <= job.max_retries,
    otherwise the job is dead.
    """
    if outcome.end is models.AttemptEnd.SUCCEEDED:
        return models.Transition(state=models.JobState.COMPLETED, attempts=job.attempts)
    if outcome.end is models.AttemptEnd.SHUTDOWN:
        return models.Transition(
            state=models.JobState.PENDING,
            attempts=max(job.attempts - 1, 0),
            run_at=now,
            last_error=job.last_error,
        )
    if outcome.end is models.AttemptEnd.CANCELLED:
        return models.Transition(
            state=models.JobState.CANCELLED, attempts=job.attempts, last_error="cancelled"
        )
    error = _error_text(outcome)
    if job.attempts > job.max_retries:
        return models.Transition(
            state=models.JobState.DEAD, attempts=job.attempts, last_error=error
        )
    delay = backoff_delay(job.attempts, cfg.backoff_base, cfg.max_backoff, cfg.backoff_jitter, rng)
    return models.Transition(
        state=models.JobState.FAILED,
        attempts=job.attempts,
        run_at=now + timedelta(seconds=delay),
        last_error=error,
    )


def describe(job: models.Job, transition: models.Transition) -> str:
    """Where a job went after an attempt, for the log line."""
    if transition.state is models.JobState.FAILED and transition.run_at is not None:
        return f"failed, retry {job.attempts}/{job.max_retries} at {transition.run_at:%H:%M:%S.%f}"
    return transition.state.value
