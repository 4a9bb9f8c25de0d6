"""The library behind every front end: the CLI, the tests and (later) the dashboard call it.

Each function takes an open Store, checks its input, and returns domain values; rendering is
the caller's business.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from queuectl import activity, config, errors, models, spec
from queuectl.activity import QueueActivity
from queuectl.record import field, record
from queuectl.store import Store


def new_ids(count: int) -> list[str]:
    """`count` fresh job ids: 24 hex digits, the time in ms then 48 bits counted from random.

    Ids sort by creation time, so a batch goes to the end of the id index instead of to random
    places in it (a quarter of a 100,000-job insert). Two batches made in the same millisecond
    clash only if their random ranges overlap: for two of 100,000 jobs, one chance in 10^9.
    """
    millis = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(6))
    return [f"{millis:012x}{(start + n) & 0xFFFF_FFFF_FFFF:012x}" for n in range(count)]


def _resolve(
    item: models.JobSpec, cfg: config.Config, now: datetime, base_dir: str, new_id: str
) -> models.NewJob:
    """Apply the configured defaults and make times and paths absolute."""
    try:
        if item.run_at is not None:
            run_at = item.run_at
        else:
            run_at = now if not item.delay else now + timedelta(seconds=item.delay)
    except OverflowError:
        raise errors.FieldError("delay", f"is too far in the future (got {item.delay})") from None
    timeout = item.timeout if item.timeout is not None else (cfg.job_timeout or None)
    return models.NewJob(
        id=item.id or new_id,
        command=item.command,
        queue=item.queue,
        priority=item.priority,
        run_at=run_at,
        max_retries=cfg.max_retries if item.max_retries is None else item.max_retries,
        timeout=timeout,
        cwd=_join_dir(base_dir, item.cwd) if item.cwd else base_dir,
        env=dict(item.env) if item.env else {},
        tags=item.tags,
    )


def _join_dir(base: str, cwd: str) -> str:
    """`cwd` taken from `base` (pathlib only here, for jobs that name a directory)."""
    from pathlib import Path

    return str(Path(base, cwd))


def enqueue(
    store: Store,
    specs: Sequence[models.JobSpec],
    cwd: str | None = None,
    lines: Sequence[int] | None = None,
) -> list[str]:
    """Store jobs durably, all or none, and return their ids.

    A job's cwd defaults to `cwd` (the caller's directory when None), as pueue does, and a
    relative cwd is taken from there. Raises DuplicateJob naming the clashing id, and its line
    when `lines` gives each spec's line number in a file.
    """
    cfg = config.from_stored(store.get_config())
    now = store.now()
    base_dir = cwd or os.getcwd()  # noqa: PTH109 - pathlib: 4 ms of every CLI call's start-up
    ids = new_ids(len(specs))
    jobs = [
        _resolve(item, cfg, now, base_dir, new_id) for item, new_id in zip(specs, ids, strict=True)
    ]
    try:
        store.enqueue(jobs)
    except errors.DuplicateJob as exc:
        if lines is None or exc.index is None:
            raise
        raise errors.DuplicateJob(exc.job_id, lines[exc.index], exc.index) from None
    return [job.id for job in jobs]


@record
class Status:
    """A snapshot of the queue: job counts, workers and paused queues."""

    counts: models.Counts
    workers: list[models.WorkerInfo]
    now: datetime
    paused: dict[str, datetime] = field(default_factory=dict)
    activity: dict[str, QueueActivity] = field(default_factory=dict)
    """Per queue that ended an attempt in the last hour: what queuectl.activity summarises."""


def status(store: Store) -> Status:
    """Job counts per queue and state, workers, paused queues, and the last hour's activity."""
    now = store.now()
    return Status(
        counts=store.counts(),
        workers=store.list_workers(),
        now=now,
        paused=store.paused_queues(),
        activity=activity.summarise(store.activity(activity.window_start(now)), now),
    )


def list_jobs(
    store: Store,
    state: models.JobState | None = None,
    queue: str | None = None,
    limit: int = 50,
    *,
    states: Sequence[models.JobState] = (),
    queues: Sequence[str] = (),
    tag: str | None = None,
    search: str | None = None,
) -> list[models.Job]:
    """Jobs newest first, filtered by states, queues, a tag and text in the id or command.

    Raises FieldError for a bad limit, queue or tag.
    """
    limit = spec.parse_limit(limit)
    if queue is not None:
        queue = spec.parse_queue(queue)
    where = models.JobFilter(
        state=state,
        queue=queue,
        states=tuple(states),
        queues=tuple(spec.parse_queue(name) for name in queues),
        tag=None if tag is None else spec.parse_tag(tag),
        search=search or None,
    )
    return store.list_jobs(where, limit)


def get_job(store: Store, job_id: str) -> models.Job:
    """One job. Raises NotFound."""
    job = store.get_job(job_id)
    if job is None:
        raise errors.NotFound(f'no job with id "{job_id}" (see `queuectl list`)')
    return job


def show(store: Store, job_id: str) -> tuple[models.Job, list[models.Attempt]]:
    """A job and its attempt history. Raises NotFound."""
    return get_job(store, job_id), store.attempts(job_id)


def logs(store: Store, job_id: str, attempt: int | None = None) -> models.Attempt:
    """The captured output of one attempt (the latest when `attempt` is None). Raises NotFound."""
    get_job(store, job_id)
    history = store.attempts(job_id)
    if not history:
        raise errors.NotFound(f'job "{job_id}" has not run yet, so it has no output')
    if attempt is None:
        return history[-1]
    for item in history:
        if item.number == attempt:
            return item
    raise errors.NotFound(
        f'job "{job_id}" has no attempt {attempt} (it has attempts 1-{history[-1].number})'
    )


def retry_dead(store: Store, job_ids: Sequence[str] | None) -> list[str]:
    """Move dead jobs back to pending with a fresh retry budget; None means every dead job.

    Named jobs must all exist and be dead, or nothing changes (NotFound / QueuectlError).
    """
    for job_id in job_ids or ():
        job = get_job(store, job_id)
        if job.state is not models.JobState.DEAD:
            raise errors.QueuectlError(
                f'job "{job_id}" is not in the dead letter queue (it is {job.state})'
            )
    where = models.Selection(ids=_ids(job_ids), states=(models.JobState.DEAD,))
    return _in_order(store.retry(where), where)


def _ids(job_ids: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if job_ids is None else tuple(dict.fromkeys(job_ids))


def _in_order(done: Sequence[str], where: models.Selection) -> list[str]:
    """The ids an action returned, in the order the user named them (stores return any order)."""
    if where.ids is None:
        return list(done)
    returned = set(done)
    return [job_id for job_id in where.ids if job_id in returned]


def _check_states(
    store: Store, job_ids: Sequence[str], allowed: Sequence[models.JobState], verb: str
) -> None:
    """Every named job exists and is in a state `verb` applies to, or raise before any change."""
    for job_id in job_ids:
        job = get_job(store, job_id)
        if job.state not in allowed:
            names = ", ".join(state.value for state in allowed)
            raise errors.QueuectlError(
                f'job "{job_id}" is {job.state}: only {names} jobs can be {verb}'
            )


def selection(
    job_ids: Sequence[str] = (),
    states: Sequence[models.JobState] = (),
    queue: str | None = None,
    older_than: float | None = None,
    now: datetime | None = None,
) -> models.Selection:
    """The jobs a bulk action names: ids, or a filter by state, queue and age (seconds)."""
    if job_ids and (states or queue is not None or older_than is not None):
        raise errors.UsageError("job: give job ids or --state/--queue/--older-than, not both")
    if not job_ids and not states:
        raise errors.UsageError("job: name the jobs (JOB...), or select them with --state")
    before = None
    if older_than is not None:
        if now is None:
            raise ValueError("older_than needs the store's now")
        before = now - timedelta(seconds=older_than)
    return models.Selection(
        ids=_ids(job_ids) if job_ids else None,
        states=tuple(states) or None,
        queue=queue,
        before=before,
    )


def cancel(store: Store, where: models.Selection) -> dict[str, models.JobState]:
    """Cancel jobs: waiting ones at once, running ones by their workers (within a second).

    Named jobs must all exist and be pending, failed or processing, or nothing changes.
    Returns each job's state after the call (cancelled, or processing: being stopped).
    """
    if where.ids is not None:
        _check_states(store, where.ids, models.CANCELLABLE, "cancelled")
    states = store.cancel(where)
    return {job_id: states[job_id] for job_id in _in_order(list(states), where)}


def kill(store: Store, job_id: str, signum: int) -> None:
    """Have a running job's worker send `signum` to its processes (within a second).

    The attempt ends as the signal makes it end, and the retry policy applies. Raises NotFound,
    or QueuectlError when the job is not running.
    """
    job = get_job(store, job_id)
    if job.state is not models.JobState.PROCESSING or not store.signal(job_id, signum):
        state = store.get_job(job_id)
        shown = job.state if state is None else state.state
        raise errors.QueuectlError(f'job "{job_id}" is not running (it is {shown})')


def retry(store: Store, where: models.Selection) -> list[str]:
    """Move completed, dead or cancelled jobs back to pending with a fresh retry budget.

    Their attempt history stays. Named jobs must all exist and be finished, or nothing changes.
    """
    if where.ids is not None:
        _check_states(store, where.ids, models.RETRYABLE, "retried")
    return _in_order(store.retry(where), where)


def delete(store: Store, where: models.Selection) -> list[str]:
    """Remove jobs and their attempts. Running jobs are refused: cancel them first."""
    if where.ids is not None:
        for job_id in where.ids:
            if get_job(store, job_id).state is models.JobState.PROCESSING:
                raise errors.QueuectlError(
                    f'job "{job_id}" is running: cancel it first (`queuectl cancel {job_id}`)'
                )
    return _in_order(store.delete(where), where)


def pause(store: Store, queues: Sequence[str]) -> list[str]:
    """Pause queues: their jobs are not claimed (running ones finish), on every host."""
    names = [spec.parse_queue(queue) for queue in queues]
    store.pause(names)
    return names


def resume(store: Store, queues: Sequence[str] | None) -> list[str]:
    """Resume paused queues (every one when None); return those that were paused."""
    names = None if queues is None else [spec.parse_queue(queue) for queue in queues]
    return store.resume(names)


@record
class WaitResult:
    """What `wait` saw: each job's state when it stopped waiting."""

    states: dict[str, models.JobState]
    timed_out: bool

    @property
    def all_completed(self) -> bool:
        """Whether every job completed."""
        return all(state is models.JobState.COMPLETED for state in self.states.values())


WAIT_POLL = 0.05
"""Seconds between two reads when `wait` is given a `sleep` of its own (tests)."""
WAIT_FOREVER = 3600.0
"""What `wait` without a timeout asks the store to wait at most, before it reads again."""


def wait(
    store: Store,
    job_ids: Sequence[str],
    timeout: float | None = None,
    sleep: Callable[[float], None] | None = None,
) -> WaitResult:
    """Block until every job is completed, dead or cancelled, or `timeout` seconds pass.

    Woken by the store when a job may have ended (Store.wait_for_jobs); `sleep`, when given,
    is called between two reads instead (tests act there). Raises NotFound for an unknown job
    (before waiting) and when a job is deleted meanwhile.
    """
    ids = list(dict.fromkeys(job_ids))
    states = {job_id: get_job(store, job_id).state for job_id in ids}
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        waiting = [
            job_id for job_id, state in states.items() if state not in models.FINISHED_STATES
        ]
        if not waiting:
            return WaitResult(states=states, timed_out=False)
        if deadline is not None and time.monotonic() >= deadline:
            return WaitResult(states=states, timed_out=True)
        left = WAIT_FOREVER if deadline is None else max(deadline - time.monotonic(), 0.0)
        if sleep is None:
            store.wait_for_jobs(waiting, left)
        else:
            sleep(min(WAIT_POLL, left))
        now = store.job_states(waiting)
        for job_id in waiting:
            if job_id not in now:
                get_job(store, job_id)  # gone: NotFound, as it says
            states[job_id] = now[job_id]


@record
class Running:
    """A running attempt as `show` tells it."""

    number: int
    worker_id: str | None
    host: str | None
    pid: int | None
    """None until the worker's first save (within a second of the start)."""
    started_at: datetime | None
    elapsed: float


def running(store: Store, job: models.Job) -> Running | None:
    """The job's running attempt, or None when it is not running."""
    if job.state is not models.JobState.PROCESSING:
        return None
    live = store.live_output(job.id)
    started = job.claimed_at
    return Running(
        number=job.run_count,
        worker_id=job.worker_id,
        host=job.worker_host,
        pid=None if live is None else live.pid,
        started_at=started,
        elapsed=0.0 if started is None else max((store.now() - started).total_seconds(), 0.0),
    )


@record
class Output:
    """What `logs` shows: a recorded attempt, or the running one's output so far."""

    number: int
    stdout: bytes
    stderr: bytes
    running: bool
    attempt: models.Attempt | None = None
    live: models.LiveOutput | None = None


def output(store: Store, job_id: str, attempt: int | None = None) -> Output:
    """The running attempt's output so far (when no attempt is named), else a recorded one's.

    Raises NotFound for an unknown job, or one that has neither run nor started yet.
    """
    job = get_job(store, job_id)
    if attempt is None and job.state is models.JobState.PROCESSING:
        live = store.live_output(job_id)
        if live is not None:
            return Output(
                number=live.number, stdout=live.stdout, stderr=live.stderr, running=True, live=live
            )
        return Output(number=job.run_count, stdout=b"", stderr=b"", running=True)
    found = logs(store, job_id, attempt)
    return Output(
        number=found.number,
        stdout=found.stdout,
        stderr=found.stderr,
        running=False,
        attempt=found,
    )


def get_config(store: Store) -> dict[str, int | float]:
    """Every config key with its effective value."""
    cfg = config.from_stored(store.get_config())
    return {key: getattr(cfg, key) for key in config.KEYS}


def set_config(store: Store, key: str, value: str) -> tuple[str, int | float]:
    """Check and store a config value; return the canonical key and parsed value."""
    name = config.canonical_key(key)
    parsed = config.parse_value(name, value)
    store.set_config(name, config.format_value(parsed))
    return name, parsed


@record
class StopResult:
    """What `worker stop` achieved."""

    asked: list[str]
    remaining: list[str]

    @property
    def stopped(self) -> int:
        """How many of the workers asked have gone."""
        return len(self.asked) - len(self.remaining)


def stop_workers(
    store: Store,
    now: bool = False,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    worker_ids: Sequence[str] | None = None,
    host: str | None = None,
) -> StopResult:
    """Ask live workers to stop (finishing their jobs, or at once with `now`) and wait for them.

    Every worker on every host, or those named, or those of one host. Named workers that are
    not registered are reported as not found (NotFound) before anything is written.
    Workers past their own heartbeat deadline are dead already: forgotten, not waited for.
    A bad `timeout` (negative, not finite, over a day) raises FieldError before anything is written.
    """
    timeout = spec.parse_wait(timeout)
    mode = "now" if now else "graceful"
    store.prune_workers()

    def chosen(workers: Sequence[models.WorkerInfo]) -> list[str]:
        return [
            w.id
            for w in workers
            if (worker_ids is None or w.id in worker_ids) and (host is None or w.host == host)
        ]

    if worker_ids is not None:
        known = {w.id for w in store.list_workers()}
        for worker_id in worker_ids:
            if worker_id not in known:
                raise errors.NotFound(f'no worker with id "{worker_id}" (see `queuectl status`)')
    everyone = worker_ids is None and host is None
    asked = store.request_stop(None if everyone else chosen(store.list_workers()), mode)
    deadline = time.monotonic() + timeout
    remaining = list(asked)
    while remaining:
        workers = store.list_workers()
        listed = [w.id for w in workers]
        # A worker that registered after the request (a supervisor replacing one that died
        # just then), or whose request went with its row (pruned while frozen, then registered
        # again), is asked (again): "stop" means none is left running.
        late = [w for w in workers if w.stop is None]
        late_ids = chosen(late)
        if late_ids:
            asked += [
                worker_id
                for worker_id in store.request_stop(late_ids, mode)
                if worker_id not in asked
            ]
        remaining = [worker_id for worker_id in listed if worker_id in asked]
        if not remaining or time.monotonic() >= deadline:
            break
        sleep(0.05)
        store.prune_workers()  # one killed meanwhile is not waited for past its deadline
    return StopResult(asked=asked, remaining=remaining)
