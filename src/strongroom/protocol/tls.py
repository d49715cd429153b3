"""TLS 1.3 contexts for nodes and clients: mutual TLS, always.

Nodes present a certificate chaining to the cluster's trust anchor; clients verify it against that anchor
only (not the system store). A node refuses, during the handshake, every client that presents no certificate
or one that does not chain to its client trust anchors (``CERT_REQUIRED``; OpenSSL also checks the
certificate is for client authentication, so a node's server certificate cannot log in as a client). Sessions
are never resumed: every connection presents its certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path


def server_context(cert_file: Path | str, key_file: Path | str,
                   client_cas: Iterable[Path | str | bytes]) -> ssl.SSLContext:
    """A TLS 1.3-only server context that requires a client certificate.

    Args:
        cert_file: PEM certificate chain of the node (leaf first).
        key_file: PEM private key of the node.
        client_cas: the client trust anchors: PEM files, or PEM text as bytes; at least one.

    Raises:
        ValueError: no client trust anchor.
        OSError, ssl.SSLError: unreadable or mismatched certificate and key, or an unreadable CA.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert_file), str(key_file))
    anchors = list(client_cas)
    if not anchors:
        raise ValueError("a node needs at least one client CA: every client presents a certificate")
    for anchor in anchors:
        trust_clients(ctx, anchor)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # no session tickets: a resumed session skips the certificate check, and would outlive a client CA's
    # removal or a certificate's expiry
    ctx.num_tickets = 0
    return ctx


def trust_clients(ctx: ssl.SSLContext, anchor: Path | str | bytes) -> None:
    """Add client trust anchors to a server context (new connections only): a PEM file, or PEM text as bytes.

    Raises:
        OSError, ssl.SSLError: an unreadable file or text that holds no certificate.
    """
    if isinstance(anchor, bytes):
        ctx.load_verify_locations(cadata=anchor.decode("ascii", "replace"))
    else:
        ctx.load_verify_locations(cafile=str(anchor))


def client_context(trust_anchor_file: Path | str, *, cert_file: Path | str | None = None,
                   key_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS 1.3-only client context trusting only ``trust_anchor_file`` (PEM), with the client certificate
    and key every node requires. Host names are checked against the node certificate's SAN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(trust_anchor_file))
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx
