"""``strongroom``: service commands (start a local deployment, run a node)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from ..errors import StrongroomError


@click.group()
def main() -> None:
    """Strongroom service commands."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./var"), show_default=True,
              help="Directory for the node's store and keys.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--once", is_flag=True, help="Print the node's status and exit instead of staying in the foreground.")
def up(data_dir: Path, output: str, once: bool) -> None:
    """Start a local Strongroom HSM in the foreground (first start initialises it).

    On first start a node is initialised in DATA_DIR/hsm0 with a random initial admin password, written to
    DATA_DIR/preco-password (mode 0600); activate the cluster with it.
    """
    import os
    import secrets

    from ..node import HSM

    node_dir = data_dir / "hsm0"
    try:
        if (node_dir / "hsm.sqlite").exists():
            hsm = HSM(node_dir)
        else:
            password = secrets.token_urlsafe(18)
            hsm = HSM.initialize(node_dir, preco_password=password)
            fd = os.open(data_dir / "preco-password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
    except StrongroomError as exc:
        click.echo(f"error: {exc.message} ({exc.ckr.name})", err=True)
        sys.exit(1)
    info = hsm.info()
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"Strongroom HSM {info['serial']} of {info['cluster_id']}: {info['state']}"
                   f" ({info['token_objects']} token objects); data in {node_dir}")
    if once:
        hsm.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        click.echo("running; press Ctrl-C to stop")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        hsm.close()
