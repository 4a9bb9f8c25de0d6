"""What both backends do alike around their SQL: rows into models, and the small decisions.

Each backend reads the same columns under the same names and differs only in how a time or a
JSON value comes back (SQLite: integer microseconds and JSON text; PostgreSQL: timestamptz and
jsonb/arrays, already decoded). A backend hands its two decoders to Decode; the rest is here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from queuectl import errors, models
from queuectl.record import record


class Row(Protocol):
    """A result row read by column name (sqlite3.Row and psycopg's dict rows both are)."""

    def __getitem__(self, key: str, /) -> Any: ...


@record
class Decode:
    """How one backend's values come back: a stored time, and a stored JSON value."""

    time: Callable[[Any], datetime]
    json: Callable[[Any], Any]

    def maybe_time(self, value: Any) -> datetime | None:
        """A nullable time column."""
        return None if value is None else self.time(value)

    def job(self, row: Row) -> models.Job:
        """A jobs row."""
        return models.Job(
            id=row["id"],
            seq=row["seq"],
            command=row["command"],
            queue=row["queue"],
            priority=row["priority"],
            state=models.JobState(row["state"]),
            attempts=row["attempts"],
            max_retries=row["max_retries"],
            timeout=row["timeout"],
            cwd=row["cwd"],
            env=self.json(row["env"]) if row["env"] else {},
            run_at=self.time(row["run_at"]),
            created_at=self.time(row["created_at"]),
            updated_at=self.time(row["updated_at"]),
            run_count=row["run_count"],
            worker_id=row["worker_id"],
            lease_expires_at=self.maybe_time(row["lease_expires_at"]),
            last_error=row["last_error"],
            tags=tuple(self.json(row["tags"])) if row["tags"] else (),
            worker_host=row["worker_host"],
            claimed_at=self.maybe_time(row["claimed_at"]),
            control=row["control"],
        )

    def attempt(self, row: Row) -> models.Attempt:
        """An attempts row joined with its job's id (as `job_id`)."""
        return models.Attempt(
            job_id=row["job_id"],
            number=row["number"],
            worker_id=row["worker_id"],
            host=row["host"],
            pid=row["pid"],
            started_at=self.time(row["started_at"]),
            ended_at=self.time(row["ended_at"]),
            exit_code=row["exit_code"],
            signal=row["signal"],
            end=models.AttemptEnd(row["outcome"]),
            error=row["error"],
            stdout=bytes(row["stdout"]),
            stderr=bytes(row["stderr"]),
        )

    def worker(self, row: Row) -> models.WorkerInfo:
        """A workers row with the id of the job it runs (as `job_id`)."""
        return models.WorkerInfo(
            id=row["id"],
            host=row["host"],
            pid=row["pid"],
            queues=tuple(self.json(row["queues"])),
            started_at=self.time(row["started_at"]),
            heartbeat_at=self.time(row["heartbeat_at"]),
            job_id=row["job_id"],
            stop=row["stop"],
            expires_at=self.time(row["expires_at"]),
        )

    def live_output(self, row: Row) -> models.LiveOutput:
        """A live_output row."""
        return models.LiveOutput(
            number=row["number"],
            stdout=bytes(row["stdout"]),
            stderr=bytes(row["stderr"]),
            stdout_total=row["stdout_total"],
            stderr_total=row["stderr_total"],
            updated_at=self.time(row["updated_at"]),
            pid=row["pid"],
        )

    def expired_claim(self, row: Row) -> models.Claim:
        """A claim read back by a rescuer (its lease's length is not known)."""
        return models.Claim(
            job=self.job(row),
            worker_id=row["worker_id"],
            host=row["worker_host"],
            claimed_at=self.time(row["claimed_at"]),
        )


def requests(row: Row) -> models.Requests:
    """A select_requests row."""
    return models.Requests(stop=row["stop"], control=row["control"])


def signal_control(signum: int) -> str:
    """Job.control asking for signal `signum`."""
    return f"{models.SIGNAL_PREFIX}{signum}"


def claim_key(claim: models.Claim) -> dict[str, Any]:
    """The parameters that identify a claim's lease in every guarded statement."""
    return {"seq": claim.job.seq, "worker_id": claim.worker_id, "run_count": claim.job.run_count}


def listing(where: models.JobFilter) -> tuple[str, dict[str, Any]]:
    """The query that lists jobs matching `where`, and its parameters (but the limit).

    Failed and dead jobs come from their own index, running ones from the lease index, the
    rest newest first from the primary key.
    """
    states, queues = where.all_states(), where.all_queues()
    if len(states) > 1 or len(queues) > 1 or where.tag is not None or where.search is not None:
        return "list_jobs_matching", {
            "states": [s.value for s in states] or None,
            "queues": list(queues) or None,
            "tag": where.tag,
            "search": where.search,
        }
    one = states[0] if states else None
    queue = queues[0] if queues else None
    state = None if one is None else one.value
    if one in (models.JobState.FAILED, models.JobState.DEAD):
        return "list_problem_jobs", {"state": state, "queue": queue}
    if one is models.JobState.PROCESSING:
        return "list_processing_jobs", {"queue": queue}
    return "list_jobs", {"state": state, "queue": queue}


def counts(rows: Sequence[Row]) -> models.Counts:
    """Counts from (queue, state, n) rows."""
    by_queue: dict[str, dict[models.JobState, int]] = {}
    for row in rows:
        by_queue.setdefault(row["queue"], {})[models.JobState(row["state"])] = row["n"]
    return models.Counts(by_queue=by_queue)


def activity(
    minutes: Sequence[Row], durations: Sequence[Row], minute: Callable[[Any], datetime]
) -> models.Activity:
    """Activity from (minute, queue, completed, failed) and (queue, bucket, n) rows.

    `minute` reads a stored minute.
    """
    return models.Activity(
        minutes=[
            models.MinuteCount(r["queue"], minute(r["minute"]), r["completed"], r["failed"])
            for r in minutes
        ],
        durations=[models.DurationCount(r["queue"], r["bucket"], r["n"]) for r in durations],
    )


def states_for(selection: models.Selection, allowed: Sequence[models.JobState]) -> list[str]:
    """The states an action on `selection` touches: those it applies to that the selection names."""
    wanted = allowed if selection.states is None else selection.states
    return [state.value for state in allowed if state in wanted]


def next_purge(
    upto: int, following_created: datetime | None, before: Mapping[models.JobState, datetime]
) -> int:
    """Where the next retention step starts: past this window, or back at the start.

    Back at the start when no job beyond the window was created before the latest cutoff: none
    there can have finished early enough.
    """
    if following_created is None or not before or following_created >= max(before.values()):
        return 0
    return upto


def has_nul(job: models.NewJob) -> bool:
    """Whether a job holds a NUL character, which neither backend can store whole.

    SQLite's JSON functions would cut the text short; PostgreSQL's text and jsonb refuse it.
    Users' input is refused earlier (spec.py), with the same message.
    """
    texts = (job.id, job.command, job.queue, job.cwd or "", *job.env, *job.env.values(), *job.tags)
    return any("\x00" in text for text in texts)


NUL_REFUSED = "job: text fields must not contain NUL characters"


def first_duplicate(
    jobs: Sequence[models.NewJob], taken: Callable[[str], bool]
) -> errors.DuplicateJob:
    """The error naming the first job whose id clashes, with the store or within the batch."""
    seen: set[str] = set()
    for line, job in enumerate(jobs, start=1):
        if job.id in seen or taken(job.id):
            return errors.DuplicateJob(job.id, line if len(jobs) > 1 else None, line - 1)
        seen.add(job.id)
    return errors.DuplicateJob("?")
