"""``--version`` on every command and group of the command lines: the installed package's version (its metadata)."""

from __future__ import annotations

from typing import Any

import click

from .. import __version__


def _show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{ctx.find_root().info_name or 'strongroom'} {__version__}")
    ctx.exit(0)


def version_option() -> click.Option:
    """A ``--version`` flag that prints ``<program> <version>`` (e.g. ``strongroom-cli 0.1.0``) and exits 0
    before any other option is checked."""
    return click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True, callback=_show,
                        help="Show the version and exit.")


class VersionedCommand(click.Command):
    """A command with ``--version``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(version_option())


class VersionedGroup(click.Group):
    """A group with ``--version``, whose sub-groups (``group_class = type``) are versioned groups too and whose
    commands (``command_class``) take it as well."""

    command_class = VersionedCommand
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(version_option())
