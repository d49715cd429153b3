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
from pathlib import Path
from typing import Any, Awaitable, Callable

from cryptography.hazmat.primitives import hashes

from .. import crypto
from ..client.balancer import Balancer
from ..client.connection import ConnectionLost, quiet_lost_connections
from ..client.config import ClientConfig
from ..crypto.params import Mechanism
from ..errors import (
    MechanismInvalid,
    NodeBehind,
    NoQuorum,
    PinLenRange,
    RandomSeedNotSupported,
    SlotIdInvalid,
    StrongroomError,
)
from ..protocol.tls import client_context
from ..vocab import CKF, CKR
from . import attributes, mechanisms, wire
from .operations import Operations, sized_output

log = logging.getLogger("strongroom.pkcs11")

SLOT_ID = 1
MAX_PROTOCOL_VERSION = 2
MAX_IN_FLIGHT = 64  # requests of one application answered at once
MAX_HELD_BYTES = 16 << 20  # bytes of requests and answers of one application in the agent at once
MAX_UNSENT_BYTES = 1 << 20  # answers queued for an application past this wait for it to read them
RANDOM_ANSWER_BYTES = 1 << 20  # the most one C_GenerateRandom answers (the HSM's limit)
_GENERATE_RANDOM = (64).to_bytes(4, "big")  # a request body's start: its call id
MAX_PIN_BYTES = 64  # ulMaxPinLen of the token: a user name (31), ':' and a password (32)
# The request signature of every call the agent answers (p11-kit's table); another one is refused.
_REQUEST_SIGNATURES = {
    1: "ayyay", 2: "", 3: "", 4: "yfu", 5: "u", 6: "u", 7: "ufu", 8: "uu", 10: "uu", 11: "u", 12: "u", 13: "u",
    18: "uuay", 19: "u", 20: "uaA", 21: "uuaA", 22: "uu", 24: "uufA", 25: "uuaA", 26: "uaA", 27: "ufu", 28: "u",
    29: "uMu", 30: "uayfy", 31: "uayfy", 32: "ufy", 33: "uMu", 34: "uayfy", 35: "uayfy", 36: "ufy", 37: "uM",
    38: "uayfy", 39: "uay", 41: "ufy", 42: "uMu", 43: "uayfy", 44: "uay", 45: "ufy", 48: "uMu", 49: "uayay",
    50: "uay", 51: "uay", 58: "uMaA", 59: "uMaAaA", 60: "uMuufy", 61: "uMuayaA", 62: "uMuaA", 63: "uay", 64: "ufy",
    66: "uuayay", 67: "uu", 89: "uMuaA",
}
HANDSHAKE = b"PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1"
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
        except Exception:  # noqa: BLE001 - answer() answers every error; this is a defect in the agent
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
            handler = _CALLS.get(call_id)
            if handler is None:
                return wire.error_body(int(CKR.FUNCTION_NOT_SUPPORTED))
            if _REQUEST_SIGNATURES.get(call_id, sent) != sent:
                raise wire.WireError(f"call {call_id} with the signature {sent!r:.40}")
            signature, run = handler
            out = await run(self, reader)
            reader.done()
            return wire.reply_body(call_id, signature, out)
        except wire.WireError as exc:
            log.info("unparseable request: %s", exc)
            return wire.error_body(int(CKR.ARGUMENTS_BAD))
        except StrongroomError as exc:
            return wire.error_body(_rv(exc))
        except Exception:  # noqa: BLE001 - a defect costs the application one call, never a missing answer
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

    def open_sessions(self) -> Any:
        return self.balancer.sessions if self.balancer is not None else ()

    def mechanism(self, reader: wire.Reader) -> Mechanism:
        """A mechanism argument; the NULL mechanism is refused (only ``C_*Init`` takes it, see ``init``)."""
        mechanism = mechanisms.read(reader, self.version)
        if mechanism is None:
            raise MechanismInvalid("this call needs a mechanism")
        return mechanism

    @staticmethod
    def slot(reader: wire.Reader) -> None:
        if reader.u64() != SLOT_ID:
            raise SlotIdInvalid("Strongroom has one slot")


Handler = Callable[[_Application, wire.Reader], Awaitable[wire.Writer | None]]
_CALLS: dict[int, tuple[str, Handler]] = {}


def _call(call_id: int, reply_signature: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _CALLS[call_id] = (reply_signature, fn)
        return fn

    return register


@_call(1, "")
async def _initialize(app: _Application, r: wire.Reader) -> None:
    handshake, _ = r.byte_array()
    if handshake != HANDSHAKE:
        raise wire.WireError("not a p11-kit client handshake")
    r.byte()
    r.byte_array()
    return None


@_call(2, "")
async def _finalize(app: _Application, r: wire.Reader) -> None:
    return None


@_call(3, "vsusv")
async def _get_info(app: _Application, r: wire.Reader) -> wire.Writer:
    return (wire.Writer().version(3, 0).padded("Strongroom", 32).u64(0)
            .padded("Strongroom PKCS#11 agent", 32).version(0, 1))


@_call(4, "au")
async def _get_slot_list(app: _Application, r: wire.Reader) -> wire.Writer:
    r.byte()
    capacity = r.buffer_size()
    if capacity is None:
        return wire.Writer().ulong_array(None, 1)
    return wire.Writer().ulong_array([SLOT_ID])


@_call(5, "ssuvv")
async def _get_slot_info(app: _Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    return (wire.Writer().padded("Strongroom cluster", 64).padded("Strongroom", 32)
            .u64(int(CKF.TOKEN_PRESENT | CKF.HW_SLOT)).version(0, 1).version(0, 1))


def _token_serial(cluster_id: str) -> str:
    """The token's serial number: the cluster's, the same whichever HSM answers (16 hex digits)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cluster_id.encode())
    return digest.finalize().hex()[:16]


@_call(6, "ssssuuuuuuuuuuuvvs")
async def _get_token_info(app: _Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    info = await app.call("hsm_info")
    flags = CKF.RNG | CKF.LOGIN_REQUIRED | CKF.USER_PIN_INITIALIZED | CKF.TOKEN_INITIALIZED
    unavailable = 0xFFFFFFFFFFFFFFFF
    w = (wire.Writer().padded(app.agent.token_label or info["cluster_id"], 32).padded("Strongroom", 32)
         .padded("Strongroom HSM", 16).padded(_token_serial(info["cluster_id"]), 16).u64(int(flags)))
    for value in (unavailable, unavailable, unavailable, unavailable, 64, 9, info["max_token_objects"],
                  info["free_token_objects"], info["max_token_objects"], info["free_token_objects"]):
        w.u64(value)
    return w.version(0, 1).version(0, 1).padded("", 16)


@_call(7, "au")
async def _get_mechanism_list(app: _Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    capacity = r.buffer_size()
    offered = mechanisms.forwardable(app.version)
    if capacity is None or capacity < len(offered):
        return wire.Writer().ulong_array(None, len(offered))
    return wire.Writer().ulong_array(offered)


@_call(8, "uuu")
async def _get_mechanism_info(app: _Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    kind = r.u64()
    if kind not in mechanisms.forwardable(app.version):
        raise MechanismInvalid(f"mechanism 0x{kind:x} is not offered")
    info = crypto.info(kind)
    return wire.Writer().u64(info.min_key_size).u64(info.max_key_size).u64(int(info.flags))


@_call(10, "u")
async def _open_session(app: _Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    return wire.Writer().u64(await app.call("open_session", r.u64()))


for _plain_id, _plain_name in ((11, "close_session"), (19, "logout"), (28, "find_objects_final")):
    async def _session_only(app: _Application, r: wire.Reader, name: str = _plain_name) -> None:
        await app.call(name, r.u64())

    _CALLS[_plain_id] = ("", _session_only)


@_call(12, "")
async def _close_all_sessions(app: _Application, r: wire.Reader) -> None:
    app.slot(r)
    await app.call("close_all_sessions")


@_call(13, "uuuu")
async def _get_session_info(app: _Application, r: wire.Reader) -> wire.Writer:
    info = await app.call("session_info", r.u64())
    return wire.Writer().u64(SLOT_ID).u64(info["state"]).u64(info["flags"]).u64(info["device_error"])


@_call(18, "")
async def _login(app: _Application, r: wire.Reader) -> None:
    session, user_type = r.u64(), r.u64()
    pin, _ = r.byte_array()
    await app.call("login", session, user_type, _pin(pin or b""))


def _pin(pin: bytes) -> str:
    if len(pin) > MAX_PIN_BYTES:
        raise PinLenRange(f"a PIN is at most {MAX_PIN_BYTES} bytes (username:password)")
    return pin.decode("utf-8", "replace")


@_call(66, "")
async def _login_user(app: _Application, r: wire.Reader) -> None:
    """``C_LoginUser`` (PKCS#11 3.0): the user name apart from the password."""
    session, user_type = r.u64(), r.u64()
    password, _ = r.byte_array()
    username, _ = r.byte_array()
    await app.call("login", session, user_type, _pin(b"%s:%s" % (username or b"", password or b"")))


@_call(64, "ay")
async def _generate_random(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    length = r.buffer_size() or 0
    return wire.Writer().byte_array(await app.call("generate_random", session, length))


for _init_id, _kind in ((29, "encrypt"), (33, "decrypt"), (42, "sign"), (48, "verify")):
    async def _init(app: _Application, r: wire.Reader, kind: str = _kind) -> None:
        session = r.u64()
        mechanism = mechanisms.read(r, app.version)
        await app.ops.init(kind, session, mechanism, r.u64())

    _CALLS[_init_id] = ("", _init)

for _op_id, _kind in ((30, "encrypt"), (34, "decrypt"), (43, "sign"), (38, "digest")):
    async def _single(app: _Application, r: wire.Reader, kind: str = _kind) -> wire.Writer:
        session = r.u64()
        data, _ = r.byte_array()
        return await app.ops.single(kind, session, data or b"", r.buffer_size())

    _CALLS[_op_id] = ("ay", _single)

for _update_id, _kind in ((31, "encrypt"), (35, "decrypt")):
    async def _cipher_update(app: _Application, r: wire.Reader, kind: str = _kind) -> wire.Writer | None:
        session = r.u64()
        data, _ = r.byte_array()
        return await app.ops.update(kind, session, data or b"", r.buffer_size(), output=True)

    _CALLS[_update_id] = ("ay", _cipher_update)

for _final_id, _kind in ((32, "encrypt"), (36, "decrypt"), (41, "digest"), (45, "sign")):
    async def _final(app: _Application, r: wire.Reader, kind: str = _kind) -> wire.Writer:
        session = r.u64()
        return await app.ops.final(kind, session, r.buffer_size())

    _CALLS[_final_id] = ("ay", _final)

for _update_id, _kind in ((39, "digest"), (44, "sign"), (50, "verify")):
    async def _update(app: _Application, r: wire.Reader, kind: str = _kind) -> None:
        session = r.u64()
        data, _ = r.byte_array()
        await app.ops.update(kind, session, data or b"")

    _CALLS[_update_id] = ("", _update)


@_call(51, "")
async def _verify_final(app: _Application, r: wire.Reader) -> None:
    session = r.u64()
    signature, _ = r.byte_array()
    await app.ops.verify_final(session, signature or b"")


@_call(37, "")
async def _digest_init(app: _Application, r: wire.Reader) -> None:
    session = r.u64()
    await app.ops.init("digest", session, mechanisms.read(r, app.version), None)


@_call(67, "")
async def _session_cancel(app: _Application, r: wire.Reader) -> None:
    session, flags = r.u64(), r.u64()
    await app.ops.cancel(session, flags)


@_call(25, "")
async def _set_attribute_value(app: _Application, r: wire.Reader) -> None:
    session, handle = r.u64(), r.u64()
    await app.call("set_attribute_value", session, handle, attributes.to_node(r.template()))


@_call(60, "ay")
async def _wrap_key(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    mechanism = app.mechanism(r)
    wrapping, key = r.u64(), r.u64()
    answer, _ = await sized_output(app.call, "wrap_key", (session, mechanism, wrapping, key), r.buffer_size())
    return answer


@_call(61, "u")
async def _unwrap_key(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    mechanism = app.mechanism(r)
    unwrapping = r.u64()
    wrapped, _ = r.byte_array()
    template = attributes.to_node(r.template())
    return wire.Writer().u64(await app.call("unwrap_key", session, mechanism, unwrapping, wrapped or b"", template))


async def _derived(app: _Application, r: wire.Reader) -> tuple[Mechanism, int]:
    session = r.u64()
    mechanism = app.mechanism(r)
    base = r.u64()
    template = attributes.to_node(r.template())
    return mechanism, await app.call("derive_key", session, mechanism, base, template)


@_call(62, "u")
async def _derive_key(app: _Application, r: wire.Reader) -> wire.Writer:
    _, handle = await _derived(app, r)
    return wire.Writer().u64(handle)


@_call(89, "uPu")
async def _derive_key2(app: _Application, r: wire.Reader) -> wire.Writer:
    """``C_DeriveKey`` of protocol version 2: the result code, the mechanism parameter as updated (none of
    Strongroom's derivations updates it), the key."""
    mechanism, handle = await _derived(app, r)
    w = wire.Writer().u64(0)
    if not mechanisms.has_no_parameter(app.version, mechanism.mechanism):
        w.byte(0)
    return w.u64(handle)


@_call(63, "")
async def _seed_random(app: _Application, r: wire.Reader) -> None:
    r.u64()
    r.byte_array()
    raise RandomSeedNotSupported("the HSM's generator takes no seed")


@_call(49, "")
async def _verify(app: _Application, r: wire.Reader) -> None:
    session = r.u64()
    data, _ = r.byte_array()
    signature, _ = r.byte_array()
    await app.ops.verify(session, data or b"", signature or b"")


@_call(20, "u")
async def _create_object(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    return wire.Writer().u64(await app.call("create_object", session, attributes.to_node(r.template())))


@_call(21, "u")
async def _copy_object(app: _Application, r: wire.Reader) -> wire.Writer:
    session, handle = r.u64(), r.u64()
    return wire.Writer().u64(await app.call("copy_object", session, handle, attributes.to_node(r.template())))


@_call(22, "")
async def _destroy_object(app: _Application, r: wire.Reader) -> None:
    await app.call("destroy_object", r.u64(), r.u64())


@_call(24, "aAu")
async def _get_attribute_value(app: _Application, r: wire.Reader) -> wire.Writer:
    session, handle = r.u64(), r.u64()
    wanted = r.attribute_buffers()
    results = await app.call("get_attribute_value", session, handle, [cka for cka, _ in wanted])
    rv = 0
    w = wire.Writer().u32(len(wanted))
    for (cka, capacity), (code, value) in zip(wanted, results):
        if code:
            rv = rv or code
            w.attribute(cka, None)
            continue
        encoded = attributes.to_wire(cka, value)
        if capacity and attributes.wire_length(cka, encoded) > capacity:
            rv = rv or int(CKR.BUFFER_TOO_SMALL)
            w.attribute(cka, None)
            continue
        w.attribute(cka, encoded)
    return w.u64(rv)


@_call(26, "")
async def _find_objects_init(app: _Application, r: wire.Reader) -> None:
    session = r.u64()
    await app.call("find_objects_init", session, attributes.to_node(r.template()))


@_call(27, "au")
async def _find_objects(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    capacity = r.buffer_size()
    return wire.Writer().ulong_array(await app.call("find_objects", session, capacity or 0))


@_call(58, "u")
async def _generate_key(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    mechanism = app.mechanism(r)
    handle = await app.call("generate_key", session, mechanism, attributes.to_node(r.template()))
    return wire.Writer().u64(handle)


@_call(59, "uu")
async def _generate_key_pair(app: _Application, r: wire.Reader) -> wire.Writer:
    session = r.u64()
    mechanism = app.mechanism(r)
    public, private = attributes.to_node(r.template()), attributes.to_node(r.template())
    pub, priv = await app.call("generate_key_pair", session, mechanism, public, private)
    return wire.Writer().u64(pub).u64(priv)


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
        self.socket_path = Path(socket_path)
        self.token_label = token_label
        self.gid = _group_id(group) if group is not None else None
        self.balancers: set[Balancer] = set()  # of the connected applications
        self.ssl_context = client_context(config.trust_anchor, cert_file=config.client_cert,
                                          key_file=config.client_key)

    def current_config(self) -> ClientConfig:
        """The configuration a new application's connections start from: the configured HSMs and every member
        the running applications' connections discovered since (so a new application finds the cluster even when
        the configured HSMs are down)."""
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
        """:meth:`serve` until the process gets SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.ensure_future(self.serve(ready))
        await stop.wait()
        serving.cancel()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _Application(self, reader, writer).serve()
        except asyncio.CancelledError:
            pass  # the agent is stopping; ending quietly keeps asyncio from logging the connection as failed
