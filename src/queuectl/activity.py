"""What the queues did lately: attempts ended per minute, and how long they ran.

Each store keeps, with every recorded attempt and in its transaction, one count per queue,
minute and duration bucket, and sums them per queue and minute and per queue and bucket when
asked (`models.Activity`), so that `status` reads a few hundred rows for the last hour whatever
the number of jobs or attempts. Durations go into logarithmic buckets of an eighth of an
octave: a percentile read back from them is within 4.5 % of the exact one
(tests/unit/test_activity.py checks it against sorted samples).

Which attempts count (docs: README, "status"):
- completed: the attempt succeeded;
- failed: it failed, timed out, could not start or lost its worker, whether or not the job
  is retried (each retry is an attempt of its own, as Sidekiq counts failures);
- an attempt stopped by `worker stop --now` or by `cancel` counts as neither;
- durations are those of completed and failed attempts, except a lost worker's, whose end is
  only when its lease ran out.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta

from queuectl import models
from queuectl.record import record

WINDOW_MINUTES = 60
"""How far back `status` looks: this minute and the 59 before it."""
KEEP = timedelta(hours=2)
"""How long the per-minute rows are kept (workers' retention pass drops older ones)."""
STEPS_PER_OCTAVE = 8
NO_DURATION = -1
"""The bucket of an attempt whose duration says nothing (a lost worker's)."""

_COMPLETED = (models.AttemptEnd.SUCCEEDED,)
_FAILED = (
    models.AttemptEnd.FAILED,
    models.AttemptEnd.TIMEOUT,
    models.AttemptEnd.NOT_FOUND,
    models.AttemptEnd.WORKER_LOST,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@record
class Tally:
    """How one attempt is counted: in which column, and in which duration bucket."""

    completed: int
    failed: int
    bucket: int


def tally(outcome: models.Outcome) -> Tally | None:
    """How an attempt with this outcome is counted; None when it is not (shutdown, cancel)."""
    if outcome.end in _COMPLETED:
        completed, failed = 1, 0
    elif outcome.end in _FAILED:
        completed, failed = 0, 1
    else:
        return None
    if outcome.end is models.AttemptEnd.WORKER_LOST:
        return Tally(completed=completed, failed=failed, bucket=NO_DURATION)
    seconds = (outcome.ended_at - outcome.started_at).total_seconds()
    return Tally(completed=completed, failed=failed, bucket=bucket(seconds))


def bucket(seconds: float) -> int:
    """The duration bucket of `seconds`: floor(8 * log2(microseconds)), 0 below 1 us."""
    micros = seconds * 1e6
    if not micros > 1.0:  # also NaN: a clock step can make an end precede its start
        return 0
    return math.floor(STEPS_PER_OCTAVE * math.log2(micros))


def bucket_seconds(index: int) -> float:
    """The duration a bucket stands for: its geometric middle, within 4.5 % of any in it."""
    return float(2.0 ** ((index + 0.5) / STEPS_PER_OCTAVE) / 1e6)


def minute_of(when: datetime) -> int:
    """The minute `when` falls in, as whole minutes since the Unix epoch (UTC)."""
    return int((when - _EPOCH).total_seconds() // 60)


@functools.lru_cache(maxsize=512)
def minute_start(minute: int) -> datetime:
    """When a minute of minute_of() begins (cached: a status reads many rows of few minutes)."""
    return _EPOCH + timedelta(minutes=minute)


def window_start(now: datetime) -> datetime:
    """The first moment `status` counts: the start of the minute 59 minutes before now's."""
    return minute_start(minute_of(now) - (WINDOW_MINUTES - 1))


@record
class Minute:
    """One minute of one queue: attempts that ended in it."""

    start: datetime
    completed: int
    failed: int


@record
class QueueActivity:
    """One queue over the window: totals, a row per minute (oldest first), duration percentiles.

    p50 and p95 are None when no attempt with a duration ended in the window.
    """

    completed: int
    failed: int
    minutes: list[Minute]
    p50: float | None
    p95: float | None


def summarise(seen: models.Activity, now: datetime) -> dict[str, QueueActivity]:
    """Per queue, the window ending at `now` from what the store read since window_start(now).

    Minutes outside the window are left out of the per-minute counts (a clock stepped back can
    have counted some after it); the durations are the store's sums as they come.
    """
    last = minute_of(now)
    first = last - (WINDOW_MINUTES - 1)
    per_minute: dict[str, dict[int, list[int]]] = {}
    for count in seen.minutes:
        minute = minute_of(count.minute)
        if not first <= minute <= last:
            continue
        cell = per_minute.setdefault(count.queue, {}).setdefault(minute, [0, 0])
        cell[0] += count.completed
        cell[1] += count.failed
    durations: dict[str, dict[int, int]] = {}
    for duration in seen.durations:
        histogram = durations.setdefault(duration.queue, {})
        histogram[duration.bucket] = histogram.get(duration.bucket, 0) + duration.n
    result = {}
    for queue, cells in per_minute.items():
        minutes = [
            Minute(start=minute_start(m), completed=c, failed=f)
            for m in range(first, last + 1)
            for c, f in [cells.get(m, [0, 0])]
        ]
        histogram = durations.get(queue, {})
        result[queue] = QueueActivity(
            completed=sum(m.completed for m in minutes),
            failed=sum(m.failed for m in minutes),
            minutes=minutes,
            p50=percentile(histogram, 0.50),
            p95=percentile(histogram, 0.95),
        )
    return result


def percentile(histogram: dict[int, int], fraction: float) -> float | None:
    """The nearest-rank percentile of a bucket histogram, in seconds; None when it is empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_seconds(index)
    raise AssertionError("unreachable: the ranks sum to the total")  # pragma: no cover
