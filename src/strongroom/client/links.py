"""Connections to every HSM of a cluster and their upkeep: connect at start (one answering is enough), reconnect
in the background with back-off, learn members from the cluster every ``DISCOVERY_INTERVAL_S`` seconds, follow
the configuration file, drop HSMs that left. :class:`~strongroom.client.balancer.Balancer` routes requests over
them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import ssl
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from ..errors import StrongroomError
from .config import ClientConfig, ConfigFile
from .connection import ConnectionLost, open_connection, result_of
from .members import Member, least_loaded

# One attempt of a request that may be sent again waits at most this long for its HSM (seconds).
ATTEMPT_TIMEOUT_S = 5.0
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 0.1, 2.0
# How often the client asks for the cluster's members, and looks at its configuration file (seconds).
DISCOVERY_INTERVAL_S = 5.0
CONFIG_CHECK_S = 1.0


class Links:
    """One connection to every known HSM of a cluster.

    Args:
        config: the client configuration (its ``endpoints`` are the HSMs; a file it was read from is followed).
        ssl_context: from :func:`strongroom.protocol.tls.client_context`.

    Attributes:
        nodes: the known HSMs, connected or not.
        index: the highest Raft log index any answer carried (read-your-writes: every request asks for it).
        node_info: the ``hello`` of the first HSM connected.
    """

    def __init__(self, config: ClientConfig, ssl_context: ssl.SSLContext) -> None:
        self.config = config
        self.config_file = ConfigFile(config.source, config.certificate) if config.source is not None else None
        self.ssl_context = ssl_context
        self.nodes = [Member(endpoint) for endpoint in dict.fromkeys(config.endpoints)]
        self.configured = frozenset(config.endpoints)
        self.index = 0
        self.node_info: dict[str, Any] = {}
        self._turn = itertools.count()
        self._closed = False
        self._discovery: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # background connects, cancelled on close

    async def start(self) -> None:
        """Connect to every HSM; succeed when at least one answers (the others keep being retried).

        Raises:
            ConnectionLost: ``CKR_DEVICE_REMOVED`` when none can be reached or trusted.
        """
        # Returns as soon as one HSM answers; the others keep connecting in the background.
        attempts = {asyncio.ensure_future(self._connect(node)): node for node in self.nodes}
        self._tasks.update(attempts)
        pending = set(attempts)
        errors: list[BaseException] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._tasks.discard(task)
                error = task.exception()
                if error is not None:
                    errors.append(error)
                    self._reconnect_later(attempts[task])
            if any(n.up for n in self.nodes):
                break
        if not any(n.up for n in self.nodes):
            self.close()  # and wait for the reconnections it cancels: none is left pending on a loop that ends
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            raise errors[0]
        for task in pending:
            task.add_done_callback(functools.partial(self._settled, node=attempts[task]))
        await self._discover()
        self._discovery = asyncio.get_running_loop().create_task(self._keep_discovering())

    def _settled(self, task: asyncio.Task[None], node: Member) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._reconnect_later(node)

    async def _discover(self) -> None:
        """Learn members' endpoints from any HSM and connect to the ones not known yet."""
        node = self._pick(set())
        if node is None:
            return
        try:
            status = await self._send(node, "cluster_status", (), {}, b"", ATTEMPT_TIMEOUT_S)
        except StrongroomError:
            return
        members = {e for e in status.get("endpoints", []) if isinstance(e, str)}
        if not members:
            return
        self._add(sorted(members))
        # HSMs that left the cluster are dropped, unless the configuration names them
        for gone in [n for n in self.nodes if n.endpoint not in members and n.endpoint not in self.configured]:
            self.nodes.remove(gone)
            gone.retired = True
            if gone.conn is not None:
                gone.conn.close()

    async def _keep_discovering(self) -> None:
        last = time.monotonic()
        while not self._closed:
            await asyncio.sleep(CONFIG_CHECK_S)
            if self._reread_config() or time.monotonic() - last >= DISCOVERY_INTERVAL_S:
                last = time.monotonic()
                await self._discover()

    def _reread_config(self) -> bool:
        """Take the configuration file's HSMs when it changed (True): connect to those it adds; those it no longer
        names stay while the cluster lists them (the caller discovers next)."""
        fresh = self.config_file.changed() if self.config_file is not None else None
        if fresh is not None:
            self.configured = frozenset(fresh.endpoints)
            self._add(fresh.endpoints)
        return fresh is not None

    def _add(self, endpoints: Iterable[str]) -> None:  # connect to the HSMs not known yet
        known = {n.endpoint for n in self.nodes}
        for endpoint in dict.fromkeys(e for e in endpoints if e not in known):
            self.nodes.append(member := Member(endpoint))
            self._reconnect_later(member)

    async def _connect(self, node: Member) -> None:
        conn = await open_connection(node.endpoint, self.ssl_context, server_name=self.config.server_name,
                                     timeout_s=self.config.connect_timeout_s)
        if self._closed:
            conn.close()
            return
        node.conn, node.logged_in = conn, False
        node.generation += 1
        self.node_info = self.node_info or conn.node
        conn.closed.add_done_callback(lambda _: self._reconnect_later(node))

    def _reconnect_later(self, node: Member) -> None:
        if self._closed or node.reconnecting or node.retired:
            return
        node.reconnecting = True
        task = asyncio.get_running_loop().create_task(self._reconnect(node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, node: Member) -> None:
        delay = _RECONNECT_MIN_S
        try:
            while not self._closed and not node.up and not node.retired:
                try:
                    await self._connect(node)
                except StrongroomError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RECONNECT_MAX_S)
        finally:
            node.reconnecting = False

    def close(self) -> None:
        self._closed = True
        if self._discovery is not None:
            self._discovery.cancel()
        for task in list(self._tasks):
            task.cancel()
        for node in self.nodes:
            if node.conn is not None:
                node.conn.close()

    def _pick(self, avoid: AbstractSet[Member]) -> Member | None:
        return least_loaded(self.nodes, avoid, next(self._turn))

    # ----------------------------------------------------------------- sending
    async def _send(self, node: Member, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], key: bytes,
                    timeout_s: float) -> Any:
        conn = node.conn
        if conn is None or not conn.is_open:
            raise ConnectionLost(f"{node.endpoint} is not connected")
        node.outstanding += 1
        try:
            response = await conn.request(name, args, kwargs, timeout_s=timeout_s, after=self.index, key=key)
        finally:
            node.outstanding -= 1
        if response.index > self.index:
            self.index = response.index
        return result_of(response)

