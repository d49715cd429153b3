"""Options that take a space-separated list, as the service's CLI writes them: ``--filter attr.a=b attr.c=d``,
``--attributes encrypt=true decrypt=true``, ``--share-crypto-users alice bob``. Repeating the flag works too
(``--attributes encrypt=true --attributes decrypt=true``); both give one flat tuple of values."""

from __future__ import annotations

from typing import Any

import click

from ..version_option import VersionedCommand, VersionedGroup


class ListOption(click.Option):
    """A ``multiple`` option whose flag also takes the words after its value, up to the next option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        kwargs.setdefault("metavar", "VALUE...")
        super().__init__(*args, **kwargs)


def spread(args: list[str], names: set[str]) -> list[str]:
    """``args`` with each list option's extra words given their own flag: ``--filter a b`` becomes
    ``--filter a --filter b``. A word that starts with ``-`` ends the list; ``--`` ends option parsing."""
    out: list[str] = []
    current: str | None = None
    position = 0
    while position < len(args):
        word = args[position]
        position += 1
        if word == "--":
            return [*out, word, *args[position:]]
        if word.startswith("-") and len(word) > 1:
            flag, equals, _ = word.partition("=")
            current = flag if flag in names else None
            out.append(word)
            if current is not None and not equals and position < len(args):
                out.append(args[position])  # the flag's own first value, whatever it looks like
                position += 1
            continue
        if current is not None:
            out.append(current)
        out.append(word)
    return out


class ListCommand(VersionedCommand):
    """A command whose :class:`ListOption` flags take space-separated lists (and ``--version``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {name for param in self.params if isinstance(param, ListOption) for name in param.opts}
        return super().parse_args(ctx, spread(args, names) if names else args)


class CliGroup(VersionedGroup):
    """The groups of ``strongroom-cli``: ``--version``, and commands that take space-separated lists."""

    command_class = ListCommand
