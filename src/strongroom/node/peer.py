"""Who is at the other end of a connection, as every audit entry of its calls records it.

The identity is what the TLS handshake proved: the client certificate's subject and SHA-256 fingerprint (or
``"none"`` for a connection without one), and the address. A client agent also names the application process
it serves (the ``client`` argument of ``C_Login``: ``pid=… uid=… gid=…`` from ``SO_PEERCRED`` on its unix
socket). Only a peer whose verified certificate marks it as an agent (subject organizational unit
``AGENT_UNIT``) vouches for that: its string is recorded as ``client``; anyone else's is recorded as
``claimed_client``, so no client can write the field an auditor trusts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..vendor import AGENT_UNIT

NONE = "none"
"""What the audit records for a certificate or address the connection does not have."""


@dataclass(frozen=True)
class PeerIdentity:
    """The authenticated identity of a connection.

    Attributes:
        address: ``host:port`` of the client, or ``"none"``.
        subject: the client certificate's subject (RFC 4514), or ``"none"``.
        fingerprint: SHA-256 of the client certificate's DER (64 hex digits), or ``"none"``.
        agent: the certificate, verified by the handshake, marks a client agent (``OU=strongroom-agent``).
    """

    address: str = NONE
    subject: str = NONE
    fingerprint: str = NONE
    agent: bool = False

    @classmethod
    def of_connection(cls, peername: Any, certificate_der: bytes | None, verified: bool) -> PeerIdentity:
        """The identity of a TLS connection.

        Args:
            peername: the socket's peer address (``(host, port, …)``), or ``None``.
            certificate_der: the client certificate (DER) the handshake received, or ``None``.
            verified: the handshake checked that certificate against the node's client trust anchors (only a
                verified certificate can mark an agent).
        """
        address = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) and len(peername) >= 2 else NONE
        if not certificate_der:
            return cls(address)
        fingerprint = hashlib.sha256(certificate_der).hexdigest()
        try:
            subject = x509.load_der_x509_certificate(certificate_der).subject
        except ValueError:
            return cls(address, NONE, fingerprint)
        units = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        return cls(address, subject.rfc4514_string(), fingerprint, verified and AGENT_UNIT in units)

    def audit(self, client: str = "") -> dict[str, str]:
        """The ``peer`` of an audit entry: address, subject and fingerprint, and the application a client
        names: as ``client`` from an agent, as ``claimed_client`` from anyone else."""
        entry = {"address": self.address, "subject": self.subject, "fingerprint": self.fingerprint}
        if client:
            entry["client" if self.agent else "claimed_client"] = client
        return entry
