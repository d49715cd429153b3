"""TLS 1.3 contexts for nodes and clients.

Nodes present a certificate chaining to the cluster's trust anchor; clients verify it against that anchor
only (not the system store). A node configured to require client certificates refuses any client without one
from its client CA (mutual TLS).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path | str, key_file: Path | str, *, client_ca_file: Path | str | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A TLS 1.3-only server context.

    Args:
        cert_file: PEM certificate chain of the node (leaf first).
        key_file: PEM private key of the node.
        client_ca_file: PEM CA certificates that client certificates must chain to.
        require_client_cert: refuse clients without a valid certificate (needs ``client_ca_file``).

    Raises:
        ValueError: when client certificates are required without a client CA.
        OSError, ssl.SSLError: unreadable or mismatched certificate and key.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if require_client_cert and client_ca_file is None:
        raise ValueError("requiring client certificates needs a client CA file")
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(trust_anchor_file: Path | str, *, cert_file: Path | str | None = None,
                   key_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS 1.3-only client context trusting only ``trust_anchor_file`` (PEM), optionally with a client
    certificate and key for mutual TLS. Host names are checked against the node certificate's SAN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(trust_anchor_file))
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx
