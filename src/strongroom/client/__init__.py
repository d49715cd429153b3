"""The Python SDK: connect to a Strongroom cluster and use keys through sessions.

``connect(config)`` gives the synchronous API, ``await connect_async(config)`` the asyncio one; both return a
:class:`Cluster`. ``config`` is a :class:`ClientConfig`, a path to its JSON file, or a mapping like the file.
Errors are :mod:`strongroom.errors` classes, one per ``CKR_*``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..errors import ArgumentsBad
from ..protocol.tls import client_context
from .config import ClientConfig
from .connection import ConnectionLost, LoopThread, NodeConnection, SyncConnection, open_connection
from .objects import Cluster, Key, Session, _Runner, mechanism, template

__all__ = ["ClientConfig", "Cluster", "ConnectionLost", "Key", "Session", "connect", "connect_async",
           "mechanism", "template"]


def _config(config: ClientConfig | Path | str | dict[str, Any]) -> ClientConfig:
    if isinstance(config, ClientConfig):
        return config
    if isinstance(config, dict):
        return ClientConfig.from_dict(config)
    return ClientConfig.from_file(config)


def _ssl(config: ClientConfig) -> Any:
    try:
        return client_context(config.trust_anchor, cert_file=config.client_cert, key_file=config.client_key)
    except (OSError, ValueError) as exc:
        raise ArgumentsBad(f"cannot load the trust anchor or client certificate: {exc}") from None


def connect(config: ClientConfig | Path | str | dict[str, Any]) -> Cluster:
    """Connect to the cluster's first reachable node; returns the synchronous :class:`Cluster`.

    Raises:
        ConnectionLost: ``CKR_DEVICE_REMOVED`` when no node can be reached or trusted.
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a bad configuration.
    """
    config = _config(config)
    ctx = _ssl(config)
    loop_thread = LoopThread()
    error: Exception | None = None
    for endpoint in config.endpoints:
        try:
            conn = loop_thread.run(open_connection(endpoint, ctx, server_name=config.server_name,
                                                   timeout_s=config.connect_timeout_s))
            break
        except ConnectionLost as exc:
            error = exc
    else:
        loop_thread.stop()
        raise error  # type: ignore[misc]
    sync = SyncConnection(loop_thread, conn, config.timeout_s)

    def close() -> None:
        sync.close()
        loop_thread.stop()

    return Cluster(_Runner(sync.call, is_async=False), close, conn.node)


async def connect_async(config: ClientConfig | Path | str | dict[str, Any]) -> Cluster:
    """Connect to the cluster's first reachable node; returns a :class:`Cluster` whose methods are awaitable.

    Raises:
        ConnectionLost: ``CKR_DEVICE_REMOVED`` when no node can be reached or trusted.
    """
    config = _config(config)
    ctx = _ssl(config)
    error: Exception | None = None
    for endpoint in config.endpoints:
        try:
            conn: NodeConnection = await open_connection(endpoint, ctx, server_name=config.server_name,
                                                         timeout_s=config.connect_timeout_s)
            break
        except ConnectionLost as exc:
            error = exc
    else:
        raise error  # type: ignore[misc]

    call = functools.partial(conn.call, timeout_s=config.timeout_s)

    async def close() -> None:
        conn.close()

    return Cluster(_Runner(call, is_async=True), close, conn.node)
