"""The client agent's PKCS#11 face: serves p11-kit's RPC protocol on a unix socket, one application per
connection, each with the SDK's connections to the cluster (balancing, failover, re-login).

Applications load p11-kit's ``p11-kit-client.so`` with ``P11_KIT_SERVER_ADDRESS=unix:path=SOCKET`` (or a
``remote:`` line in a p11-kit module file). The agent offers one slot (id 1) whose token is the cluster.
Calls it does not implement are answered ``CKR_FUNCTION_NOT_SUPPORTED``; a body it cannot parse is answered
``CKR_ARGUMENTS_BAD``; the connection stays up either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client.balancer import Balancer
from ..client.config import ClientConfig, ConfigFile
from ..client.connection import ConnectionLost, quiet_lost_connections
from ..errors import MechanismInvalid, NodeBehind, NoQuorum, SlotIdInvalid, StrongroomError
from ..mechanism_params import Mechanism
from ..protocol.tls import client_context
from ..vocab import CKR
from . import mechanism_codec, wire
from .functions import HANDLERS, SLOT_ID
from .multipart import Operations

log = logging.getLogger("strongroom.pkcs11")

MAX_PROTOCOL_VERSION = 2
MAX_IN_FLIGHT = 64  # requests of one application answered at once
MAX_HELD_BYTES = 16 << 20  # bytes of requests and answers of one application in the agent at once
MAX_UNSENT_BYTES = 1 << 20  # answers queued for an application past this wait for it to read them
RANDOM_ANSWER_BYTES = 1 << 20  # the most one C_GenerateRandom answers (the HSM's limit)
_GENERATE_RANDOM = (64).to_bytes(4, "big")  # a request body's start: its call id


def _rv(exc: StrongroomError) -> int:
    """The ``CK_RV`` an application sees: the cluster's own retryable codes, and no HSM reachable, become
    ``CKR_DEVICE_ERROR`` (an application reads ``CKR_DEVICE_REMOVED`` as the token gone for good)."""
    if isinstance(exc, (NoQuorum, NodeBehind, ConnectionLost)):
        return int(CKR.DEVICE_ERROR)
    return int(exc.ckr)


def _peer_process(writer: asyncio.StreamWriter) -> str:
    """``pid=… uid=… gid=…`` of the application at the other end of a unix socket (``SO_PEERCRED``)."""
    sock = writer.get_extra_info("socket")
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except (AttributeError, OSError):
        return ""
    return f"pid={pid} uid={uid} gid={gid}"


class _Allowance:
    """What one application may have in the agent at once: ``MAX_IN_FLIGHT`` requests and ``MAX_HELD_BYTES``
    of requests and their answers (a request alone always goes, whatever its size). Only the connection's
    reading waits for it."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.freed: asyncio.Future[None] | None = None

    @staticmethod
    def weight(body: bytes) -> int:
        """Bytes a request may hold: itself, and its answer twice (the value and the frame that carries it) as
        large as the request (``C_GenerateRandom``: the most it answers)."""
        answer = RANDOM_ANSWER_BYTES if body[:4] == _GENERATE_RANDOM else len(body)
        return len(body) + 2 * answer

    async def take(self, weight: int) -> None:
        while self.count and (self.count >= MAX_IN_FLIGHT or self.bytes + weight > MAX_HELD_BYTES):
            if self.freed is None or self.freed.done():
                self.freed = asyncio.get_running_loop().create_future()
            await self.freed
        self.count += 1
        self.bytes += weight

    def give_back(self, weight: int) -> None:
        self.count -= 1
        self.bytes -= weight
        if self.freed is not None and not self.freed.done():
            self.freed.set_result(None)


class _Application:
    """One p11-kit client connection."""

    def __init__(self, agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        self.version = 0
        self.balancer: Balancer | None = None
        self.process = _peer_process(writer)
        self.allowance = _Allowance()
        self.outbox: list[bytes] = []
        self.unsent = 0  # bytes in the outbox
        self.connecting = asyncio.Lock()
        self.ops = Operations(self.call, self.open_sessions)
        self.token_label = agent.token_label
        self.mechanisms: dict[int, tuple[int, int, int]] | None = None

    async def serve(self) -> None:
        """Answer the application's requests until it hangs up.

        The threads of an application share its one connection and send their requests without waiting for
        each other (p11-kit's client matches each answer to its request by the frame's code), so requests run
        concurrently within the application's :class:`_Allowance`, and each answer is written when ready.
        """
        running: dict[Any, Any] = {}  # coroutines of requests waiting, and what each waits for
        try:
            offered = await self.reader.readexactly(1)
            self.version = min(offered[0], MAX_PROTOCOL_VERSION)
            self.writer.write(bytes((self.version,)))
            frames = wire.FrameReader()
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                for code, _options, body in frames.feed(data):
                    if body is None:  # over the size limit: skipped, answered, the stream stays in step
                        self.send(wire.encode_frame(code, wire.error_body(int(CKR.ARGUMENTS_BAD))))
                        continue
                    weight = _Allowance.weight(body)
                    await self.allowance.take(weight)
                    if self.reader.at_eof() or self.writer.is_closing():
                        return  # the application hung up: what it sent last would be done for no one
                    self.start(self.answer(code, body, weight), running)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError):
            return
        finally:
            for coro, awaited in list(running.items()):
                if awaited is not None:
                    awaited.cancel()  # nothing will take its result or error: the request is over
                coro.close()
            if self.balancer is not None:
                self.agent.balancers.discard(self.balancer)
                self.balancer.close()
            self.writer.close()

    def start(self, coro: Any, running: dict[Any, Any]) -> None:
        """Run a request's coroutine without a task: at once, in this turn of the loop, then again each time
        what it awaits is done. Most requests finish at once (an init the agent answers) or after one wait for
        the HSM's answer, so a task per request would only add its cost and a turn of the loop. While it
        waits the coroutine is in ``running`` with what it awaits; the application leaving cancels that and
        closes the coroutine."""
        try:
            awaited = coro.send(None)
        except StopIteration:
            running.pop(coro, None)
            return
        except Exception:
            running.pop(coro, None)
            log.exception("a request failed")
            return
        running[coro] = awaited
        if awaited is None:  # a bare yield asks for one turn of the loop
            asyncio.get_running_loop().call_soon(self._resume, coro, running, None)
            return
        awaited._asyncio_future_blocking = False  # what a task does with a future it waits on
        awaited.add_done_callback(lambda done: self._resume(coro, running, done))

    def _resume(self, coro: Any, running: dict[Any, Any], done: Any) -> None:
        if coro.cr_frame is None:  # closed while it waited (the application left)
            if done is not None and not done.cancelled():
                done.exception()  # taken, so that asyncio does not report it as never retrieved
            return
        self.start(coro, running)

    async def answer(self, code: int, body: bytes, weight: int) -> None:
        """Handle one request and queue its answer. While the application is behind on reading (over
        ``MAX_UNSENT_BYTES`` queued), the request keeps its part of the allowance until its answer has left,
        so an application that sends and never reads holds at most ``MAX_HELD_BYTES`` (and one request) in
        the agent."""
        try:
            reply = await self.handle(body)
            self.send(wire.encode_frame(code, reply))
            if max(self.unsent, self.writer.transport.get_write_buffer_size()) > MAX_UNSENT_BYTES:
                self.flush()  # the application is behind on reading: this answer's allowance waits for it
                await self.writer.drain()
        except ConnectionError:
            pass
        finally:
            self.allowance.give_back(weight)

    def send(self, frame: bytes) -> None:
        """Queue an answer; the answers that are ready in one turn of the loop leave in one write."""
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(frame)
        self.unsent += len(frame)

    def flush(self) -> None:
        frames, self.outbox, self.unsent = self.outbox, [], 0
        if frames and not self.writer.is_closing():
            self.writer.write(b"".join(frames))

    async def handle(self, body: bytes) -> bytes:
        try:
            reader = wire.Reader(body)
            call_id = reader.u32()
            sent = reader.signature()
            handler = HANDLERS.get(call_id)
            if handler is None:
                return wire.error_body(int(CKR.FUNCTION_NOT_SUPPORTED))
            call, run = handler
            if call.request != sent:
                raise wire.WireError(f"call {call_id} with the signature {sent!r:.40}")
            out = await run(self, reader)
            reader.done()
            return wire.reply_body(call_id, call.reply, out)
        except wire.WireError as exc:
            log.info("unparseable request: %s", exc)
            return wire.error_body(int(CKR.ARGUMENTS_BAD))
        except StrongroomError as exc:
            return wire.error_body(_rv(exc))
        except Exception:
            log.exception("a request failed")
            return wire.error_body(int(CKR.GENERAL_ERROR))

    # ----------------------------------------------------------------- helpers
    async def cluster(self) -> Balancer:
        if self.balancer is None:
            async with self.connecting:
                if self.balancer is None:
                    balancer = Balancer(self.agent.current_config(), self.agent.ssl_context, client=self.process)
                    try:
                        await balancer.start()
                    except BaseException:  # the application left (cancelled) or no HSM answered
                        balancer.close()
                        raise
                    self.balancer = balancer
                    self.agent.balancers.add(balancer)
        return self.balancer

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        value = await (await self.cluster()).call(name, *args, **kwargs)
        self.ops.observe(name, args)
        return value

    async def mechanism_infos(self) -> dict[int, tuple[int, int, int]]:
        """The cluster's mechanisms as an HSM reports them (``mechanism_list``, asked once per application):
        ``CKM`` → (min key size, max key size, ``CKF`` flags)."""
        if self.mechanisms is None:
            rows = await self.call("mechanism_list")
            self.mechanisms = {int(m): (int(lo), int(hi), int(flags)) for m, lo, hi, flags in rows}
        return self.mechanisms

    def open_sessions(self) -> Any:
        return self.balancer.sessions if self.balancer is not None else ()

    def mechanism(self, reader: wire.Reader) -> Mechanism:
        """A mechanism argument; the NULL mechanism is refused (only ``C_*Init`` takes it, see ``init``)."""
        mechanism = mechanism_codec.read(reader, self.version)
        if mechanism is None:
            raise MechanismInvalid("this call needs a mechanism")
        return mechanism

    @staticmethod
    def slot(reader: wire.Reader) -> None:
        if reader.u64() != SLOT_ID:
            raise SlotIdInvalid("Strongroom has one slot")


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"no group {group!r} on this host") from None


class Agent:
    """Serves p11-kit RPC on a unix socket for every application of this host.

    Args:
        config: the SDK configuration of the cluster.
        socket_path: where to listen; created with mode 0600.
        token_label: the token's label (the cluster id if omitted).
        group: a group name or id that may use the socket too (mode 0660).

    Raises:
        ValueError: for an unknown group.
    """

    def __init__(self, config: ClientConfig, socket_path: Path, token_label: str | None = None,
                 group: str | None = None) -> None:
        self.config = config
        # a configuration read from a file is followed: HSMs added there are used, by running applications'
        # connections too; HSMs it no longer names and the cluster no longer lists are dropped
        self._followed = ConfigFile(config.source, config.certificate) if config.source is not None else None
        self.socket_path = Path(socket_path)
        self.token_label = token_label
        self.gid = _group_id(group) if group is not None else None
        self.balancers: set[Balancer] = set()  # of the connected applications
        self.ssl_context = client_context(config.trust_anchor, cert_file=config.client_cert,
                                          key_file=config.client_key)

    def current_config(self) -> ClientConfig:
        """The configuration a new application's connections start from: the configured HSMs and every member
        the running applications' connections discovered since (so a new application finds the cluster even when
        the configured HSMs are down); members the configuration file no longer names stay only while a running
        application's connections still list them."""
        fresh = self._followed.changed() if self._followed is not None else None
        if fresh is not None:
            self.config = dataclasses.replace(self.config, endpoints=fresh.endpoints)
        known = {node.endpoint for balancer in self.balancers for node in balancer.nodes if not node.retired}
        endpoints = tuple(dict.fromkeys([*self.config.endpoints, *sorted(known)]))
        return dataclasses.replace(self.config, endpoints=endpoints)

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(quiet_lost_connections)
        self.socket_path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._connected, path=str(self.socket_path))
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.socket_path, -1, self.gid)
            os.chmod(self.socket_path, 0o660)
        if ready is not None:
            ready()
        async with server:
            await server.serve_forever()

    async def serve_until_signalled(self, ready: Callable[[], None] | None = None) -> None:
        """:meth:`serve` until the process gets SIGTERM or SIGINT.

        Raises:
            OSError: the socket cannot be made (its folder does not exist, no permission).
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.ensure_future(self.serve(ready))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if serving.done():
            serving.result()  # it could not serve (a socket folder that does not exist): the error goes up
            return
        serving.cancel()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _Application(self, reader, writer).serve()
        except asyncio.CancelledError:
            pass  # the agent is stopping; ending quietly keeps asyncio from logging the connection as failed
