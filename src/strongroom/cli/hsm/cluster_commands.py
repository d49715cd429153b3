"""``cluster``: the cluster's HSMs, its activation and the client CAs of its mutual TLS."""

from __future__ import annotations

from typing import Any

import click

from ...errors import StrongroomError
from .context import CliError, Context, command, main


@main.group()
def cluster() -> None:
    """The cluster: activation, its HSMs and the client CAs it trusts."""


@cluster.command("hsm-info")
@command
def cluster_hsm_info(ctx: Context) -> dict[str, Any]:
    """Each HSM's serial number, firmware and state (no login), asked of that HSM alone."""
    import asyncio

    from ...client import ClientConfig
    from ...client.connection import open_connection
    from ...protocol.tls import client_context

    if not ctx.cluster_path:
        raise CliError("no cluster: give --cluster PATH or set STRONGROOM_CLUSTER")
    # raises ArgumentsBad for a file that is not one
    config = ClientConfig.from_file(ctx.cluster_path, certificate="cli")
    try:
        tls = client_context(config.trust_anchor, cert_file=config.client_cert, key_file=config.client_key)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the trust anchor or client certificate of {ctx.cluster_path}: {exc}") from None

    async def one(endpoint: str) -> dict[str, Any]:
        try:  # one connection to this HSM only: a cluster connection would discover and ask the others
            conn = await open_connection(endpoint, tls, server_name=config.server_name, timeout_s=5.0,
                                         client="strongroom-cli")
            try:
                info: dict[str, Any] = await conn.call("hsm_info", timeout_s=config.timeout_s)
            finally:
                conn.close()
        except StrongroomError as exc:
            return {"endpoint": endpoint, "state": "unreachable", "message": exc.message}
        return {"endpoint": endpoint, "serial-number": info["serial"], "firmware-version": info["firmware_version"],
                "state": info["state"], "fips-state": _fips_state(info)}

    async def every() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(e) for e in dict.fromkeys(config.endpoints))))

    hsms = asyncio.run(every())
    if all(h["state"] == "unreachable" for h in hsms):  # nothing answered: an error, not a list
        raise CliError("no HSM answered: " + "; ".join(f"{h['endpoint']}: {h['message']}" for h in hsms))
    return {"hsms": hsms}


def _fips_state(info: dict[str, Any]) -> str:
    """The service's ``fips-state`` of one HSM: ``2 [FIPS mode with single factor authentication]`` in a FIPS
    cluster, ``0 [non-FIPS mode]`` in a NON_FIPS one, ``error`` for an HSM that is not operational."""
    if info["state"] != "operational":
        return "error"
    return "0 [non-FIPS mode]" if info.get("mode") == "NON_FIPS" else "2 [FIPS mode with single factor authentication]"


@cluster.command("activate")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new admin password (8-32 characters).")
@command
def cluster_activate(ctx: Context, password: str) -> str:
    """Change the initial admin password (CLOUDHSM_PIN=admin:<initial password>, CLOUDHSM_ROLE=admin)."""
    ctx.session("admin").activate(password)
    return "Cluster activation successful"



@cluster.command("register-client-ca")
@click.option("--certificate", "certificate", type=click.File("r"), required=True,
              help="PEM file of one CA certificate whose client certificates every HSM then accepts.")
@command
def cluster_register_client_ca(ctx: Context, certificate: Any) -> dict[str, str]:
    """Trust one more client CA for mutual TLS on every HSM (an admin: CLOUDHSM_ROLE=admin)."""
    return {"fingerprint": ctx.session("admin").call("register_client_ca", certificate.read(20_001))}


@cluster.command("unregister-client-ca")
@click.option("--fingerprint", required=True, help="SHA-256 fingerprint (hex) from list-client-cas.")
@command
def cluster_unregister_client_ca(ctx: Context, fingerprint: str) -> str:
    """Stop trusting a registered client CA: new connections with its certificates are refused (an admin)."""
    ctx.session("admin").call("unregister_client_ca", fingerprint)
    return f"Client CA {fingerprint} unregistered"


@cluster.command("list-client-cas")
@command
def cluster_list_client_cas(ctx: Context) -> dict[str, Any]:
    """The client CAs every HSM trusts: the owner's trust anchor and the registered ones (an admin)."""
    return {"client-cas": ctx.session("admin").call("list_client_cas")}
