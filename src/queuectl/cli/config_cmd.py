"""Config commands: get, set, list."""

from __future__ import annotations

from typing import Any

import click

from queuectl import api, config, errors
from queuectl.cli import completion as complete

MAX_VALUE_LENGTH = 64
"""No setting's value is longer (1073741824, 0.000001); a longer one is refused unparsed."""


@click.group(name="config")
def config_group() -> None:
    """Read and change settings; running workers pick them up."""


@config_group.command()
@click.argument("key", required=False, shell_complete=complete.config_keys)
@click.pass_obj
def get(obj: Any, key: str | None) -> None:
    """Print one setting's value, or every setting."""
    name = None if key is None else config.canonical_key(key)
    with obj.store() as store:
        values = api.get_config(store)
    if name is None:
        _print_all(values)
        return
    click.echo(config.format_value(values[name]))


@config_group.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("key", shell_complete=complete.config_keys)
@click.argument("value")
@click.pass_obj
def set_(obj: Any, key: str, value: str) -> None:
    """Change a setting."""
    name = config.canonical_key(key)
    if len(value) > MAX_VALUE_LENGTH:
        # Parsing thousands of digits costs time and, for sizes, ends in int()'s digit limit.
        raise errors.FieldError(
            name, f"must be at most {MAX_VALUE_LENGTH} characters (got {len(value)})"
        )
    config.parse_value(name, value)  # refuse a bad value before the store is opened or created
    with obj.store() as store:
        name, parsed = api.set_config(store, key, value)
    click.echo(f"{name} = {config.format_value(parsed)}")


@config_group.command(name="list")
@click.pass_obj
def list_(obj: Any) -> None:
    """Print every setting."""
    with obj.store() as store:
        _print_all(api.get_config(store))


def _print_all(values: dict[str, int | float]) -> None:
    for name, value in values.items():
        click.echo(f"{name} = {config.format_value(value)}")
