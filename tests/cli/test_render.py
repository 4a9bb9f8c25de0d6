"""render draws what the api returns: checked on values built here, no store needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl import api, models
from queuectl.cli import render


def test_status_shows_a_busy_worker_that_is_stopping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    busy = models.WorkerInfo(
        id="w-1", host="h", pid=7, queues=(), started_at=now, heartbeat_at=now,
        job_id="job-9", stop="graceful",
    )  # fmt: skip
    idle = models.WorkerInfo(
        id="w-2", host="h", pid=8, queues=(), started_at=now,
        heartbeat_at=now - timedelta(seconds=2), stop="now",
    )  # fmt: skip
    snapshot = api.Status(counts=models.Counts(by_queue={}), workers=[busy, idle], now=now)
    render.status(snapshot, as_json=False)
    out = capsys.readouterr().out
    assert "job-9 (stopping: graceful)" in out
    assert "idle (stopping: now)" in out
    assert "2.0s ago" in out
    assert "deadline" not in out


def test_status_marks_a_worker_past_its_own_deadline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    dead = models.WorkerInfo(
        id="w-1", host="h", pid=7, queues=(), started_at=now,
        heartbeat_at=now - timedelta(seconds=40), expires_at=now - timedelta(seconds=10),
    )  # fmt: skip
    snapshot = api.Status(counts=models.Counts(by_queue={}), workers=[dead], now=now)
    render.status(snapshot, as_json=False)
    assert "40.0s ago (missed its deadline: dead?)" in capsys.readouterr().out
    render.status(snapshot, as_json=True)
    [worker] = json.loads(capsys.readouterr().out)["workers"]
    assert worker["stale"] is True


# --- visible: what a cell or an error line repeats is shown, never obeyed -----------------

DANGEROUS = (
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\rb\nc\td", "a\\rb\\nc\\td"),
        ("\x9b31m", "\\x9b31m"),
        ("\x7f", "\\x7f"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("\x00", "\\x00"),
        ("plain [bold]text[/] é 日本 \\x1b", "plain [bold]text[/] é 日本 \\x1b"),
    ],
)
def test_visible_escapes_controls_and_bidi(text: str, shown: str) -> None:
    assert render.visible(text) == shown


def test_visible_for_output_keeps_newlines_and_tabs_only() -> None:
    assert render.visible("a\tb\nc\rd\x1b[31m", keep_lines=True) == "a\tb\nc\\rd\\x1b[31m"


@given(st.text(st.one_of(st.sampled_from(DANGEROUS), st.characters())))
def test_nothing_dangerous_survives(text: str) -> None:
    shown = render.visible(text)
    assert not set(shown) & set(DANGEROUS)
    kept = render.visible(text, keep_lines=True)
    assert not set(kept) & (set(DANGEROUS) - {"\n", "\t"})
    if not set(text) & set(DANGEROUS):
        assert shown == text  # everything else is left as it is


def test_table_cells_and_titles_are_escaped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    worker = models.WorkerInfo(
        id="w-\x1b[2J", host="h\u202e", pid=7, queues=(), started_at=now, heartbeat_at=now,
        job_id="j\x9b",
    )  # fmt: skip
    snapshot = api.Status(counts=models.Counts(by_queue={}), workers=[worker], now=now)
    render.status(snapshot, as_json=False)
    out = capsys.readouterr().out
    assert "w-\\x1b[2J" in out and "h\\u202e" in out and "j\\x9b" in out
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out


def test_a_sparkline_scales_to_its_largest_value_and_shows_every_nonzero_one():
    assert render.sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert render.sparkline([0, 1, 1000]) == " ▁█"  # 1 of 1000 still shows
    assert render.sparkline([0, 0]) == "  "
    assert render.sparkline([]) == ""


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (0.000_85, "850us"),
        (0.012, "12ms"),
        (3.42, "3.4s"),
        (125, "2m05s"),
        (3720, "1h02m"),
    ],
)
def test_durations_are_short_and_readable(seconds, shown):
    assert render.duration(seconds) == shown
