"""Properties: valid specs parse and round-trip, a corrupted field is named, backoff is sane."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from queuectl import config, errors, models, retry, spec
from tests.unit.test_retry import make_job


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not cryptography


# --- valid values of each field ---------------------------------------------------

_ID_CHARS = st.characters(
    min_codepoint=0x21, exclude_characters="\x7f", exclude_categories=["Cs"]
).filter(lambda c: not c.isspace())
ids = st.text(_ID_CHARS, min_size=1, max_size=spec.MAX_ID_LENGTH).filter(
    lambda s: not s.startswith("-") and s.isprintable()
)
# Characters an id must not hold: controls (C0, C1, DEL), format characters (bidi overrides,
# zero-width, BOM), separators (no-break and other spaces, line and paragraph separators),
# private-use ones.
_HIDDEN = st.one_of(
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co"]),
    st.sampled_from("\u202e\u2066\u200b\ufeff\u00a0\u0085\u009b\u2028\u2029"),
)
commands = st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != "" and "\x00" not in s)
priorities = st.integers(*spec.INT_RANGE)
max_retries = st.integers(0, 10_000)
MAX = config.MAX_SECONDS
delays = st.one_of(st.integers(0, MAX), st.floats(0, MAX, allow_nan=False, allow_infinity=False))
timeouts = st.one_of(
    st.integers(1, MAX), st.floats(1e-6, MAX, allow_nan=False, allow_infinity=False)
)
queues = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
cwds = st.text(min_size=1, max_size=100).filter(lambda s: "\x00" not in s)
envs = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(lambda s: "=" not in s and "\x00" not in s),
    st.text(max_size=50).filter(lambda s: "\x00" not in s),
    max_size=5,
)
zones = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# st.datetimes takes naive bounds; the timezone is drawn separately.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC).replace(tzinfo=None)
LATEST = datetime(2200, 1, 1, tzinfo=UTC).replace(tzinfo=None)
run_ats = st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=zones)

OPTIONAL = {
    "id": ids,
    "priority": priorities,
    "max_retries": max_retries,
    "timeout": timeouts,
    "queue": queues,
    "cwd": cwds,
    "env": envs,
}


@st.composite
def valid_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """A decoded JSON object that is a valid job; some use run_at, delay or timeout_sec."""
    job: dict[str, Any] = {"command": draw(commands)}
    for name, strategy in OPTIONAL.items():
        if draw(st.booleans()):
            job[name] = draw(strategy)
    when = draw(st.sampled_from(["none", "run_at", "delay"]))
    if when == "run_at":
        job["run_at"] = draw(run_ats).isoformat()
    elif when == "delay":
        job["delay"] = draw(delays)
    if "timeout" not in job and draw(st.booleans()):
        job["timeout_sec"] = draw(timeouts)
    return job


@given(valid_jobs())
def test_any_valid_job_parses_and_round_trips(job):
    got = spec.from_json(json.dumps(job))
    assert got.command == job["command"]
    assert got.id == job.get("id")
    assert got.priority == job.get("priority", 0)
    assert got.max_retries == job.get("max_retries")
    assert got.queue == job.get("queue", "default")
    assert got.cwd == job.get("cwd")
    assert got.env == job.get("env", {})
    assert got.delay == job.get("delay")
    assert got.timeout == job.get("timeout", job.get("timeout_sec"))
    if "run_at" in job:
        assert got.run_at == datetime.fromisoformat(job["run_at"])
        assert got.run_at is not None
        assert got.run_at.utcoffset() is not None
    else:
        assert got.run_at is None


@given(st.lists(valid_jobs(), min_size=1, max_size=5), st.lists(st.sampled_from(["", "  "])))
def test_json_lines_of_valid_jobs_parse_in_order(jobs, blanks):
    lines = [*blanks, *(json.dumps(job) for job in jobs)]
    got = spec.from_lines(lines)
    assert [s.command for s in got] == [job["command"] for job in jobs]


# --- one corrupted field -----------------------------------------------------------------

_NOT_STRINGS: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.lists(st.integers())
)
_NOT_NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.text(), st.booleans(), st.lists(st.integers()), st.just({})
)
_HUGE = st.integers(min_value=10**309, max_value=10**320)  # beyond any float
_NON_FINITE = st.sampled_from([math.inf, -math.inf, math.nan])
_NAIVE = st.datetimes(min_value=EARLIEST, max_value=LATEST).map(datetime.isoformat)

INVALID: dict[str, st.SearchStrategy[Any]] = {
    "command": st.one_of(
        _NOT_STRINGS, st.text(" \t\n", max_size=5), st.text(min_size=1).map(lambda s: s + "\x00")
    ),
    "id": st.one_of(
        _NOT_STRINGS,
        st.just(""),
        st.text(min_size=1).map(lambda s: "-" + s),
        st.text(min_size=1).map(lambda s: s + " x"),
        st.integers(spec.MAX_ID_LENGTH + 1, spec.MAX_ID_LENGTH + 50).map(lambda n: "a" * n),
        st.tuples(st.text(_ID_CHARS, max_size=5), _HIDDEN, st.text(_ID_CHARS, max_size=5)).map(
            "".join
        ),
    ),
    "priority": st.one_of(
        _NOT_NUMBERS,
        st.floats(),
        st.integers(max_value=spec.INT_RANGE[0] - 1),
        st.integers(min_value=spec.INT_RANGE[1] + 1),
    ),
    "max_retries": st.one_of(
        _NOT_NUMBERS, st.floats(), st.integers(max_value=-1), st.integers(min_value=10_001)
    ),
    "timeout": st.one_of(
        _NOT_NUMBERS,
        _NON_FINITE,
        _HUGE,
        st.floats(max_value=0, allow_nan=False),
        st.integers(max_value=0),
    ),
    "timeout_sec": st.one_of(
        _NOT_NUMBERS.filter(lambda v: v is not None),
        _NON_FINITE,
        st.integers(max_value=0),
    ),
    "delay": st.one_of(
        _NOT_NUMBERS.filter(lambda v: not isinstance(v, str) or _bad_duration(v)),
        _NON_FINITE,
        _HUGE,
        st.floats(max_value=-1e-9, allow_nan=False),
        st.integers(max_value=-1),
    ),
    "run_at": st.one_of(_NOT_STRINGS, _NAIVE, st.text().filter(lambda s: not s[:1].isdigit())),
    "queue": st.one_of(
        _NOT_STRINGS,
        st.just(""),
        st.from_regex(r"[A-Za-z0-9]{65,80}", fullmatch=True),
        st.from_regex(r"[a-z]{0,5}[ /\\,;!@#$%^&*()]+[a-z]{0,5}", fullmatch=True),
        st.tuples(st.just("q"), _HIDDEN, st.just("1")).map("".join),
        st.from_regex(r"[a-z]{0,3}[^\x00-\x7f][a-z]{0,3}", fullmatch=True),  # non-ASCII letters too
    ),
    "cwd": st.one_of(_NOT_STRINGS, st.just(""), st.text().map(lambda s: s + "\x00")),
    "env": st.one_of(
        _NOT_STRINGS,
        st.text(),
        st.dictionaries(st.just(""), st.text(), min_size=1),
        st.dictionaries(st.text().map(lambda s: s + "="), st.text(), min_size=1),
        st.dictionaries(
            st.text(min_size=1).filter(lambda s: "=" not in s), _NOT_STRINGS, min_size=1
        ),
    ),
}


def _bad_duration(text: str) -> bool:
    """Whether a string is no valid delay (a delay may be "90", "10m", "1h30m")."""
    try:
        spec.parse_duration("delay", text)
    except errors.FieldError:
        return True
    return False


@given(valid_jobs(), st.sampled_from(sorted(INVALID)), st.data())
@settings(max_examples=300)
def test_one_corrupted_field_is_named(job, field, data):
    bad = data.draw(INVALID[field], label=field)
    job = dict(job)
    job[field] = bad
    if field == "timeout":
        job.pop("timeout_sec", None)
    if field == "timeout_sec":
        job.pop("timeout", None)
    if field == "delay":
        job.pop("run_at", None)
    if field == "run_at":
        job.pop("delay", None)
    with pytest.raises(errors.FieldError) as info:  # and no other exception type
        spec.from_mapping(job)
    assert info.value.field == field, f"{field}={bad!r} was reported as: {info.value}"
    message = str(info.value)
    assert message.isascii() and message.isprintable(), message  # what it repeats is escaped


@given(st.text(max_size=50).filter(lambda s: s.isidentifier() and s not in spec.FIELDS), st.data())
def test_an_unknown_field_is_named(name, data):
    job = data.draw(valid_jobs())
    job[name] = 1
    with pytest.raises(errors.FieldError) as info:
        spec.from_mapping(job)
    assert info.value.field == name


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _parse_or_error(parse: Any, data: Any) -> errors.FieldError | models.JobSpec:
    """The spec, or the FieldError; any other exception type escapes and fails the test."""
    try:
        return parse(data)  # type: ignore[no-any-return]
    except errors.FieldError as exc:
        return exc


@given(st.one_of(st.text(max_size=100), _JSON.map(json.dumps)))
def test_arbitrary_text_is_a_spec_or_a_field_error(text):
    got = _parse_or_error(spec.from_json, text)
    if isinstance(got, errors.FieldError):
        assert got.problem  # the field may be "" when that is the unknown key
    else:
        assert got.command.strip()


@given(st.dictionaries(st.sampled_from(spec.FIELDS), _JSON, max_size=6))
def test_arbitrary_values_of_known_fields_are_a_spec_or_a_field_error(data):
    got = _parse_or_error(spec.from_mapping, data)
    if isinstance(got, errors.FieldError):
        assert got.field in (*spec.FIELDS, "job")
    else:
        assert isinstance(got.command, str)


# --- backoff -------------------------------------------------------------------------------

bases = st.floats(1.0, 100.0, allow_nan=False)
caps = st.floats(0.0, 1e7, allow_nan=False)
attempts = st.integers(-5, 5000)


@given(bases, caps, attempts, attempts)
def test_backoff_without_jitter_is_monotone_and_capped(base, cap, a, b):
    low, high = sorted((a, b))
    d_low = retry.backoff_delay(low, base, cap)
    d_high = retry.backoff_delay(high, base, cap)
    assert 0.0 <= d_low <= d_high <= cap


@given(bases, caps, attempts, st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_backoff_with_jitter_is_bounded(base, cap, n, jitter, seed):
    delay = retry.backoff_delay(n, base, cap, jitter, rng(seed))
    assert 0.0 <= delay <= cap
    try:
        plain = base ** max(n, 0)
    except OverflowError:
        plain = math.inf
    assume(math.isfinite(plain))
    assert delay >= min(cap, plain * (1 - jitter)) * (1 - 1e-12)
    assert delay <= plain * (1 + jitter) * (1 + 1e-12)


@given(st.integers(0, 50), st.integers(0, 20), st.sampled_from(list(models.AttemptEnd)))
def test_a_transition_is_consistent_with_the_budget(attempts_used, max_retries_, end):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    job = make_job(attempts=attempts_used, max_retries=max_retries_)
    outcome = models.Outcome(end=end, started_at=now, ended_at=now, exit_code=1)
    t = retry.next_transition(job, outcome, config.Config(max_backoff=60.0), now)
    if end is models.AttemptEnd.SUCCEEDED:
        assert t.state is models.JobState.COMPLETED
    elif end is models.AttemptEnd.SHUTDOWN:
        assert t.state is models.JobState.PENDING
        assert t.attempts == max(attempts_used - 1, 0)
    elif end is models.AttemptEnd.CANCELLED:
        assert t.state is models.JobState.CANCELLED  # whatever budget is left
    elif attempts_used > max_retries_:
        assert t.state is models.JobState.DEAD
        assert t.last_error
    else:
        assert t.state is models.JobState.FAILED
        assert t.run_at is not None
        assert now <= t.run_at <= now + timedelta(seconds=60)
        assert t.last_error
