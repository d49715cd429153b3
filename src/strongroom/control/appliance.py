"""The control plane's calls to HSMs, as the appliance user: it presents its fleet-issued client certificate and
logs in without a password (``strongroom fleet appliance``). It never asks for key material or user passwords.

Before a cluster is initialised its HSMs serve TLS with their fleet identities; afterwards with certificates under
the cluster key. The appliance trusts both roots and checks no host name (a fleet identity names the HSM, not its
address).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client.connection import open_connection
from ..vendor import CKU_APPLIANCE
from ..vocab import CKF

CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Appliance:
    """The control plane's identity.

    Args:
        certificate, key: its appliance certificate and key (PEM files).
        fleet_ca: the fleet CA certificate (PEM file).
    """

    certificate: Path
    key: Path
    fleet_ca: Path

    def context(self, trust_anchor: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(self.fleet_ca))
        if trust_anchor is not None and trust_anchor.is_file():
            ctx.load_verify_locations(cafile=str(trust_anchor))
        ctx.load_cert_chain(str(self.certificate), str(self.key))
        return ctx

    def call(self, endpoint: str, calls: list[tuple[Any, ...]], *, trust_anchor: Path | None = None,
             login: bool = True, timeout_s: float = CALL_TIMEOUT_S) -> list[Any]:
        """Run ``calls`` (``(name, *args)``; the marker :data:`SESSION` stands for the session handle) on one HSM
        over one connection, logged in as the appliance user unless ``login`` is false.

        Raises:
            StrongroomError: what the HSM answered (``ConnectionLost`` when it cannot be reached).
        """
        async def run() -> list[Any]:
            conn = await open_connection(endpoint, self.context(trust_anchor), timeout_s=timeout_s)
            try:
                session = None
                if login:
                    session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION),
                                              timeout_s=timeout_s)
                    await conn.call("login", session, CKU_APPLIANCE, "", timeout_s=timeout_s)
                return [await conn.call(name, *(session if a is SESSION else a for a in args), timeout_s=timeout_s)
                        for name, *args in calls]
            finally:
                conn.close()

        return asyncio.run(run())


    def serves_chain_to(self, endpoint: str, trust_anchor: Path, timeout_s: float = 3.0) -> bool:
        """Whether the HSM at ``endpoint`` already serves a TLS certificate chaining to ``trust_anchor`` (after
        initialisation it switches from its fleet identity within a second or two)."""
        import socket

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(trust_anchor))
        ctx.load_cert_chain(str(self.certificate), str(self.key))  # every HSM port requires a client certificate
        host, _, port = endpoint.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw, \
                    ctx.wrap_socket(raw):
                return True
        except (OSError, ssl.SSLError):
            return False


SESSION = object()  # stands for the appliance's session handle in :meth:`Appliance.call`
