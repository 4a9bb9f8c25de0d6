"""Command arguments beyond job specs: each bad value is a FieldError, raised before any I/O."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from queuectl import api, errors, spec
from queuectl.store import Store

HUGE = [2**31, 2**63, 2**64, 10**30]


class NoStore:
    """A store that fails the test when touched: validation must come before any store call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) before the arguments were checked")


NO_STORE = cast(Store, NoStore())


@pytest.mark.parametrize("limit", [1, 50, spec.MAX_LIST_LIMIT])
def test_valid_limits(limit: int) -> None:
    assert spec.parse_limit(limit) == limit


@pytest.mark.parametrize("limit", [0, -1, spec.MAX_LIST_LIMIT + 1, *HUGE, True, 1.5, "5", None])
def test_invalid_limits(limit: Any) -> None:
    with pytest.raises(errors.FieldError) as info:
        spec.parse_limit(limit)
    assert info.value.field == "limit"


@pytest.mark.parametrize("attempt", [0, -1, 2**31, 2**63, False])
def test_invalid_attempts(attempt: Any) -> None:
    with pytest.raises(errors.FieldError, match=r"^attempt: "):
        spec.parse_attempt(attempt)


@pytest.mark.parametrize("wait", [0, 0.0, 0.5, 60, spec.MAX_STOP_WAIT])
def test_valid_stop_waits(wait: float) -> None:
    assert spec.parse_wait(wait) == wait


@pytest.mark.parametrize(
    "wait", [-1, -0.001, math.nan, math.inf, -math.inf, spec.MAX_STOP_WAIT + 1, 1e300, 10**400]
)
def test_invalid_stop_waits(wait: float) -> None:
    with pytest.raises(errors.FieldError, match=r"^timeout: must be a number of seconds"):
        spec.parse_wait(wait)


@pytest.mark.parametrize("job_id", ["", "x" * (spec.MAX_ID_LENGTH + 1), "a\udcff", 5])
def test_invalid_job_refs(job_id: Any) -> None:
    with pytest.raises(errors.FieldError, match=r"^job: "):
        spec.parse_job_ref(job_id)


def test_job_refs_accept_ids_older_rules_allowed() -> None:
    assert spec.parse_job_ref("a\u200bb") == "a\u200bb"  # stored before ids had to be printable


def test_a_number_too_long_to_print_is_still_one_clear_error() -> None:
    with pytest.raises(errors.FieldError) as info:
        spec.parse_limit(10**5000)  # str() of it raises ValueError past 4300 digits
    assert (
        str(info.value)
        == "limit: must be a whole number from 1 to 1000000 (got a number too long to show)"
    )


@pytest.mark.parametrize("limit", [0, 2**63, math.nan])
def test_list_jobs_checks_the_limit_before_the_store(limit: Any) -> None:
    with pytest.raises(errors.FieldError, match=r"^limit: "):
        api.list_jobs(NO_STORE, limit=limit)


def test_list_jobs_checks_the_queue_before_the_store() -> None:
    with pytest.raises(errors.FieldError, match=r"^queue: "):
        api.list_jobs(NO_STORE, queue="bad name")


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf, 1e9])
def test_stop_workers_checks_the_timeout_before_writing_a_stop_request(timeout: float) -> None:
    with pytest.raises(errors.FieldError, match=r"^timeout: "):
        api.stop_workers(NO_STORE, timeout=timeout)
