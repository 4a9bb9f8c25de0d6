"""Every help page renders: summaries whole, example blocks as written, options named as such."""

from __future__ import annotations

import subprocess
import sys

import pytest

from queuectl.cli import COMMANDS, cli


def _help(*words: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", *words, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def _every_command() -> list[tuple[str, ...]]:
    import click

    found: list[tuple[str, ...]] = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        found.append((name,))
        if isinstance(command, click.Group):
            found += [(name, sub) for sub, c in command.commands.items() if not c.hidden]
    return found


def test_no_summary_is_cut_short() -> None:
    for words in [
        (),
        *(w for w in _every_command() if len(w) == 1 and w[0] in ("worker", "dlq", "config")),
    ]:
        out = _help(*words)
        listed = out.split("Commands:", 1)[1]
        assert "..." not in listed, out


@pytest.mark.parametrize("words", _every_command(), ids=" ".join)
def test_every_help_page_renders(words: tuple[str, ...]) -> None:
    out = _help(*words)
    assert "\\b" not in out
    assert "\b" not in out
    assert out.startswith("Usage: queuectl ")


def test_enqueue_help_shows_its_examples_line_by_line() -> None:
    out = _help("enqueue")
    assert "\n    queuectl enqueue -- sleep 2\n" in out
    assert "local time" in out and "secrets" in out


def test_worker_start_help_names_the_count_option() -> None:
    out = _help("worker", "start")
    assert "COUNT" not in out.split("Options:")[0]
    assert "--count" in out and "--burst" in out
