"""Job-control commands: cancel, kill, retry, delete, wait, pause, resume.

Each checks every argument before it opens the store, then calls one api function. A running
job is stopped by its worker, on whichever host, through the store (within a second).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from queuectl import api, errors, models, spec
from queuectl.cli import completion as complete

F = TypeVar("F", bound=Callable[..., Any])
EXIT_TIMEOUT = 124
"""`wait`'s exit code when its timeout passed first (as timeout(1)'s)."""
CANCEL_WAIT = 10.0
"""Seconds `cancel` waits by default for running jobs to be stopped."""


def _shown(job_ids: Sequence[str]) -> str:
    from queuectl.cli import render

    return " ".join(render.visible(job_id) for job_id in job_ids)


def _selection(
    obj: Any,
    job_ids: tuple[str, ...],
    states: tuple[str, ...],
    allowed: Sequence[models.JobState],
    queue: str | None,
    older_than: str | None = None,
) -> tuple[tuple[str, ...], list[models.JobState], str | None, float | None]:
    """Check a bulk command's arguments (before the store is opened)."""
    ids = tuple(spec.parse_job_ref(job_id) for job_id in job_ids)
    parsed = [spec.parse_state(state, allowed) for state in states]
    where = None if queue is None else spec.parse_queue(queue)
    age = None if older_than is None else spec.parse_duration("older-than", older_than)
    if ids and (parsed or where is not None or age is not None):
        raise errors.UsageError("job: give job ids or --state/--queue/--older-than, not both")
    if not ids and not parsed:
        raise errors.UsageError("job: name the jobs (JOB...), or select them with --state")
    return ids, parsed, where, age


def _selects(allowed: Sequence[models.JobState]) -> Callable[[F], F]:
    """A bulk command's way to name jobs: JOB..., or --state (repeatable) and --queue."""
    names = ", ".join(state.value for state in allowed)

    def decorate(command: F) -> F:
        command = click.option(
            "--queue", shell_complete=complete.queues, help="With --state: only this queue's jobs."
        )(command)
        command = click.option(
            "--state",
            "states",
            multiple=True,
            shell_complete=complete.states,
            help=f"Select jobs in this state (repeatable): {names}.",
        )(command)
        return click.argument(
            "job_ids", nargs=-1, metavar="[JOB]...", shell_complete=complete.job_ids
        )(command)

    return decorate


@click.command()
@_selects(models.CANCELLABLE)
@click.option(
    "--timeout",
    default=str(CANCEL_WAIT),
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for running jobs to be stopped (0: do not wait).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each job's state as JSON.")
@click.pass_obj
def cancel(
    obj: Any,
    job_ids: tuple[str, ...],
    states: tuple[str, ...],
    queue: str | None,
    timeout: str,
    as_json: bool,
) -> None:
    """Cancel jobs; running ones are stopped by their workers.

    Waiting jobs are cancelled at once. A running job's processes get SIGTERM, then SIGKILL
    after the grace period; its attempt is recorded as cancelled and it is not retried.
    Completed and dead jobs cannot be cancelled.
    """
    ids, parsed, where, _ = _selection(obj, job_ids, states, models.CANCELLABLE, queue)
    wait_for = spec.parse_duration("timeout", timeout)
    with obj.store() as store:
        selection = api.selection(ids, parsed, where)
        result = api.cancel(store, selection)
        running = [
            job_id for job_id, state in result.items() if state is not models.JobState.CANCELLED
        ]
        if running and wait_for > 0:
            waited = api.wait(store, running, wait_for)
            result.update(waited.states)
    if as_json:
        click.echo(json.dumps({job_id: state.value for job_id, state in result.items()}))
    cancelled = [job_id for job_id, state in result.items() if state is models.JobState.CANCELLED]
    stopping = [job_id for job_id, state in result.items() if state is models.JobState.PROCESSING]
    other = {
        job_id: state for job_id, state in result.items() if job_id not in cancelled + stopping
    }
    if not as_json:
        click.echo(
            f"cancelled {len(cancelled)} job(s)"
            + (": " + _shown(cancelled) if ids and cancelled else "")
        )
        if stopping:
            click.echo(f"still being stopped: {_shown(stopping)}")
        for job_id, state in other.items():
            click.echo(f"{_shown([job_id])}: {state} before it could be cancelled")
    if stopping or other:
        sys.exit(1)


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=complete.job_ids)
@click.option(
    "-s", "--signal", "sig", default="TERM", show_default=True, help="Signal name or number."
)
@click.pass_obj
def kill(obj: Any, job_id: str, sig: str) -> None:
    """Send a signal to a running job's processes.

    Every process of the job gets it, whatever group or session it moved to. The attempt
    ends as the signal makes it end, and the retry policy applies as for any failure; use
    `cancel` to stop a job for good.
    """
    job_id = spec.parse_job_ref(job_id)
    signum = spec.parse_signal(sig)
    with obj.store() as store:
        api.kill(store, job_id, signum)
    import signal

    click.echo(f"sending {signal.Signals(signum).name} to job {_shown([job_id])}")


@click.command()
@_selects(models.RETRYABLE)
@click.pass_obj
def retry(obj: Any, job_ids: tuple[str, ...], states: tuple[str, ...], queue: str | None) -> None:
    """Run finished jobs again, with a fresh retry budget.

    Completed, dead or cancelled jobs go back to pending. Their attempt history is kept; the
    next attempt is numbered after it.
    """
    ids, parsed, where, _ = _selection(obj, job_ids, states, models.RETRYABLE, queue)
    with obj.store() as store:
        moved = api.retry(store, api.selection(ids, parsed, where))
    click.echo(f"retried {len(moved)} job(s)" + (": " + _shown(moved) if ids and moved else ""))


@click.command()
@_selects(models.DELETABLE)
@click.option(
    "--older-than",
    metavar="AGE",
    help="With --state: only jobs last changed longer ago than AGE (90, 10m, 1h30m, 7d).",
)
@click.pass_obj
def delete(
    obj: Any,
    job_ids: tuple[str, ...],
    states: tuple[str, ...],
    queue: str | None,
    older_than: str | None,
) -> None:
    """Remove jobs and their attempt history. A running job must be cancelled first."""
    ids, parsed, where, age = _selection(obj, job_ids, states, models.DELETABLE, queue, older_than)
    with obj.store() as store:
        removed = api.delete(store, api.selection(ids, parsed, where, age, store.now()))
    click.echo(
        f"deleted {len(removed)} job(s)" + (": " + _shown(removed) if ids and removed else "")
    )


@click.command()
@click.argument(
    "job_ids", nargs=-1, required=True, metavar="JOB...", shell_complete=complete.job_ids
)
@click.option(
    "--timeout", metavar="SECONDS", help="Give up after this long (exit 124): 90, 10m, 1h."
)
@click.option("--json", "as_json", is_flag=True, help="Print each job's final state as JSON.")
@click.pass_obj
def wait(obj: Any, job_ids: tuple[str, ...], timeout: str | None, as_json: bool) -> None:
    """Wait for jobs to finish, and print their states.

    Finished: completed, dead or cancelled. Exit 0 when all completed, 1 when any did not,
    124 when the timeout passed first.
    """
    ids = [spec.parse_job_ref(job_id) for job_id in job_ids]
    limit = None if timeout is None else spec.parse_duration("timeout", timeout)
    with obj.store() as store:
        result = api.wait(store, ids, limit)
    report(result, as_json)


def report(result: api.WaitResult, as_json: bool) -> None:
    """Print what `wait` saw and exit with its code (also `enqueue --wait`'s)."""
    if as_json:
        click.echo(json.dumps({job_id: state.value for job_id, state in result.states.items()}))
    else:
        for job_id, state in result.states.items():
            click.echo(f"{_shown([job_id])}: {state}")
    if result.timed_out:
        sys.exit(EXIT_TIMEOUT)
    if not result.all_completed:
        sys.exit(1)


@click.command()
@click.argument("queues", nargs=-1, metavar="[QUEUE]...", shell_complete=complete.queues)
@click.option("--all", "all_", is_flag=True, help="Every queue that has jobs now.")
@click.pass_obj
def pause(obj: Any, queues: tuple[str, ...], all_: bool) -> None:
    """Hold queues: no worker takes their jobs.

    Running jobs finish. Kept in the store: it holds across worker restarts until `queuectl resume`.
    """
    if bool(queues) == all_:
        raise errors.UsageError("queue: name the queues to pause, or give --all (not both)")
    names = [spec.parse_queue(queue) for queue in queues]
    with obj.store() as store:
        if all_:
            names = sorted(api.status(store).counts.by_queue)
        paused = api.pause(store, names)
    click.echo(f"paused {len(paused)} queue(s)" + (": " + _shown(paused) if paused else ""))


@click.command()
@click.argument("queues", nargs=-1, metavar="[QUEUE]...", shell_complete=complete.queues)
@click.option("--all", "all_", is_flag=True, help="Every paused queue.")
@click.pass_obj
def resume(obj: Any, queues: tuple[str, ...], all_: bool) -> None:
    """Let workers take paused queues' jobs again."""
    if bool(queues) == all_:
        raise errors.UsageError("queue: name the queues to resume, or give --all (not both)")
    names = None if all_ else [spec.parse_queue(queue) for queue in queues]
    with obj.store() as store:
        resumed = api.resume(store, names)
    click.echo(f"resumed {len(resumed)} queue(s)" + (": " + _shown(resumed) if resumed else ""))
