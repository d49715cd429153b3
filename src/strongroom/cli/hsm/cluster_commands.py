"""``cluster``: the cluster's HSMs and its activation."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ...errors import StrongroomError
from .context import CliError, Context, command, main


@main.group()
def cluster() -> None:
    """The cluster: activation and its HSMs."""


@cluster.command("hsm-info")
@command
def cluster_hsm_info(ctx: Context) -> dict[str, Any]:
    """Each HSM's serial number, firmware and state (no login)."""
    import strongroom.client as sdk

    from ...client import ClientConfig

    if not ctx.cluster_path:
        raise CliError("no cluster: give --cluster PATH or set STRONGROOM_CLUSTER")
    config = ClientConfig.from_file(ctx.cluster_path)  # raises ArgumentsBad for a file that is not one
    hsms = []
    for endpoint in config.endpoints:
        try:
            with sdk.connect(dataclasses.replace(config, endpoints=(endpoint,), connect_timeout_s=5.0)) as one:
                info = one.hsm_info()
        except StrongroomError as exc:
            hsms.append({"endpoint": endpoint, "state": "unreachable", "message": exc.message})
            continue
        hsms.append({"endpoint": endpoint, "serial-number": info["serial"], "firmware-version":
                     info["firmware_version"], "state": info["state"], "fips-state": "2 [FIPS mode with single "
                     "factor authentication]" if info["state"] == "operational" else "error"})
    return {"hsms": hsms}


@cluster.command("activate")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new admin password (8-32 characters).")
@command
def cluster_activate(ctx: Context, password: str) -> str:
    """Change the initial admin password (STRONGROOM_PIN=admin:<initial password>, role admin)."""
    ctx.session("admin").activate(password)
    return "Cluster activation successful"

