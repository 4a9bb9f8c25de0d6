"""Dead letter queue commands: list and retry."""

from __future__ import annotations

from typing import Any

import click

from queuectl import api, errors, models, spec
from queuectl.cli import completion as complete
from queuectl.cli import render


@click.group()
def dlq() -> None:
    """The dead letter queue: jobs whose retries ran out."""


@dlq.command(name="list")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_dead(obj: Any, limit: int, as_json: bool) -> None:
    """Dead jobs, newest first."""
    limit = spec.parse_limit(limit)
    with obj.store() as store:
        jobs = api.list_jobs(store, models.JobState.DEAD, None, limit)
    render.jobs(jobs, as_json)


@dlq.command()
@click.argument("job_ids", nargs=-1, metavar="JOB...", shell_complete=complete.job_ids)
@click.option("--all", "all_", is_flag=True, help="Retry every dead job.")
@click.pass_obj
def retry(obj: Any, job_ids: tuple[str, ...], all_: bool) -> None:
    """Send dead jobs back to pending with a fresh retry budget."""
    if bool(job_ids) == all_:
        raise errors.UsageError("job: name the jobs to retry, or give --all (not both)")
    job_ids = tuple(spec.parse_job_ref(job_id) for job_id in job_ids)
    with obj.store() as store:
        revived = api.retry_dead(store, None if all_ else list(job_ids))
    shown = " ".join(render.visible(job_id) for job_id in revived)  # ids of older rules too
    click.echo(f"retried {len(revived)} job(s)" + (": " + shown if revived else ""))
