"""Job commands: enqueue, status, list, show, logs."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import click

from queuectl import api, errors, models, spec
from queuectl.cli import completion as complete

STATES = [state.value for state in models.JobState]
_AFTER_DD = "queuectl.after_double_dash"
"""ctx.meta key: the words that came after `--`, which are a command whatever they look like."""
_JSON_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number"}


class _Enqueue(click.Command):
    """The enqueue command, remembering which words came after `--` (click does not say)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Note the words after the first `--`, then parse as usual."""
        if "--" in args:
            ctx.meta[_AFTER_DD] = tuple(args[args.index("--") + 1 :])
        return super().parse_args(ctx, args)


def _json_kind(text: str) -> str | None:
    """What JSON value `text` is ("a list", "null"...), or None when it is not JSON at all."""
    try:
        # parse_int=len: a long run of digits is a JSON number, whatever int()'s digit limit.
        # NaN and Infinity count, as they do in a JSON job: the same parser reads both.
        value = json.loads(text, parse_int=len)
    except RecursionError:
        return "a deeply nested list"
    except ValueError:
        return None
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return _JSON_KINDS.get(type(value), "an object")


def _flags_to_mapping(flags: dict[str, Any], args: tuple[str, ...]) -> dict[str, Any]:
    """Build a job object from flags and the words after `--`."""
    data = {
        key: value
        for key, value in flags.items()
        if value is not None and key not in ("env", "tag", "run_at")
    }
    if flags.get("tag"):
        data["tags"] = list(flags["tag"])
    if flags.get("run_at") is not None:
        data["run_at"] = _local_time(flags["run_at"])
    if args:
        if "command" in data:
            raise errors.UsageError("command: give it with --command or after --, not both")
        data["command"] = args[0] if len(args) == 1 else shlex.join(args)
    if flags["env"]:
        env = {}
        for item in flags["env"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise errors.FieldError("env", f"must be KEY=VALUE (got {json.dumps(item)[:60]})")
            env[name] = value
        data["env"] = env
    return data


def _local_time(text: str) -> str:
    """--run-at as given, or, without a zone, taken as this machine's local time."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text  # spec.parse_run_at says what is wrong with it
    if when.tzinfo is None:
        try:
            return when.astimezone().isoformat()
        except (OverflowError, ValueError, OSError):
            return text
    return text


Numbered = tuple[list[models.JobSpec], list[int] | None]


def _read_lines(path: str) -> Numbered:
    if path == "-":
        return spec.numbered_lines(sys.stdin)
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            return spec.numbered_lines(handle)
    except OSError as exc:
        raise errors.FieldError("file", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise errors.FieldError("file", f"{path} is not UTF-8 text") from None


def _lone_argument(arg: str, given: Sequence[str]) -> models.JobSpec | None:
    """The job a single argument before any `--` gives as JSON; None when it is a command.

    An argument starting with "{" is a JSON job. Any other JSON value (`[1,2]`, `"x"`, `42`,
    `null`, `true`) is refused rather than run: it is far more likely a mistake than a command,
    and `-- CMD` or `--command CMD` says "command" without doubt.
    """
    if arg.lstrip().startswith("{"):
        if given:
            raise errors.UsageError(f"{given[0]}: give the job as JSON or as flags, not both")
        return spec.from_json(arg)
    kind = _json_kind(arg)
    if kind is not None:
        raise errors.UsageError(
            f'job: must be a JSON object like {{"command": "sleep 2"}} (got {kind}); '
            "to run it as a command, put it after -- (enqueue -- CMD) or give --command CMD"
        )
    return None


def _specs(
    args: tuple[str, ...], file: str | None, flags: dict[str, Any], after_dd: bool
) -> Numbered:
    """The specs to enqueue and, for a file, the line each came from."""
    given = [name for name, value in flags.items() if value not in (None, ())]
    if file is not None:
        if args or given:
            raise errors.UsageError("file: give jobs with --file alone, without other job flags")
        return _read_lines(file)
    if len(args) == 1 and not after_dd:
        job = _lone_argument(args[0], given)
        if job is not None:
            return [job], None
    if not args and not given:
        raise errors.UsageError(
            "job: give a JSON object, flags (--command ...), a command after --, or --file"
        )
    return [spec.from_mapping(_flags_to_mapping(flags, args))], None


@click.command(cls=_Enqueue, no_args_is_help=False)
@click.argument("args", nargs=-1)
@click.option("-f", "--file", metavar="PATH", help="Enqueue JSON lines from a file ('-': stdin).")
@click.option("--id", "id_", metavar="ID", help="Job id (generated when absent).")
@click.option("-c", "--command", metavar="CMD", help="Shell command to run with /bin/sh -c.")
@click.option("-p", "--priority", type=int, help="Higher runs first (default 0).")
@click.option(
    "--run-at",
    metavar="TIME",
    help="When to run: ISO-8601, like 2026-12-02T09:00:00Z; without a zone (2026-12-02 09:00) "
    "it is this machine's local time.",
)
@click.option("--delay", metavar="DURATION", help="Run this long from now: 90, 10m, 1h30m, 2d.")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--timeout", type=float, help="Seconds an attempt may run.")
@click.option(
    "-q",
    "--queue",
    metavar="NAME",
    shell_complete=complete.queues,
    help="Queue name (default 'default').",
)
@click.option("--cwd", metavar="DIR", help="Working directory (default: the current one).")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="Extra environment variable.")
@click.option("-t", "--tag", multiple=True, metavar="NAME", help="A tag (repeatable); list --tag.")
@click.option(
    "--inherit-env",
    is_flag=True,
    help="Run the job with this shell's whole environment (pueue's way) instead of the "
    "worker's. It is stored in the queue: secrets in it (tokens, passwords) are readable by "
    "anyone who can read the queue.",
)
@click.option(
    "-w",
    "--wait",
    "wait_",
    is_flag=True,
    help="Then wait for the job(s) to finish, as `queuectl wait` (exit 0 if all completed).",
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    /,
    args: tuple[str, ...],
    file: str | None,
    id_: str | None,
    inherit_env: bool,
    wait_: bool,
    **flags: Any,
) -> None:
    """Add a job: JSON, flags, or a command after --.

    \b
      queuectl enqueue '{"id":"job1","command":"sleep 2"}'
      queuectl enqueue --id job1 --command "sleep 2"
      queuectl enqueue -- sleep 2
      queuectl enqueue --file jobs.jsonl

    A single argument before any -- that is JSON must be an object; words after -- are
    always the command.
    """  # noqa: D301 - click keeps a paragraph unwrapped after a \b (backspace) line, not "\\b"
    after_dd = bool(args) and ctx.meta.get(_AFTER_DD) == args
    if inherit_env and file is not None:
        raise errors.UsageError("inherit-env: give it with a job's flags, not with --file")
    if inherit_env:  # this shell's environment, under the job's own --env values
        import os

        flags["env"] = (*(f"{k}={v}" for k, v in os.environ.items()), *flags["env"])
    specs, lines = _specs(args, file, {"id": id_, **flags}, after_dd)
    with ctx.obj.store() as store:
        ids = api.enqueue(store, specs, lines=lines)
        click.echo("\n".join(ids))  # one a line, for scripts (`xargs queuectl wait`)
        if wait_:
            from queuectl.cli import control

            control.report(api.wait(store, ids), as_json=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: Any, as_json: bool) -> None:
    """Job counts per state and queue, and the workers."""
    with obj.store() as store:
        snapshot = api.status(store)
    from queuectl.cli import render  # rich is loaded only to draw tables

    render.status(snapshot, as_json)


@click.command(name="list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    shell_complete=complete.states,
    help="Only jobs in this state (repeatable).",
)
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    shell_complete=complete.queues,
    help="Only jobs of this queue (repeatable).",
)
@click.option("-t", "--tag", metavar="NAME", help="Only jobs with this tag.")
@click.option("-s", "--search", metavar="TEXT", help="Only jobs with TEXT in their id or command.")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="At most this many.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "tsv", "ids"]),
    help="table (on a terminal), tsv (otherwise: tab-separated, nothing cut), or ids (one a line).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(
    obj: Any,
    states: tuple[str, ...],
    queues: tuple[str, ...],
    tag: str | None,
    search: str | None,
    limit: int,
    output: str | None,
    as_json: bool,
) -> None:
    """Jobs, newest first.

    A pending job waiting for its run_at shows as scheduled, with its time.
    """
    limit = spec.parse_limit(limit)
    names = [spec.parse_queue(queue) for queue in queues]
    tag = None if tag is None else spec.parse_tag(tag)
    with obj.store() as store:
        jobs = api.list_jobs(
            store,
            limit=limit,
            states=[models.JobState(state) for state in states],
            queues=names,
            tag=tag,
            search=search,
        )
        now = store.now()
    from queuectl.cli import render  # rich is loaded only to draw tables

    if as_json:
        render.jobs(jobs, as_json=True)
    else:
        render.job_lines(jobs, output or ("table" if sys.stdout.isatty() else "tsv"), now)


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=complete.job_ids)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Any, job_id: str, as_json: bool) -> None:
    """A job's fields and its attempt history."""
    job_id = spec.parse_job_ref(job_id)
    with obj.store() as store:
        job, attempts = api.show(store, job_id)
        current = api.running(store, job)
    from queuectl.cli import render  # rich is loaded only to draw tables

    render.job_detail(job, attempts, as_json, current)


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=complete.job_ids)
@click.option("-a", "--attempt", type=int, help="Attempt number (default: the running or latest).")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Stream the running attempt's output until it ends (waiting for it to start), then "
    "exit 0 if the job completed, else 1.",
)
@click.option("--stdout", "stream", flag_value="stdout", help="Only stdout, raw: no headers.")
@click.option("--stderr", "stream", flag_value="stderr", help="Only stderr, raw: no headers.")
@click.pass_obj
def logs(obj: Any, job_id: str, attempt: int | None, follow: bool, stream: str | None) -> None:
    """A job's output: the running attempt's so far, or the latest.

    --attempt N shows an earlier one. A running job's worker saves its output as it goes, at
    most once a second.
    """
    from queuectl.cli import output

    job_id = spec.parse_job_ref(job_id)
    attempt = None if attempt is None else spec.parse_attempt(attempt)
    if follow and attempt is not None:
        raise errors.UsageError("attempt: --follow streams the running attempt; drop --attempt")
    with obj.store() as store:
        if follow:
            job = output.follow(store, job_id, sys.stdout, sys.stderr, stream)
            click.echo(f"queuectl: job {job_id} is {job.state}", err=True)
            sys.exit(0 if job.state is models.JobState.COMPLETED else 1)
        shown = api.output(store, job_id, attempt)
    output.write_output(shown, sys.stdout, stream)
