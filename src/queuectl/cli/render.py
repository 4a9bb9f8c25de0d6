r"""Render api results as rich tables or JSON. The only module that imports rich (lazily).

What a job carries (its command, its errors, its output, a worker's id) is shown, never obeyed:
control characters and bidirectional overrides become visible escapes (`\x1b`, `\u202e`), so
no text can retitle, clear or rewrite the user's terminal. rich does not do this itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from queuectl import activity, api, models

if TYPE_CHECKING:
    from rich.table import Table


# C0 controls, DEL, C1 controls (\x9b is a one-byte CSI on some terminals), the line and
# paragraph separators, and the bidi marks, embeddings, overrides and isolates that reorder
# what follows them on screen.
_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE_IN_CELL = re.compile("[\x00-\x1f" + _UNSAFE + "]")
_UNSAFE_IN_OUTPUT = re.compile("[\x00-\x08\x0b-\x1f" + _UNSAFE + "]")  # keeps \t and \n


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_lines: bool = False) -> str:
    r"""`text` with every control and bidi character shown as an escape, like `\x1b`.

    Table cells and error lines escape newlines and tabs too (a cell is one line);
    `keep_lines` keeps them, for a job's output on a terminal. Backslashes are left alone, so
    `\x1b` typed by the user and an escaped ESC look the same: --json tells them apart.
    """
    pattern = _UNSAFE_IN_OUTPUT if keep_lines else _UNSAFE_IN_CELL
    return pattern.sub(_escape, text)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _local(when: datetime | None) -> str:
    return "" if when is None else when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def job_dict(job: models.Job) -> dict[str, Any]:
    """A job as JSON-ready data."""
    return {
        "id": job.id,
        "command": job.command,
        "queue": job.queue,
        "state": job.state.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "timeout": job.timeout,
        "cwd": job.cwd,
        "env": job.env,
        "run_at": _iso(job.run_at),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "worker_id": job.worker_id,
        "lease_expires_at": _iso(job.lease_expires_at),
        "last_error": job.last_error,
        "tags": list(job.tags),
    }


def attempt_dict(attempt: models.Attempt) -> dict[str, Any]:
    """An attempt as JSON-ready data, without its output (see `logs`)."""
    return {
        "number": attempt.number,
        "worker_id": attempt.worker_id,
        "host": attempt.host,
        "pid": attempt.pid,
        "started_at": _iso(attempt.started_at),
        "ended_at": _iso(attempt.ended_at),
        "duration": round(attempt.duration, 6),
        "exit_code": attempt.exit_code,
        "signal": attempt.signal,
        "outcome": attempt.end.value,
        "error": attempt.error,
    }


def _print_json(data: Any) -> None:
    # ensure_ascii (the default, made explicit): json.dumps escapes C0 controls either way, but
    # only this escapes C1 controls and bidi overrides, so the JSON is safe on a terminal too.
    click.echo(json.dumps(data, indent=2, ensure_ascii=True))


def _table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    bold_last: bool = False,
) -> Table:
    """A table whose every cell is plain text: user data is never read as rich markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(visible(title)),
        title_justify="left",
        header_style="bold",
    )
    for column in columns:
        table.add_column(column)
    for index, row in enumerate(rows):
        style = "bold" if bold_last and index == len(rows) - 1 else None
        texts = (Text("" if cell is None else visible(str(cell))) for cell in row)
        table.add_row(*texts, style=style)
    return table


def _print(*tables: Table) -> None:
    from rich.console import Console

    console = Console()
    for table in tables:
        console.print(table)


def status(snapshot: api.Status, as_json: bool) -> None:
    """Counts per queue and state (paused queues marked), then workers."""
    states = list(models.JobState)
    queues = sorted({*snapshot.counts.by_queue, *snapshot.paused})
    workers = [
        {
            "id": w.id,
            "host": w.host,
            "pid": w.pid,
            "queues": list(w.queues),
            "started_at": _iso(w.started_at),
            "heartbeat_age": round((snapshot.now - w.heartbeat_at).total_seconds(), 3),
            "job_id": w.job_id,
            "stop": w.stop,
            "expires_at": _iso(w.expires_at),
            "stale": w.stale(snapshot.now),
        }
        for w in snapshot.workers
    ]
    if as_json:
        _print_json(
            {
                "jobs": {s.value: snapshot.counts.total(s) for s in states},
                "queues": {
                    q: {s.value: snapshot.counts.by_queue.get(q, {}).get(s, 0) for s in states}
                    for q in queues
                },
                "paused": {q: _iso(when) for q, when in snapshot.paused.items()},
                "last_hour": {q: _activity_dict(a) for q, a in sorted(snapshot.activity.items())},
                "workers": workers,
            }
        )
        return
    rows = [
        [
            q + (" (paused)" if q in snapshot.paused else ""),
            *(snapshot.counts.by_queue.get(q, {}).get(s, 0) for s in states),
        ]
        for q in queues
    ]
    rows.append(["all", *(snapshot.counts.total(s) for s in states)])
    jobs_table = _table("Jobs", ["queue", *(s.value for s in states)], rows, bold_last=True)
    worker_rows = [
        [
            w.id,
            w.host,
            w.pid,
            f"{(snapshot.now - w.heartbeat_at).total_seconds():.1f}s ago"
            + (" (missed its deadline: dead?)" if w.stale(snapshot.now) else ""),
            (w.job_id or "idle") + (f" (stopping: {w.stop})" if w.stop else ""),
        ]
        for w in snapshot.workers
    ]
    workers_table = _table(
        f"Workers ({len(workers)})", ["worker", "host", "pid", "heartbeat", "job"], worker_rows
    )
    if snapshot.activity:
        _print(jobs_table, _activity_table(snapshot.activity), workers_table)
    else:
        _print(jobs_table, workers_table)


def _activity_dict(seen: activity.QueueActivity) -> dict[str, Any]:
    return {
        "completed": seen.completed,
        "failed": seen.failed,
        "duration_p50": seen.p50,
        "duration_p95": seen.p95,
        "per_minute": [
            {"minute": _iso(m.start), "completed": m.completed, "failed": m.failed}
            for m in seen.minutes
        ],
    }


_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character a value, its height scaled to the largest; blank for 0, never for more."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    steps = len(_BARS) - 1
    return "".join(_BARS[0 if v <= 0 else max(1, round(v * steps / top))] for v in values)


def duration(seconds: float | None) -> str:
    """A duration for a table: 850us, 12ms, 3.4s, 2m05s, 1h02m; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


TREND_MINUTES = 3
"""Minutes a character of the status table's trend line stands for (20 for the hour: it fits
an 80-column terminal; --json has every minute)."""


def _activity_table(by_queue: dict[str, activity.QueueActivity]) -> Table:
    rows = []
    for queue, seen in sorted(by_queue.items()):
        ended = [m.completed + m.failed for m in seen.minutes]
        trend = [sum(ended[i : i + TREND_MINUTES]) for i in range(0, len(ended), TREND_MINUTES)]
        per_minute = (seen.completed + seen.failed) / len(ended)
        rows.append(
            [
                queue,
                seen.completed,
                seen.failed,
                f"{per_minute:.1f}",
                sparkline(trend),
                duration(seen.p50),
                duration(seen.p95),
            ]
        )
    return _table(
        "Last hour: attempts ended, and how long they ran",
        ["queue", "completed", "failed", "/min", "trend", "p50", "p95"],
        rows,
    )


def jobs(items: Sequence[models.Job], as_json: bool) -> None:
    """A list of jobs: JSON, or a table."""
    if as_json:
        _print_json([job_dict(job) for job in items])
        return
    job_lines(items, "table", None)


def shown_state(job: models.Job, now: datetime | None) -> str:
    """A job's state as tables show it: a pending job not due yet (at `now`) is `scheduled`."""
    if job.state is models.JobState.PENDING and now is not None and job.run_at > now:
        return f"scheduled {_local(job.run_at)}"
    return job.state.value


def job_lines(items: Sequence[models.Job], output: str, now: datetime | None) -> None:
    """Jobs as a table, as tab-separated lines with nothing cut (for pipes), or as ids."""
    if output == "ids":
        for job in items:
            click.echo(visible(job.id))
        return
    columns = ["id", "state", "queue", "pri", "attempts", "created", "command", "last error"]
    rows: list[list[Any]] = [
        [
            j.id,
            shown_state(j, now),
            j.queue,
            j.priority,
            f"{j.attempts}/{j.max_retries + 1}",
            _local(j.created_at),
            j.command,
            j.last_error or "",
        ]
        for j in items
    ]
    if output == "tsv":
        for row in [list(columns), *rows]:
            click.echo("\t".join(visible(str(cell)) for cell in row))  # tabs, newlines escaped
        return
    _print(_table(None, columns, rows))


def _running_dict(now: api.Running | None) -> dict[str, Any] | None:
    if now is None:
        return None
    return {
        "attempt": now.number,
        "worker_id": now.worker_id,
        "host": now.host,
        "pid": now.pid,
        "started_at": _iso(now.started_at),
        "elapsed": round(now.elapsed, 3),
    }


def job_detail(
    job: models.Job,
    attempts: Sequence[models.Attempt],
    as_json: bool,
    running: api.Running | None = None,
) -> None:
    """One job's fields, its running attempt and its attempt history.

    JSON gives times in ISO-8601 UTC; the table in local time, and env as JSON.
    """
    data = job_dict(job)
    if as_json:
        _print_json(
            {
                **data,
                "running": _running_dict(running),
                "history": [attempt_dict(a) for a in attempts],
            }
        )
        return
    for key in ("run_at", "created_at", "updated_at", "lease_expires_at"):
        data[key] = _local(getattr(job, key))
    data["env"] = json.dumps(job.env, ensure_ascii=False)
    data["tags"] = ", ".join(job.tags)
    if running is not None:
        pid = "pid ?" if running.pid is None else f"pid {running.pid}"
        data["running"] = (
            f"attempt {running.number} on {running.host or '?'} ({running.worker_id or '?'}, "
            f"{pid}) for {running.elapsed:.1f}s"
        )
    fields = [[key, value] for key, value in data.items()]
    rows = [
        [
            a.number,
            a.end.value,
            _local(a.started_at),
            f"{a.duration:.3f}s",
            a.exit_code if a.signal is None else f"signal {a.signal}",
            f"{a.host or ''} {a.worker_id or ''} pid {a.pid or '-'}",
            a.error or "",
        ]
        for a in attempts
    ]
    columns = ["#", "outcome", "started", "duration", "exit", "where", "error"]
    _print(
        _table(f"Job {job.id}", ["field", "value"], fields),
        _table("Attempts", columns, rows),
    )
