"""The `queuectl` command line: a click group over queuectl.api, one module per command group.

main() turns every QueuectlError and click usage error into one line on stderr and an exit code:
0 ok, 1 the operation failed (not found, duplicate), 2 usage error. A bug keeps its traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import click

from queuectl import __version__, errors, paths
from queuectl.record import record

if TYPE_CHECKING:
    from queuectl.store import Store


@record
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


COMMANDS = {
    "enqueue": "queuectl.cli.jobs:enqueue",
    "status": "queuectl.cli.jobs:status",
    "list": "queuectl.cli.jobs:list_",
    "show": "queuectl.cli.jobs:show",
    "logs": "queuectl.cli.jobs:logs",
    "cancel": "queuectl.cli.control:cancel",
    "kill": "queuectl.cli.control:kill",
    "retry": "queuectl.cli.control:retry",
    "delete": "queuectl.cli.control:delete",
    "wait": "queuectl.cli.control:wait",
    "pause": "queuectl.cli.control:pause",
    "resume": "queuectl.cli.control:resume",
    "worker": "queuectl.cli.workers:worker",
    "dlq": "queuectl.cli.dlq:dlq",
    "config": "queuectl.cli.config_cmd:config_group",
    "completion": "queuectl.cli.completion:completion",
}
"""Each command and where it lives; a module is imported only when its command runs."""


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is used (click's lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, without importing any."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return one command, or None for an unknown name."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="PATH|URL",
    envvar=None,
    help="The queue: a SQLite file, or a postgresql:// URL (default: $QUEUECTL_DB, else a "
    "SQLite file in the per-user data directory).",
)
@click.version_option(__version__, prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A durable background job queue for shell commands."""
    ctx.obj = Context(db_option=db)


def _usage_line(exc: click.UsageError) -> str:
    command = exc.ctx.command_path if exc.ctx is not None else "queuectl"
    return f"{exc.format_message()} (see `{command} --help`)"


def _fail(message: str, code: int) -> NoReturn:
    """Print one error line and exit. What the line repeats (a key, an id) is escaped."""
    from queuectl.cli import render  # only on the error path: it loads the api module

    click.echo(f"queuectl: error: {render.visible(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its code."""
    try:
        code = cli.main(args=argv, prog_name="queuectl", standalone_mode=False)
    except errors.QueuectlError as exc:
        _fail(str(exc), exc.exit_code)
    except click.UsageError as exc:
        _fail(_usage_line(exc), 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`queuectl list | head`): not an error
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
