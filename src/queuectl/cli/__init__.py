"""The `queuectl` command line: a click group over queuectl.api, one module per command group.

main() turns every QueuectlError and click usage error into one line on stderr and an exit code:
0 ok, 1 the operation failed (not found, duplicate), 2 usage error. A bug keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from queuectl import __version__, errors, paths

if TYPE_CHECKING:
    from queuectl.store import Store


@dataclass
class Context:
    """What every command needs: where the store is."""

    db_option: str | None

    @property
    def db(self) -> str:
        """The resolved store location."""
        return paths.resolve_db(self.db_option)

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """Open the store for one command and close it afterwards."""
        from queuectl import store

        opened = store.open_store(self.db)
        try:
            yield opened
        finally:
            opened.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="PATH",
    envvar=None,
    help="The queue's SQLite file (default: $QUEUECTL_DB, else the per-user data directory).",
)
@click.version_option(__version__, prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A durable background job queue for shell commands."""
    ctx.obj = Context(db_option=db)


def _register() -> None:
    from queuectl.cli import config_cmd, dlq, jobs, workers

    for command in (*jobs.COMMANDS, workers.worker, dlq.dlq, config_cmd.config_group):
        cli.add_command(command)


_register()


def _usage_line(exc: click.UsageError) -> str:
    command = exc.ctx.command_path if exc.ctx is not None else "queuectl"
    return f"{exc.format_message()} (see `{command} --help`)"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its code."""
    try:
        code = cli.main(args=argv, prog_name="queuectl", standalone_mode=False)
    except errors.QueuectlError as exc:
        click.echo(f"queuectl: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        click.echo(f"queuectl: error: {_usage_line(exc)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"queuectl: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`queuectl list | head`): not an error
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
