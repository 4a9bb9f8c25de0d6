r"""Writing a job's output: an attempt's, the running one's so far, or live (`logs -f`).

Bytes go to a pipe as they are; on a terminal, control characters but newline and tab are
shown as escapes (a colour code reads `\x1b[31m`), so a job's output cannot clear the screen
or rewrite earlier lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TextIO

from queuectl import api, errors, models
from queuectl.store import Store

FOLLOW_POLL = 0.2
"""Seconds between two looks at a followed job (its worker saves output once a second)."""
_TRUNCATED = re.compile(rb"\A\[queuectl: (\d+) earlier bytes truncated\]\n")


def _safe(data: bytes, out: TextIO) -> bytes:
    if not out.isatty():
        return data
    from queuectl.cli import render

    text = render.visible(data.decode("utf-8", errors="replace"), keep_lines=True)
    return text.encode(out.encoding or "utf-8", errors="replace")


def _write(out: TextIO, data: bytes) -> None:
    out.flush()
    out.buffer.write(_safe(data, out))
    out.buffer.flush()


def write_output(shown: api.Output, out: TextIO, stream: str | None = None) -> None:
    """An attempt's output: both streams under headers, or one stream raw (`--stdout`)."""
    if stream is not None:
        _write(out, shown.stdout if stream == "stdout" else shown.stderr)
        return
    end = "running" if shown.running or shown.attempt is None else shown.attempt.end
    chunks = [f"== attempt {shown.number}: {end} ==\n".encode()]
    for name, data in (("stdout", shown.stdout), ("stderr", shown.stderr)):
        chunks.append(f"-- {name} --\n".encode())
        chunks.append(_safe(data, out))
        if data and not data.endswith(b"\n"):
            chunks.append(b"\n")
    out.flush()
    out.buffer.write(b"".join(chunks))
    out.buffer.flush()


class _Stream:
    """One followed stream: how many of its bytes were written so far."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.written = 0

    def catch_up(self, tail: bytes, total: int) -> None:
        """Write what of `total` bytes in all is new, given the last ones (`tail`)."""
        new = total - self.written
        if new <= 0:
            return
        if new > len(tail):
            skipped = new - len(tail)
            _write(self.out, f"[queuectl: {skipped} bytes skipped]\n".encode())
            new = len(tail)
        _write(self.out, tail[len(tail) - new :])
        self.written = total


def _recorded(data: bytes) -> tuple[bytes, int]:
    """A recorded stream's kept bytes and how many bytes it had in all (its marker says)."""
    match = _TRUNCATED.match(data)
    if match is None:
        return data, len(data)
    kept = data[match.end() :]
    return kept, int(match.group(1)) + len(kept)


def follow(
    store: Store,
    job_id: str,
    stdout: TextIO,
    stderr: TextIO,
    stream: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> models.Job:
    """Stream a job's output live until its running attempt ends; return the job then.

    The job's stdout goes to `stdout` and its stderr to `stderr` (only one with `stream`). A
    job not started yet is waited for; a job that has ended shows its last attempt.
    """
    job = api.get_job(store, job_id)
    while job.state is not models.JobState.PROCESSING and job.run_count == 0:
        if job.state in models.FINISHED_STATES:
            raise errors.NotFound(
                f'job "{job_id}" is {job.state} and never ran, so it has no output'
            )
        sleep(FOLLOW_POLL)
        job = api.get_job(store, job_id)
    number = job.run_count
    streams = {"stdout": _Stream(stdout), "stderr": _Stream(stderr)}
    wanted = [stream] if stream else ["stdout", "stderr"]
    while job.state is models.JobState.PROCESSING and job.run_count == number:
        live = store.live_output(job_id)
        if live is not None and live.number == number:
            for name in wanted:
                tail = live.stdout if name == "stdout" else live.stderr
                total = live.stdout_total if name == "stdout" else live.stderr_total
                streams[name].catch_up(tail, total)
        sleep(FOLLOW_POLL)
        job = api.get_job(store, job_id)
    recorded = [a for a in store.attempts(job_id) if a.number == number]
    if recorded:
        for name in wanted:
            data = recorded[0].stdout if name == "stdout" else recorded[0].stderr
            streams[name].catch_up(*_recorded(data))
    return job
