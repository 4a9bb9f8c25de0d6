"""Worker commands: start (a supervisor of N workers), run (one worker), stop."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from queuectl import api, errors
from queuectl.cli import completion as complete


def _log_to_stderr() -> None:
    # A worker logs a line per job: skip the record fields the format does not show (the
    # logging HOWTO's "Optimization" section). Caller lookup alone walks the stack each time.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


@click.group()
def worker() -> None:
    """Start and stop worker processes."""


@worker.command()
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes to run.",
)
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    shell_complete=complete.queues,
    help="Only take jobs of this queue (repeatable; default: all queues).",
)
@click.option("-d", "--detach", is_flag=True, help="Run in the background and return.")
@click.option(
    "--log",
    "log_file",
    metavar="FILE",
    help="With --detach: the log file (default: worker.log beside the database).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit (status 0) once no job these workers serve is due, instead of waiting for more.",
)
@click.pass_obj
def start(
    obj: Any,
    count: int,
    queues: tuple[str, ...],
    detach: bool,
    log_file: str | None,
    burst: bool,
) -> None:
    """Run workers under one supervisor, in the foreground or --detach.

    --count workers run at once; a worker that crashes is replaced.
    Ctrl+C (or SIGTERM) stops them gracefully: each finishes its job first. A second Ctrl+C
    stops running jobs at once and puts them back to pending.
    """
    from queuectl import spec, supervisor

    for queue in queues:
        spec.parse_queue(queue)
    if log_file is not None and not detach:
        raise errors.UsageError(
            "log: give --log with --detach (in the foreground, logs go to stderr)"
        )
    if log_file is not None and not log_file.strip():
        raise errors.FieldError("log", "must be a file path, like --log ./worker.log")
    from queuectl import store

    db = obj.db if store.is_postgres(obj.db) else str(Path(obj.db).absolute())
    with obj.store():
        pass  # create and migrate the store once, before the workers race to
    if detach:
        log_path = Path(log_file) if log_file else _default_log(db)
        pid = supervisor.detach(db, count, queues, log_path, burst)
        click.echo(
            f"started {count} worker(s) in the background (supervisor pid {pid}, log {log_path})"
        )
        return
    _log_to_stderr()
    code = supervisor.Supervisor(db, count, queues, burst).run()
    if code:
        sys.exit(code)  # it gave up on crashing workers, or the store went away


def _default_log(db: str) -> Path:
    """Where a detached supervisor logs: beside a SQLite file, else in the user's data directory."""
    from queuectl import paths, store

    if store.is_postgres(db):
        return Path(paths.data_dir()) / "worker.log"
    return Path(db).parent / "worker.log"


@worker.command(hidden=True)
@click.option("-q", "--queue", "queues", multiple=True, metavar="NAME")
@click.option("--id", "worker_id", metavar="ID", help="The worker's id (default: random).")
@click.option("--burst", is_flag=True)
@click.pass_obj
def run(obj: Any, queues: tuple[str, ...], worker_id: str | None, burst: bool) -> None:
    """Run one worker in this process (what `start` runs N times)."""
    from queuectl import spec
    from queuectl import worker as worker_module

    for queue in queues:
        spec.parse_queue(queue)
    if worker_id is not None:
        spec.parse_id(worker_id)
    _log_to_stderr()
    code = worker_module.run_worker(obj.db, queues, worker_id, burst)
    if code:
        sys.exit(code)  # its supervisor starts no other: the store went away


@worker.command()
@click.argument("worker_ids", nargs=-1, metavar="[WORKER]...")
@click.option("--host", help="Only the workers of this host (as `status` shows it).")
@click.option("--now", is_flag=True, help="Stop running jobs too (they go back to pending).")
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the workers to exit.",
)
@click.pass_obj
def stop(
    obj: Any, worker_ids: tuple[str, ...], host: str | None, now: bool, timeout: float
) -> None:
    """Stop workers on every host, and wait until they have.

    Or only the workers named, or only those of --host.
    """
    from queuectl import spec

    timeout = spec.parse_wait(timeout)  # before the stop request is written
    ids = [spec.parse_job_ref(worker_id) for worker_id in worker_ids]
    if host is not None and (ids or not host.strip()):
        raise errors.FieldError("host", "give a host name, or worker ids, not both")
    with obj.store() as store:
        result = api.stop_workers(
            store, now=now, timeout=timeout, worker_ids=ids or None, host=host
        )
    if not result.asked:
        click.echo("no workers running")
        return
    click.echo(f"stopped {result.stopped} of {len(result.asked)} worker(s)")
    if result.remaining:
        raise click.ClickException(
            f"{len(result.remaining)} worker(s) still running after {timeout:g}s: "
            + ", ".join(result.remaining)
        )
