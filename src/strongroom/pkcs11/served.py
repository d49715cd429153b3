"""One application the client agent serves: its p11-kit connection, its requests (concurrent, within an
allowance), its SDK balancer to the cluster, and its hand-over to a successor agent (:mod:`.handover`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections import deque
from typing import Any, Protocol

import msgspec

from ..client.balancer import Balancer
from ..client.config import ClientConfig
from ..client.connection import ConnectionLost
from ..client.members import check_session_flags
from ..errors import (
    DeviceError,
    MechanismInvalid,
    NodeBehind,
    NoQuorum,
    SessionHandleInvalid,
    SlotIdInvalid,
    StrongroomError,
)
from ..mechanism_params import Mechanism
from ..vocab import CKR
from . import handover, mechanism_codec, wire
from .functions import HANDLERS, SLOT_ID
from .multipart import Operations
from .rpc_calls import UNSERVED, RpcCall


class Host(Protocol):
    """What an application needs of the agent that serves it."""

    config: ClientConfig
    token_label: str | None
    holding: bool
    balancers: set[Balancer]
    ssl_context: Any

    def current_config(self) -> ClientConfig:
        """The configuration a new balancer starts from."""


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


class ServedApplication:
    """One p11-kit client connection."""

    def __init__(self, agent: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 carried: handover.ApplicationState | None = None) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        self.version = -1  # until the application offers one
        self.frames = wire.FrameReader()
        self.pending: deque[tuple[int, bytes, bytes | None]] = deque()  # read, not started yet
        self.running: dict[Any, Any] = {}  # coroutines of requests waiting, and what each waits for
        self.task: asyncio.Task[None] | None = None
        self.releasing = False  # being handed to a successor agent
        self.carried = carried  # an earlier agent's state of this application, until its balancer starts
        self.balancer: Balancer | None = None
        self.process = _peer_process(writer)
        self.allowance = _Allowance()
        self.outbox: list[bytes] = []
        self.unsent = 0  # bytes in the outbox
        self.connecting = asyncio.Lock()
        self.ops = Operations(self.call, self.open_sessions)
        self.token_label = agent.token_label
        self.tried: tuple[int, str] | None = None  # the last login attempt's (CKU user type, user name)
        self.mechanisms: dict[int, tuple[int, int, int]] | None = None
        if carried is not None:
            self.version = carried.version
            self.pending.extend(carried.frames)
            self.frames.buffer += carried.buffer
            self.frames.skipping = carried.skipping
            self.ops.resume([(o.session, o.kind, o.mechanism, o.key, o.data, o.output) for o in carried.operations])
            self.tried = carried.tried

    async def serve(self) -> None:
        """Answer the application's requests until it hangs up (or the application is handed over).

        The threads of an application share its one connection and send their requests without waiting for
        each other (p11-kit's client matches each answer to its request by the frame's code), so requests run
        concurrently within the application's :class:`_Allowance`, and each answer is written when ready.
        """
        running = self.running
        try:
            if self.version < 0:  # the version byte may have come with an earlier agent's state
                offered = bytes(self.frames.buffer[:1]) or await self.reader.readexactly(1)
                del self.frames.buffer[:1]
                self.version = min(offered[0], MAX_PROTOCOL_VERSION)
                self.writer.write(bytes((self.version,)))
            data = b""
            while True:
                self.pending.extend(self.frames.feed(data))
                while self.pending:
                    code, _options, body = self.pending[0]
                    if body is None:  # over the size limit: skipped, answered, the stream stays in step
                        self.pending.popleft()
                        self.send(wire.encode_frame(code, wire.error_body(int(CKR.ARGUMENTS_BAD))))
                        continue
                    weight = _Allowance.weight(body)
                    await self.allowance.take(weight)
                    if self.reader.at_eof() or self.writer.is_closing():
                        return  # the application hung up: what it sent last would be done for no one
                    self.pending.popleft()
                    self.start(self.answer(code, body, weight), running)
                await self.writer.drain()
                data = await self.reader.read(65536)
                if not data:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError):
            return
        finally:
            if not self.releasing:
                self._end(running)

    def _end(self, running: dict[Any, Any]) -> None:
        for coro, awaited in list(running.items()):
            if awaited is not None:
                awaited.cancel()  # nothing will take its result or error: the request is over
            coro.close()
        if self.balancer is not None:
            self.agent.balancers.discard(self.balancer)
            self.balancer.close()
        self.writer.close()

    async def release(self) -> tuple[handover.ApplicationState, int]:
        """Stop reading at a frame boundary, let the requests under way finish and their answers leave, and give
        up the connection: its state and a duplicate of its descriptor, for a successor agent (or this one, if
        the handover fails)."""
        self.releasing = True
        transport: Any = self.writer.transport  # a read-write transport: pause its reading
        if not transport.is_closing():
            transport.pause_reading()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.agent.config.timeout_s + 5
        while self.running and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.running:
            log.warning("%d requests of %s still run at the handover: their answers are lost",
                        len(self.running), self.process)
        self.flush()
        try:
            await asyncio.wait_for(self.writer.drain(), 5)
        except (TimeoutError, ConnectionError):
            log.warning("%s did not read its answers before the handover", self.process)
        sock = self.writer.get_extra_info("socket")
        if sock is None or self.writer.is_closing():
            self._end({})
            raise ConnectionResetError("the application left before the handover")
        state = self._carry_over()
        fd = os.dup(sock.fileno())
        self._end({})
        return state, fd

    def _carry_over(self) -> handover.ApplicationState:
        held, lost = self.ops.carry_over()
        balancer, carried = self.balancer, self.carried
        if balancer is not None:
            next_session, index = balancer.carry_over()
            sessions = [(vs.vid, vs.flags) for vs in balancer.sessions.values()]
            credentials = balancer.credentials
            if balancer.home is not None:  # its session objects end with this agent's HSM connections
                lost.update(vid for vid, _ in sessions)
            lost.update(vs.vid for vs in balancer.sessions.values()
                        if vs.pinned is not None and not any(h[0] == vs.vid for h in held))
        elif carried is not None:
            next_session, index, credentials = carried.next_session, carried.index, carried.credentials
            sessions, lost = carried.sessions, lost | set(carried.lost)
        else:
            next_session, index, credentials, sessions = 1, 0, None, []
        kept = [(vid, flags) for vid, flags in sessions if vid not in lost]
        unread = bytes(getattr(self.reader, "_buffer", b""))  # read off the socket, not yet taken by serve()
        return handover.ApplicationState(
            version=self.version, frames=list(self.pending), buffer=bytes(self.frames.buffer) + unread,
            skipping=self.frames.skipping, sessions=kept, lost=sorted(lost),
            credentials=credentials if kept else None, next_session=next_session, index=index,
            operations=[handover.Operation(s, kind, m, key, data, out) for s, kind, m, key, data, out in held
                        if s not in lost], tried=self.tried)

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
        handler: tuple[RpcCall, Any] | None = None
        try:
            reader = wire.Reader(body)
            call_id = reader.u32()
            sent = reader.signature()
            handler = HANDLERS.get(call_id)
            if handler is None:
                return self._unserved(call_id, sent, reader)
            call, run = handler
            if call.request != sent:
                raise wire.WireError(f"call {call_id} with the signature {sent!r:.40}")
            out = await run(self, reader)
            reader.done()
            return wire.reply_body(call_id, call.reply, out)
        except wire.WireError as exc:
            log.info("a request refused CKR_ARGUMENTS_BAD: unparseable: %s (%s)", exc, self.process)
            return wire.error_body(int(CKR.ARGUMENTS_BAD))
        except StrongroomError as exc:
            rv = _rv(exc)
            name = handler[0].function if handler is not None else "a request"
            shown = exc.ckr_name if rv == int(exc.ckr) else f"CKR_DEVICE_ERROR ({exc.ckr_name})"
            log.info("%s refused %s: %s (%s)", name, shown, exc.message, self.process)
            return wire.error_body(rv)
        except Exception:
            log.exception("a request failed")
            return wire.error_body(int(CKR.GENERAL_ERROR))

    def _unserved(self, call_id: int, sent: str, reader: wire.Reader) -> bytes:
        """The answer to a call the agent does not serve: ``CKR_FUNCTION_NOT_SUPPORTED``, after the checks of
        its first argument that every function makes before it (an unknown session is
        ``CKR_SESSION_HANDLE_INVALID``, an unknown slot ``CKR_SLOT_ID_INVALID``).

        Raises:
            wire.WireError: a known call with another request signature.
            SessionHandleInvalid, SlotIdInvalid: as above.
        """
        known = UNSERVED.get(call_id)
        if known is not None:
            call, first = known
            if call.request != sent:
                raise wire.WireError(f"call {call_id} with the signature {sent!r:.40}")
            if first == "session":
                self.known_session(reader.u64())
            elif first == "slot":
                self.slot(reader)
        name = known[0].function if known is not None else f"p11-kit call {call_id}"
        log.info("%s refused CKR_FUNCTION_NOT_SUPPORTED: the agent does not serve it (%s)", name, self.process)
        return wire.error_body(int(CKR.FUNCTION_NOT_SUPPORTED))

    def known_session(self, handle: int) -> None:
        """Raises :class:`SessionHandleInvalid` unless ``handle`` is one of the application's open sessions."""
        if handle not in self.open_sessions():
            raise SessionHandleInvalid(f"session {handle} is not open in this application")

    # ----------------------------------------------------------------- helpers
    async def cluster(self) -> Balancer:
        if self.balancer is None:
            async with self.connecting:
                if self.balancer is None:
                    balancer = Balancer(self.agent.current_config(), self.agent.ssl_context, client=self.process)
                    if self.carried is not None:
                        carried = self.carried
                        balancer.resume(carried.sessions, carried.credentials, carried.next_session, carried.index)
                    try:
                        await balancer.start()
                    except BaseException:  # the application left (cancelled) or no HSM answered
                        balancer.close()
                        raise
                    self.balancer, self.carried = balancer, None
                    self.agent.balancers.add(balancer)
        return self.balancer

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.agent.holding:
            if name == "open_session":
                return self._open_session_held(int(args[0]))
            raise DeviceError("the agent is stopping; the next one takes this application over")
        value = await (await self.cluster()).call(name, *args, **kwargs)
        self.ops.observe(name, args)
        return value

    def _open_session_held(self, flags: int) -> int:
        """``C_OpenSession`` while the agent holds the application for its successor: answered here, never refused
        for want of the cluster (libp11 0.4.12, OpenSSL's engine, waits for ever after a failed
        ``C_OpenSession``), and handed over with the other sessions; its calls then answer ``CKR_DEVICE_ERROR``
        until the next agent serves them."""
        if self.balancer is not None:
            return self.balancer.open_session_here(flags)
        state = self.carried or handover.ApplicationState(
            version=self.version, frames=[], buffer=b"", skipping=0, sessions=[], lost=[], credentials=None,
            next_session=1, index=0, operations=[])
        check_session_flags(flags, state.credentials)
        handle = state.next_session
        self.carried = msgspec.structs.replace(state, sessions=[*state.sessions, (handle, flags)],
                                               next_session=handle + 1)
        return handle

    async def mechanism_infos(self) -> dict[int, tuple[int, int, int]]:
        """The cluster's mechanisms as an HSM reports them (``mechanism_list``, asked once per application):
        ``CKM`` → (min key size, max key size, ``CKF`` flags)."""
        if self.mechanisms is None:
            rows = await self.call("mechanism_list")
            self.mechanisms = {int(m): (int(lo), int(hi), int(flags)) for m, lo, hi, flags in rows}
        return self.mechanisms

    def open_sessions(self) -> Any:
        if self.balancer is not None:
            return self.balancer.sessions
        return [vid for vid, _ in self.carried.sessions] if self.carried is not None else ()

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


