"""``strongroom-cli``: the HSM command line for users, keys and crypto."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Strongroom HSM command line (users, keys, crypto)."""
