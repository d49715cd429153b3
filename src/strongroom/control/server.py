"""The control plane's HTTP server: uvicorn over TLS 1.2 or later, with a bound on how long a client may take to
send a request's headers.

uvicorn bounds idle keep-alive connections but not a request whose headers never end: a client sending one byte
a minute would hold its connection forever. :func:`guarded_h11` closes a connection whose request headers are not
complete ``header_timeout_s`` seconds after it opened or after its previous answer (the body has its own bound in
:mod:`strongroom.control.api`). Plain HTTP is served only when asked for, and only on a loopback address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ArgumentsBad

HEADER_TIMEOUT_S = 10.0


class NotLoopback(ArgumentsBad):
    """``CKR_ARGUMENTS_BAD``: plain HTTP asked for on an address that is not loopback."""


@dataclass(frozen=True)
class Tls:
    """The server's certificate chain and key (PEM files)."""

    certificate: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")  # TLS 1.2 suites with forward secrecy and AEAD only
        ctx.load_cert_chain(str(self.certificate), str(self.key))
        return ctx


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def guarded_h11(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete within
    ``header_timeout_s`` seconds."""

    class GuardedH11(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
            self.header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _headers_late(self) -> None:
            # h11 leaves IDLE only once a request's headers are complete
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
            super().connection_lost(exc)

    return GuardedH11


def config(app: Any, *, tls: Tls | None, host: str, header_timeout_s: float = HEADER_TIMEOUT_S) -> uvicorn.Config:
    """The uvicorn configuration serving ``app``: HTTPS with ``tls``, or plain HTTP (``tls`` None) on a loopback
    ``host`` only.

    Raises:
        NotLoopback: plain HTTP on another address.
    """
    if tls is None and not is_loopback(host):
        raise NotLoopback(f"plain HTTP is served on a loopback address only, not on {host!r:.60}; give the "
                          "control plane a TLS certificate")
    options: dict[str, Any] = {}
    if tls is not None:
        options["ssl_context_factory"] = lambda _config, _default: tls.context()
    return uvicorn.Config(app, log_level="warning", lifespan="off", http=guarded_h11(header_timeout_s),
                          timeout_keep_alive=5, **options)
