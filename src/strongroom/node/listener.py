"""The node's network face: TLS 1.3 connections carrying framed requests to one Application each.

Each connection is one application (PKCS#11 login state is per application). Requests are pipelined: cheap
calls (AES, HMAC, ECDSA, digests, reads) run on the event loop as they arrive; calls that block (RSA private-key
operations, which release the GIL, key generation, password hashing and every store write) run in a thread
pool shared fairly between connections (:mod:`.workers`: one connection's flood gets no more than its turn),
and their answers go out as they complete. A malformed frame is answered with an error; an oversized
one, a frame before the hello, or a stalled partial frame closes that connection only.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import ssl
import threading
import time
from typing import Any

import msgspec

from ..errors import ArgumentsBad, NodeBehind, StrongroomError
from ..protocol import (
    CALL_SPECS,
    CAPABILITIES,
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ClientMessage,
    FrameReader,
    FrameTooLarge,
    Hello,
    HelloReply,
    Request,
    Response,
    call_arguments,
    encode_frame,
)
from ..trust import fleet
from ..vocab import CKA, CKR
from .application import Application, call
from .boundary import HSM
from .commit import RequestContext
from .peer import PeerIdentity
from .sessions import OpKind
from .workers import Workers

log = logging.getLogger(__name__)

# How long a request waits for this node to apply the client's latest write before NodeBehind (seconds).
CATCH_UP_WAIT_S = 3.0
MAX_REQUEST_KEY_BYTES = 32
_INDEXED = (int(CKA.LABEL), int(CKA.ID))

_FLUSH_EVERY = 8
# A connection may have this many thread-pool calls queued; past it the node stops reading from it until
# answers drain, so one client cannot queue unbounded work or starve the others.
MAX_QUEUED_PER_CONNECTION = 64
# Threads for writes, which mostly wait for the log to commit them; both pools serve connections fairly.
WRITE_THREADS = 64
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClientMessage)


class CatchUp:
    """Requests waiting for this node to apply a log index, released from the event loop as entries apply."""

    def __init__(self, hsm: HSM) -> None:
        self.hsm = hsm
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: list[tuple[int, int, Any]] = []  # heap of (index, order, callback)
        self.order = 0
        self.scheduled = False
        self.lock = threading.Lock()
        hsm.machine.on_advance(self._advanced)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def wait(self, index: int, callback: Any) -> None:
        """Call ``callback(True)`` once ``index`` is applied, or ``callback(False)`` after CATCH_UP_WAIT_S
        (on the loop)."""
        loop = self.loop
        if loop is None:
            raise RuntimeError("CatchUp.attach(loop) comes first")
        self.order += 1
        entry = (index, self.order, callback)
        with self.lock:
            heapq.heappush(self.waiting, entry)
        loop.call_later(CATCH_UP_WAIT_S, self._expire, entry)
        self._release()  # it may have applied meanwhile

    def _advanced(self, index: int) -> None:  # the log's thread
        with self.lock:
            if not self.waiting or self.waiting[0][0] > index or self.scheduled or self.loop is None:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the loop closed
            pass

    def _release(self) -> None:
        applied = self.hsm.machine.applied
        ready = []
        with self.lock:
            self.scheduled = False
            while self.waiting and self.waiting[0][0] <= applied:
                ready.append(heapq.heappop(self.waiting))
        for _, _, callback in ready:
            callback(True)

    def _expire(self, entry: tuple[int, int, Any]) -> None:
        with self.lock:
            try:
                self.waiting.remove(entry)
            except ValueError:
                return  # released already
            heapq.heapify(self.waiting)  # a removal from the middle breaks the heap order
        entry[2](False)


class NodeServer:
    """Serves one :class:`HSM` over TLS.

    Args:
        hsm: the node's boundary.
        ssl_context: from :func:`strongroom.protocol.tls.server_context`.
        max_frame_bytes: the largest frame body accepted.
        idle_timeout_s: a connection with no request in flight and no traffic for this long is closed.
        read_timeout_s: a frame must arrive whole within this long once it started.
        workers: threads for blocking calls.
    """

    def __init__(self, hsm: HSM, ssl_context: ssl.SSLContext | None, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, idle_timeout_s: float = 600.0,
                 read_timeout_s: float = 30.0, workers: int = 4) -> None:
        self.hsm = hsm
        self.ssl_context = ssl_context
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.read_timeout_s = read_timeout_s
        self.pool = Workers(workers, "hsm")
        self.write_pool = Workers(WRITE_THREADS, "hsm-write")
        self.catch_up = CatchUp(hsm)
        self.connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen on ``host:port`` (port 0 picks a free one; read it from the returned server's sockets)."""
        loop = asyncio.get_running_loop()
        self.catch_up.attach(loop)
        return await loop.create_server(lambda: _Connection(self), host, port, ssl=self.ssl_context,
                                        ssl_handshake_timeout=self.read_timeout_s)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        self.pool.shutdown()
        self.write_pool.shutdown()


class _Connection(asyncio.Protocol):
    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self.reader = FrameReader(server.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.app: Application | None = None
        self.hello_done = False
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self.partial_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_event_loop()
        self.outgoing: list[bytes] = []
        self.batching = False
        self.done: list[tuple[int, Any]] = []
        self.done_lock = threading.Lock()
        self.reading_paused = False
        self.writing_paused = False
        self.lost = False

    # ----------------------------------------------------------------- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        # a certificate the handshake verified against the client trust anchors (never one merely presented)
        verified = self.server.ssl_context is not None and self.server.ssl_context.verify_mode != ssl.CERT_NONE
        self.app = Application(self.server.hsm,
                               PeerIdentity.of_connection(transport.get_extra_info("peername"), der, verified))
        identity = self.server.hsm.identity
        if der and identity is not None:
            self.app.appliance_certificate = fleet.is_appliance(identity.fleet_ca, der)
        self.server.connections.add(self)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        app, self.app = self.app, None
        if app is not None and app.sessions:
            try:
                self.server.pool.submit(self, _quietly, app.close_all_sessions)
            except RuntimeError:  # the node is stopping: close in place
                _quietly(app.close_all_sessions)

    def pause_writing(self) -> None:
        # the client is not reading its answers: stop taking requests until it does
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        should_pause = self.writing_paused or self.in_flight >= MAX_QUEUED_PER_CONNECTION
        if should_pause and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        elif not should_pause and self.reading_paused:
            self.transport.resume_reading()
            self.reading_paused = False

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            bodies = self.reader.feed(data)
        except FrameTooLarge as exc:
            self._send(Response(0, int(CKR.ARGUMENTS_BAD), None, exc.message))
            self.close()
            return
        if not self.reader.pending_bytes:
            self.partial_since = None
        elif self.partial_since is None or bodies:
            self.partial_since = self.last_activity  # a frame is timed from its first byte
        self.batching = True
        try:
            for body in bodies:
                if self.transport is None or self.transport.is_closing():
                    return
                self._handle(body)
        finally:
            self.batching = False
            self._flush()

    # ----------------------------------------------------------------- requests
    def _handle(self, body: bytes) -> None:
        try:
            message = _decoder.decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            log.info("a request refused CKR_ARGUMENTS_BAD: malformed message: %s", exc)
            if self.app is not None:
                self.app.unreadable_call(body)
            self._send(Response(_request_id(body), int(CKR.ARGUMENTS_BAD), None, f"malformed message: {exc}"))
            return
        if isinstance(message, Hello):
            if self.hello_done:
                self._send(Response(0, int(CKR.ARGUMENTS_BAD), None, "hello was already exchanged"))
                return
            self._hello(message)
            return
        if not self.hello_done:
            self._send(Response(message.id, int(CKR.ARGUMENTS_BAD), None, "the hello exchange comes first"))
            self.close()
            return
        self._dispatch(message)

    def _hello(self, hello: Hello) -> None:
        if PROTOCOL_VERSION not in hello.versions:
            self._send(Response(0, int(CKR.FUNCTION_NOT_SUPPORTED), None,
                                f"this node speaks protocol version {PROTOCOL_VERSION}"))
            self.close()
            return
        self.hello_done = True
        info = self.server.hsm.info()
        self._send(HelloReply(PROTOCOL_VERSION, list(CAPABILITIES),
                              {"serial": info["serial"], "cluster_id": info["cluster_id"],
                               "firmware_version": info["firmware_version"], "time": time.time()},
                              self.server.max_frame_bytes, self.server.idle_timeout_s))

    def _dispatch(self, request: Request) -> None:
        app = self.app
        if app is None:
            return
        name, args, kwargs = call_arguments(request.call)
        if len(request.key) > MAX_REQUEST_KEY_BYTES or request.after < 0 or request.id < 0:
            self._send(_answer(max(request.id, 0), ArgumentsBad(
                f"a request id and a log index are not negative, a request key is at most {MAX_REQUEST_KEY_BYTES} "
                "bytes")))
            return
        if not CALL_SPECS[name].any_time:
            refusal = app.hsm.unavailable()
            if refusal is not None:
                self._send(_answer(request.id, refusal))
                return
        if request.after > app.hsm.machine.applied:
            # Read-your-writes: the request waits (on the loop, holding no thread) until this node has applied
            # the client's latest write, or answers NodeBehind after CATCH_UP_WAIT_S.
            self.in_flight += 1
            self.server.catch_up.wait(request.after, lambda applied: self._caught_up(request, applied))
            self._update_reading()
            return
        self._run(request, app, name, args, kwargs)

    def _caught_up(self, request: Request, applied: bool) -> None:
        self.in_flight -= 1
        self._update_reading()
        if self.lost or self.app is None:
            return
        if not applied:
            self._send(_answer(request.id, NodeBehind(f"this HSM has not applied log index {request.after} yet; "
                                                      "retry")))
            return
        name, args, kwargs = call_arguments(request.call)
        self._run(request, self.app, name, args, kwargs)

    def _run(self, request: Request, app: Application, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if self._blocking(app, name, args):
            self.in_flight += 1
            pool = self.server.write_pool if CALL_SPECS[name].write else self.server.pool
            pool.submit(self, self._work, request.id, app, name, args, kwargs, request.key)
            self._update_reading()
            return
        self._send(_answer(request.id, _invoke(app, name, args, kwargs)))

    def _work(self, request_id: int, app: Application, name: str, args: list[Any], kwargs: dict[str, Any],
              key: bytes = b"") -> None:
        """Run a blocking call on a pool thread and hand its answer to the loop; answers finishing close
        together cost the loop one wake-up."""
        if self.lost:
            return  # the client is gone: its queued work is dropped, not done
        value = _invoke(app, name, args, kwargs, key)
        with self.done_lock:
            wake = not self.done
            self.done.append((request_id, value))
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop closed while the node stopped
                pass

    def _deliver(self) -> None:
        with self.done_lock:
            finished, self.done = self.done, []
        self.in_flight -= len(finished)
        self.last_activity = time.monotonic()
        self.batching = True
        try:
            for request_id, value in finished:
                self._send(_answer(request_id, value))
        finally:
            self.batching = False
            self._flush()
        self._update_reading()

    def _blocking(self, app: Application, name: str, args: list[Any]) -> bool:
        """Whether a call should leave the event loop: see the module docstring. Writes wait for the log to
        commit them; they get their own threads so that waiting never starves crypto."""
        spec = CALL_SPECS[name]
        if spec.blocking:
            return True
        if spec.finds:
            # a find by label or id is an index lookup; any other find may scan every stored object
            return not any(cka in args[1] for cka in _INDEXED)
        try:
            if spec.once:
                return app.is_rsa_key(args[2])
            if spec.keyed_step:
                return app.active_key_is_rsa(args[0], OpKind(spec.operation))
        except (KeyError, IndexError, TypeError, StrongroomError):
            return False
        return False

    # ----------------------------------------------------------------- output and timers
    def _send(self, message: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            body = _encoder.encode(message)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            log.error("cannot encode the answer to %s: %s", getattr(message, "id", "?"), exc)
            body = _encoder.encode(Response(getattr(message, "id", 0), int(CKR.GENERAL_ERROR), None,
                                            "the answer could not be encoded"))
        # Answers produced together leave in one write: one TLS record and one system call for a burst (the
        # frames of one read, or thread-pool answers completing in one loop turn).
        if not self.outgoing and not self.batching:
            self.loop.call_soon(self._flush)
        self.outgoing.append(encode_frame(body))
        if len(self.outgoing) >= _FLUSH_EVERY:
            self._flush()  # let the client start on the first answers while the node works on the rest

    def _flush(self) -> None:
        data, self.outgoing = b"".join(self.outgoing), []
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()

    def _arm_timer(self) -> None:
        self.timer = self.loop.call_later(1.0, self._check_timeouts)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if self.partial_since is not None and now - self.partial_since > self.server.read_timeout_s:
            self.close()
            return
        if self.in_flight == 0 and now - self.last_activity > self.server.idle_timeout_s:
            self.close()
            return
        if self.transport is not None and not self.transport.is_closing():
            self._arm_timer()


class Committed:
    """A call's value with the log index its write committed at."""

    __slots__ = ("index", "value")

    def __init__(self, value: Any, index: int) -> None:
        self.value, self.index = value, index


def _invoke(app: Application, name: str, args: list[Any], kwargs: dict[str, Any], key: bytes = b"") -> Any:
    """Run a call with its request key; return its value (a :class:`Committed` when it wrote through the log)
    or the error that ended it (never raises)."""
    request = RequestContext(key)
    try:
        value = call(app, name, args, kwargs, request)
        return Committed(value, request.index) if request.index else value
    except StrongroomError as exc:
        if not exc.retryable:
            user = app.user.name if app.user is not None else "no login"
            spec = CALL_SPECS.get(name)
            log.info("%s refused %s: %s (%s)", spec.function or name if spec else name, exc.ckr_name, exc.message,
                     user)
        return exc
    except Exception as exc:  # a defect must cost one request, not the connection
        log.exception("call %s failed", name)
        return StrongroomError(f"internal error: {type(exc).__name__}")


_REQUEST_PREFIXES = (b"\x93\xa7request", b"\x94\xa7request", b"\x95\xa7request")
_ID_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def _request_id(body: bytes) -> int:
    """The id of a request whose call did not decode, read from the fixed start of a request frame (a
    3-element msgpack array: the tag, the id, the call), so the error reaches its caller; 0 if unreadable.
    The call itself may be nested too deeply to decode, so the id is not read through the decoder."""
    prefix_len = len(_REQUEST_PREFIXES[0])
    if not body.startswith(_REQUEST_PREFIXES) or len(body) <= prefix_len:
        return 0
    marker = body[prefix_len]
    if marker < 0x80:
        return marker
    width = _ID_WIDTHS.get(marker)
    start = prefix_len + 1
    if width is None or len(body) < start + width:
        return 0
    return int.from_bytes(body[start:start + width], "big")


def _answer(request_id: int, value: Any) -> Response:
    if isinstance(value, StrongroomError):
        return Response(request_id, int(value.ckr), getattr(value, "required", None), value.message)
    if isinstance(value, Committed):
        return Response(request_id, 0, value.value, "", value.index)
    return Response(request_id, 0, value)


def _quietly(fn: Any) -> None:
    try:
        fn()
    except StrongroomError:
        pass
