"""The domain's value types: job states, specs, jobs, attempts, claims, workers.

Frozen value records (queuectl.record) and string enums, shared by every layer. No I/O here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from queuectl.record import field, record


class JobState(StrEnum):
    """Where a job is in its life. The values are the words used everywhere: DB, JSON, CLI."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"  # an attempt failed; waiting for its retry time
    DEAD = "dead"  # retries exhausted: the dead letter queue
    CANCELLED = "cancelled"  # `queuectl cancel`: never run again unless retried


FINISHED_STATES = (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED)
"""States a job stays in until someone retries or deletes it (`wait` returns on them)."""
WAITING_STATES = (JobState.PENDING, JobState.FAILED)
"""States of a job waiting to be claimed (now or at its run_at)."""
CANCELLABLE = (JobState.PENDING, JobState.FAILED, JobState.PROCESSING)
"""States `cancel` applies to: a waiting job is cancelled at once, a running one by its worker."""
RETRYABLE = FINISHED_STATES
"""States `retry` applies to."""
DELETABLE = (*WAITING_STATES, *FINISHED_STATES)
"""States `delete` applies to: any but running (cancel a running job first)."""


class AttemptEnd(StrEnum):
    """Why an attempt ended, kept apart from the state the job moved to (pueue's split)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # non-zero exit or killed by a signal
    TIMEOUT = "timeout"
    NOT_FOUND = "not_found"  # the command could not be started or found
    WORKER_LOST = "worker_lost"  # the worker died; its lease expired
    SHUTDOWN = "shutdown"  # `worker stop --now` interrupted it; not counted against retries
    CANCELLED = "cancelled"  # `queuectl cancel` stopped it; the job is cancelled, no retry


@record
class JobSpec:
    """A validated request to enqueue one job. None means "use the configured default"."""

    command: str
    id: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    delay: float | None = None
    max_retries: int | None = None
    timeout: float | None = None
    queue: str = "default"
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


@record
class NewJob:
    """A job ready to insert: every default resolved, times absolute."""

    id: str
    command: str
    queue: str
    priority: int
    run_at: datetime
    max_retries: int
    timeout: float | None
    cwd: str | None
    env: dict[str, str]
    tags: tuple[str, ...] = ()


@record
class Job:
    """A job as stored.

    `attempts` counts attempts against the retry budget (reset by `dlq retry`, not raised by a
    shutdown); `run_count` counts every claim ever made and numbers the attempt history.
    """

    id: str
    seq: int
    command: str
    queue: str
    priority: int
    state: JobState
    attempts: int
    max_retries: int
    timeout: float | None
    cwd: str | None
    env: dict[str, str]
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    run_count: int
    worker_id: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    tags: tuple[str, ...] = ()
    worker_host: str | None = None
    claimed_at: datetime | None = None
    """When the running attempt's claim was made (None unless processing)."""
    control: str | None = None
    """A request to the worker running it: CANCEL, or SIGNAL_PREFIX + a signal number."""


CANCEL = "cancel"
"""Job.control: stop the running attempt and cancel the job."""
SIGNAL_PREFIX = "signal:"
"""Job.control: send this signal (its number follows) to the running attempt's processes."""


@record
class Claim:
    """A job leased to one worker. (job.id, worker_id, job.run_count) identifies the lease."""

    job: Job
    worker_id: str
    host: str
    claimed_at: datetime
    lease: float = 0.0
    """Seconds the lease was taken for; each heartbeat extends it by as much (0: not known, as
    for a claim read back by a rescuer). Carried on the claim so that a config change never
    makes a running job's heartbeat slower than its lease needs."""


@record
class Outcome:
    """What running a command produced."""

    end: AttemptEnd
    started_at: datetime
    ended_at: datetime
    exit_code: int | None = None
    signal: int | None = None
    pid: int | None = None
    error: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""


@record
class Attempt:
    """One recorded attempt of a job."""

    job_id: str
    number: int
    worker_id: str | None
    host: str | None
    pid: int | None
    started_at: datetime
    ended_at: datetime
    exit_code: int | None
    signal: int | None
    end: AttemptEnd
    error: str | None
    stdout: bytes
    stderr: bytes

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.ended_at - self.started_at).total_seconds()


@record
class Transition:
    """The state a job moves to after an attempt, decided by retry.next_transition."""

    state: JobState
    attempts: int
    run_at: datetime | None = None
    last_error: str | None = None


@record
class WorkerInfo:
    """A registered worker process."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime
    job_id: str | None = None
    stop: str | None = None  # None, "graceful" or "now"
    expires_at: datetime | None = None
    """When the worker is presumed dead unless it beats again; it sets this itself at each beat,
    from its own beat interval, so no other process's view of the config decides it."""

    def stale(self, now: datetime) -> bool:
        """Whether the worker missed its own deadline (it is dead or frozen)."""
        return self.expires_at is not None and self.expires_at < now


@record
class HeartbeatReply:
    """What a heartbeat learnt: a stop request, and whether the claim still holds."""

    stop: str | None
    lease_held: bool
    registered_again: bool = False
    """The worker's row was gone (pruned while it was frozen); the beat registered it again."""


@record
class Requests:
    """What a busy worker is asked, read in one look: its stop request, its job's control."""

    stop: str | None = None
    control: str | None = None


@record
class Selection:
    """Which jobs an operator's bulk action (cancel, retry, delete) applies to. None: any.

    `ids` names jobs; the other fields narrow by state, queue and age (last change before
    `before`). The action itself limits the states further to those it applies to.
    """

    ids: tuple[str, ...] | None = None
    states: tuple[JobState, ...] | None = None
    queue: str | None = None
    before: datetime | None = None


@record
class LiveOutput:
    """The running attempt's output so far: the last bytes of each stream, and how many came."""

    number: int
    stdout: bytes
    stderr: bytes
    stdout_total: int
    stderr_total: int
    updated_at: datetime
    pid: int | None = None
    """The attempt's command (its process group leader)."""


@record
class PurgeStep:
    """One retention step: how many jobs it deleted, and where the next step starts."""

    deleted: int
    next_after: int
    """The seq after which the next step looks; 0: back to the start (nothing past here is old
    enough yet)."""


@record
class JobFilter:
    """Which jobs `list` shows. None (or empty) means any.

    A job matches when it is in one of the states (`state` and `states` together), of one of
    the queues, carries `tag`, and has `search` in its id or command.
    """

    state: JobState | None = None
    queue: str | None = None
    states: tuple[JobState, ...] = ()
    queues: tuple[str, ...] = ()
    tag: str | None = None
    search: str | None = None

    def all_states(self) -> tuple[JobState, ...]:
        """Every state asked for."""
        found = (*self.states, *(() if self.state is None else (self.state,)))
        return tuple(dict.fromkeys(found))

    def all_queues(self) -> tuple[str, ...]:
        """Every queue asked for."""
        found = (*self.queues, *(() if self.queue is None else (self.queue,)))
        return tuple(dict.fromkeys(found))


@record
class Counts:
    """Job counts per queue and state."""

    by_queue: dict[str, dict[JobState, int]]

    def total(self, state: JobState) -> int:
        """All queues' count of one state."""
        return sum(states.get(state, 0) for states in self.by_queue.values())


class MinuteCount(NamedTuple):
    """Attempts of one queue that ended in one minute (the minute's start)."""

    queue: str
    minute: datetime
    completed: int
    failed: int


class DurationCount(NamedTuple):
    """Attempts of one queue whose durations fall in one of queuectl.activity's buckets."""

    queue: str
    bucket: int
    n: int


@record
class Activity:
    """What the store kept of the attempts that ended since some minute, summed two ways.

    Per queue and minute, and per queue and duration bucket (attempts without a duration left
    out): a few hundred rows for an hour, so that `status` stays cheap whatever the traffic.
    Named tuples, not records, inside: a tuple is made ten times faster.
    """

    minutes: list[MinuteCount]
    durations: list[DurationCount]
