"""The Python SDK: connect to a Strongroom cluster and use keys through sessions.

``connect(config)`` gives the synchronous API, ``await connect_async(config)`` the asyncio one; both return a
:class:`Cluster` (typed ``Cluster[Sync]`` and ``Cluster[Async]``: the asyncio face's methods return awaitables).
``config`` is a :class:`ClientConfig`, a path to its JSON file, or a mapping like the file.
Errors are :mod:`strongroom.errors` classes, one per ``CKR_*``.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from ..errors import ArgumentsBad, StrongroomError
from ..protocol import Response
from ..protocol.tls import client_context

# The implementation's classes are reached through their modules, so that this package's namespace holds only
# what it exports.
from . import balancer as _balancer
from . import connection as _connection
from . import faces as _faces
from .builders import mechanism, template
from .cluster_objects import Cluster, Key, Session
from .config import ClientConfig
from .connection import ConnectionLost, request_frame, result_of
from .faces import Async, Sync

__all__ = ["Async", "ClientConfig", "Cluster", "ConnectionLost", "Key", "Session", "Sync", "connect",
           "connect_async", "mechanism", "template"]


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


def connect(config: ClientConfig | Path | str | dict[str, Any]) -> Cluster[Sync]:
    """Connect to every HSM of the cluster; returns the synchronous :class:`Cluster`.

    Requests go to the least busy HSM and fail over to another when one is lost (see
    :mod:`strongroom.client.balancer`). A configuration read from a file (a path, or
    :meth:`ClientConfig.from_file`) is followed: HSMs added to the file are used, HSMs removed from it (and from
    the cluster) are dropped, without reconnecting.

    Raises:
        ConnectionLost: ``CKR_DEVICE_REMOVED`` when no node can be reached or trusted.
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a bad configuration.
    """
    config = _config(config)
    ctx = _ssl(config)
    loop_thread = _connection.LoopThread()

    async def start() -> _balancer.Balancer:
        balancer = _balancer.Balancer(config, ctx)
        await balancer.start()
        return balancer

    try:
        balancer = loop_thread.run(start())
    except BaseException:
        loop_thread.stop()
        raise

    loop = loop_thread.loop

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        # Fast path: a call whose session is already open on the chosen HSM is encoded here and handed to
        # the loop in one step; anything else, and any retry, goes through the balancer on the loop.
        plan = balancer.plan(name, args)
        if plan is None:
            return loop_thread.run(balancer.call(name, *args, **kwargs))
        node, call_args, key, vs = plan
        conn = node.conn
        if conn is None:
            return loop_thread.run(balancer.call(name, *args, **kwargs))
        timeout_s = balancer.attempt_timeout(name)
        request_id = next(conn.ids)
        frame = request_frame(request_id, name, call_args, kwargs, after=balancer.index, key=key)
        waiter: concurrent.futures.Future[Response] = concurrent.futures.Future()
        node.started()
        try:
            loop.call_soon_threadsafe(conn.send, frame, request_id, waiter, timeout_s)
            response = waiter.result(timeout_s + 1.0)
        except (StrongroomError, concurrent.futures.TimeoutError):
            return loop_thread.run(balancer.call_keyed(name, args, kwargs, key or None))
        finally:
            node.ended()
        if response.index > balancer.index:
            balancer.index = response.index
        try:
            value = result_of(response)
        except StrongroomError as exc:
            if exc.retryable and balancer.fixed(vs) is None:
                return loop_thread.run(balancer.call_keyed(name, args, kwargs, key or None))
            balancer.settle_error(vs, name, exc)
            raise
        balancer.settle(vs, node, name, kwargs, value, args[1:])
        return value

    def close() -> None:
        if not loop_thread.loop.is_closed():
            loop_thread.loop.call_soon_threadsafe(balancer.close)
        loop_thread.stop()

    return Cluster(_faces._Runner(call, is_async=False), close, balancer.node_info)


async def connect_async(config: ClientConfig | Path | str | dict[str, Any]) -> Cluster[Async]:
    """Connect to every HSM of the cluster; returns a :class:`Cluster` whose methods are awaitable.

    Raises:
        ConnectionLost: ``CKR_DEVICE_REMOVED`` when no node can be reached or trusted.
    """
    config = _config(config)
    balancer = _balancer.Balancer(config, _ssl(config))
    await balancer.start()

    async def close() -> None:
        balancer.close()

    return Cluster(_faces._Runner(balancer.call, is_async=True), close, balancer.node_info)
