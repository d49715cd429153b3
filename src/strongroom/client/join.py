"""Joining a cluster, from the newcomer's side: a client exchange with one member at a time.

On one connection to a member: open a session, log in (an admin or the appliance user; without credentials the
join counts on the control plane having admitted this HSM's fleet certificate), ask for a challenge, answer it
with the fleet identity's signature (:mod:`strongroom.trust.join_proof`) and receive the masking key wrapped to
that identity (:mod:`strongroom.trust.masking_key`). A member that cannot admit now (catching up, no leader)
answers with a retryable error and the next member is asked (:func:`strongroom.client.retry.on_any_member`).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from ..errors import StrongroomError
from ..trust.fleet import Identity
from ..trust.join_proof import sign_join
from ..trust.masking_key import unwrap_masking_key
from ..vendor import LOGIN_ROLES
from ..vocab import CKF
from .config import ClientConfig
from .connection import open_connection
from .retry import on_any_member

JOIN_TIMEOUT_S = 30.0  # the least time a join may take: the member commits a membership change


@dataclass(frozen=True)
class Admission:
    """What a newcomer receives.

    Attributes:
        cluster_id: the cluster it joined.
        masking_key: the cluster's masking key (32 bytes), unwrapped with the newcomer's identity.
        members: every member's replication address (``HOST:PORT``), the newcomer's own among them.
    """

    cluster_id: str
    masking_key: bytes
    members: list[str]


def join(config: ClientConfig, ssl_context: ssl.SSLContext, identity: Identity, address: str,
         pin: str | None = None, role: str = "admin") -> Admission:
    """Join the cluster ``config`` names as the HSM holding ``identity``, replicating at ``address``.

    Args:
        pin: ``username:password`` of an admin (``role="admin"``) or of the appliance user (``role="appliance"``);
            ``None`` when the control plane admitted this HSM.

    Raises:
        StrongroomError: the first error a member gives that is not retryable (a wrong password, a certificate
            not from the cluster's fleet, ``CKR_SIGNATURE_INVALID`` …), or the last retryable one once
            ``max(30 s, config.timeout_s)`` passed.
        DeviceError: ``CKR_DEVICE_ERROR`` when the masking key does not unwrap with ``identity``.
    """

    async def attempt(endpoint: str) -> Admission:
        conn = await open_connection(endpoint, ssl_context, server_name=config.server_name,
                                     timeout_s=config.connect_timeout_s)
        try:
            session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION))
            if pin is not None:
                await conn.call("login", session, LOGIN_ROLES[role], pin)
            challenge = await conn.call("join_challenge")
            cluster_id = conn.node["cluster_id"]
            signature = sign_join(identity, challenge, cluster_id, address)
            answer = await conn.call("join_cluster", session, identity.certificate, address, signature,
                                     timeout_s=JOIN_TIMEOUT_S)
        finally:
            conn.close()
        key = unwrap_masking_key(identity, answer["ephemeral"], answer["wrapped_key"], cluster_id)
        return Admission(answer["cluster_id"], key, answer["members"])

    return asyncio.run(on_any_member(config.endpoints, attempt, deadline_s=max(JOIN_TIMEOUT_S, config.timeout_s)))


def cluster_id_of(config: ClientConfig, ssl_context: ssl.SSLContext, connect_timeout_s: float = 3.0) -> str | None:
    """The cluster id the first member of ``config`` that answers reports; ``None`` when none answers."""

    async def first() -> str | None:
        for endpoint in config.endpoints:
            try:
                conn = await open_connection(endpoint, ssl_context, server_name=config.server_name,
                                             timeout_s=connect_timeout_s)
            except StrongroomError:
                continue
            conn.close()
            return conn.node.get("cluster_id")
        return None

    return asyncio.run(first())
