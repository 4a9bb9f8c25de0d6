"""queuectl.activity: how attempts are counted, and percentiles read back from its buckets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl import activity, models

NOW = datetime(2026, 12, 4, 12, 30, 45, tzinfo=UTC)
DURATIONS = st.floats(min_value=1e-6, max_value=86_400.0, allow_nan=False)
TOLERANCE = 2 ** (1 / 16) - 1  # half a bucket of an eighth of an octave: 4.4 %


def exact(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile, from every sample sorted."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@given(st.lists(DURATIONS, min_size=1, max_size=300), st.sampled_from([0.5, 0.95, 0.99, 1.0]))
def test_a_percentile_from_the_buckets_is_within_half_a_bucket_of_the_exact_one(samples, fraction):
    histogram: dict[int, int] = {}
    for seconds in samples:
        index = activity.bucket(seconds)
        histogram[index] = histogram.get(index, 0) + 1
    got = activity.percentile(histogram, fraction)
    assert got is not None
    want = exact(samples, fraction)
    assert abs(got - want) <= want * TOLERANCE * 1.0001


@given(DURATIONS, DURATIONS)
def test_buckets_keep_the_order_of_durations(a, b):
    if a <= b:
        assert activity.bucket(a) <= activity.bucket(b)


def test_tiny_negative_and_nan_durations_fall_in_the_first_bucket():
    # A clock stepped back can make an attempt end before it started: never an error.
    assert activity.bucket(0.0) == 0
    assert activity.bucket(-3.0) == 0
    assert activity.bucket(float("nan")) == 0
    assert activity.bucket(1e-9) == 0
    assert activity.bucket(2e-6) == 8


def test_an_empty_histogram_has_no_percentile():
    assert activity.percentile({}, 0.5) is None


def outcome(end: models.AttemptEnd, seconds: float = 2.0) -> models.Outcome:
    return models.Outcome(end=end, started_at=NOW - timedelta(seconds=seconds), ended_at=NOW)


COUNTED = {
    models.AttemptEnd.SUCCEEDED: (1, 0, True),
    models.AttemptEnd.FAILED: (0, 1, True),
    models.AttemptEnd.TIMEOUT: (0, 1, True),
    models.AttemptEnd.NOT_FOUND: (0, 1, True),
    models.AttemptEnd.WORKER_LOST: (0, 1, False),
    models.AttemptEnd.SHUTDOWN: None,
    models.AttemptEnd.CANCELLED: None,
}
"""(completed, failed, has a duration) per way an attempt ends, None when not counted: the
README's table."""


@pytest.mark.parametrize(("end", "counted"), COUNTED.items())
def test_each_way_an_attempt_ends_is_counted_as_documented(end, counted):
    got = activity.tally(outcome(end))
    if counted is None:
        assert got is None
        return
    assert got is not None
    completed, failed, has_duration = counted
    assert (got.completed, got.failed) == (completed, failed)
    if has_duration:
        assert got.bucket == activity.bucket(2.0)
    else:
        assert got.bucket == activity.NO_DURATION


def test_every_way_an_attempt_ends_is_in_the_table():
    # A new AttemptEnd must be placed on purpose (and documented): counted, or not.
    assert set(COUNTED) == set(models.AttemptEnd)


def seen(
    minutes: list[tuple[str, datetime, int, int]], durations: Sequence[tuple[str, int, int]] = ()
) -> models.Activity:
    return models.Activity(
        minutes=[models.MinuteCount(*m) for m in minutes],
        durations=[models.DurationCount(*d) for d in durations],
    )


def test_the_window_is_this_minute_and_the_59_before_it():
    this = NOW.replace(second=0)
    first = this - timedelta(minutes=59)
    assert activity.window_start(NOW) == first
    read = seen(
        [
            ("a", this, 2, 0),
            ("a", first, 0, 1),
            ("a", first - timedelta(minutes=1), 100, 0),  # too old
            ("a", this + timedelta(minutes=1), 100, 0),  # not yet (a clock stepped back)
        ]
    )
    [(queue, found)] = activity.summarise(read, NOW).items()
    assert queue == "a"
    assert (found.completed, found.failed) == (2, 1)
    assert len(found.minutes) == activity.WINDOW_MINUTES
    assert found.minutes[0] == activity.Minute(start=first, completed=0, failed=1)
    assert found.minutes[-1] == activity.Minute(start=this, completed=2, failed=0)
    assert all(m.completed == m.failed == 0 for m in found.minutes[1:-1])
    assert [m.start for m in found.minutes] == [
        first + timedelta(minutes=i) for i in range(activity.WINDOW_MINUTES)
    ]


def test_counts_of_one_key_add_up_and_queues_stay_apart():
    this = NOW.replace(second=0)
    fast, slow = activity.bucket(0.01), activity.bucket(5.0)
    read = seen(
        [("a", this, 30, 0), ("a", this, 60, 1010), ("b", this, 1, 0)],
        [("a", fast, 30), ("a", fast, 60), ("a", slow, 10), ("b", slow, 1)],
    )
    found = activity.summarise(read, NOW)
    a, b = found["a"], found["b"]
    assert (a.completed, a.failed) == (90, 1010)
    assert a.p50 == pytest.approx(0.01, rel=TOLERANCE)
    assert a.p95 == pytest.approx(5.0, rel=TOLERANCE)
    assert (b.completed, b.failed) == (1, 0)
    assert b.p50 == b.p95 == pytest.approx(5.0, rel=TOLERANCE)


def test_a_queue_without_durations_has_no_percentiles():
    # Its attempts all lost their worker: counted as failed, with no duration.
    found = activity.summarise(seen([("a", NOW, 0, 2)]), NOW)
    assert (found["a"].failed, found["a"].p50, found["a"].p95) == (2, None, None)


def test_minutes_count_from_the_unix_epoch_in_utc():
    assert activity.minute_of(datetime(1970, 1, 1, 0, 1, 59, tzinfo=UTC)) == 1
    when = datetime(2026, 12, 4, 13, 30, 45, tzinfo=UTC)
    local = when.astimezone(ZoneInfo("Asia/Kathmandu"))  # +05:45
    assert activity.minute_of(local) == activity.minute_of(when)
    assert activity.minute_start(activity.minute_of(when)) == when.replace(second=0)
