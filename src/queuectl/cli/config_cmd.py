"""Config commands: get, set, list."""

from __future__ import annotations

from typing import Any

import click

from queuectl import api, config


@click.group(name="config")
def config_group() -> None:
    """Read and change settings (running workers pick them up within a second)."""


@config_group.command()
@click.argument("key", required=False)
@click.pass_obj
def get(obj: Any, key: str | None) -> None:
    """Print one setting's value, or every setting."""
    with obj.store() as store:
        values = api.get_config(store)
    if key is None:
        _print_all(values)
        return
    click.echo(config.format_value(values[config.canonical_key(key)]))


@config_group.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.pass_obj
def set_(obj: Any, key: str, value: str) -> None:
    """Change a setting."""
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
