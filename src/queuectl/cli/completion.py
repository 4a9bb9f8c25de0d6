"""Shell completion: the `completion` command, and completers for ids, queues, states, keys.

`queuectl completion bash|zsh|fish` prints the script; the completers offer job ids, queue
names, states and config keys (click's shell_complete protocol).

A completer never fails the shell: any error (no store yet, a server down) offers nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem, get_completion_class

if TYPE_CHECKING:
    from queuectl.store import Store

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_QUEUECTL_COMPLETE"
"""The variable click's completion scripts set when they ask the program for candidates."""
OFFERED = 200
"""Job ids offered at most (the newest)."""


@contextlib.contextmanager
def _store(ctx: click.Context) -> Iterator[Store]:
    """The store the command line names (--db, else the default), opened for one lookup."""
    from queuectl import paths, store

    db = ctx.find_root().params.get("db")
    opened = store.open_store(paths.resolve_db(db), create=False)
    try:
        yield opened
    finally:
        opened.close()


def job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The newest jobs' ids that start with what was typed."""
    from queuectl import models

    try:
        with _store(ctx) as store:
            jobs = store.list_jobs(models.JobFilter(), OFFERED)
    except Exception:  # noqa: BLE001 - completion must never break the shell
        return []
    return [
        CompletionItem(job.id, help=f"{job.state} {job.command[:40]}")
        for job in jobs
        if job.id.startswith(incomplete)
    ]


def queues(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Queue names: those with jobs, and the paused ones."""
    try:
        with _store(ctx) as store:
            names = {*store.counts().by_queue, *store.paused_queues()}
    except Exception:  # noqa: BLE001 - completion must never break the shell
        return []
    return [CompletionItem(name) for name in sorted(names) if name.startswith(incomplete)]


def states(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Job states."""
    from queuectl import models

    return [CompletionItem(s.value) for s in models.JobState if s.value.startswith(incomplete)]


def config_keys(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Config keys."""
    from queuectl import config

    return [CompletionItem(key) for key in config.KEYS if key.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
      bash: eval "$(queuectl completion bash)"     (in ~/.bashrc)
      zsh:  eval "$(queuectl completion zsh)"      (in ~/.zshrc)
      fish: queuectl completion fish > ~/.config/fish/completions/queuectl.fish
    """  # noqa: D301 - click keeps a paragraph unwrapped after a \b line
    from queuectl.cli import cli

    script_class = get_completion_class(shell)
    if script_class is None:  # the Choice above holds click's own shells
        raise click.UsageError(f"shell: no completion for {shell}")
    click.echo(script_class(cli, {}, "queuectl", COMPLETE_VAR).source())
