"""One pipelined TLS connection to a node, usable from asyncio and, through a private loop thread, from
ordinary threads.

Requests carry ids; any number may be in flight and answers are matched by id as they arrive. A lost
connection fails every request in flight with a retryable ``DeviceRemoved`` (``CKR_DEVICE_REMOVED``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import ssl
import threading
import time
from typing import Any

import msgspec

from ..errors import ArgumentsBad, BufferTooSmall, DeviceRemoved, FunctionNotSupported, StrongroomError, error_for
from ..protocol import (
    CALL_TYPES,
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameReader,
    Hello,
    HelloReply,
    Request,
    Response,
    ServerMessage,
    encode_frame,
)

_log = logging.getLogger(__name__)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ServerMessage)
_SWEEP_S = 0.5

# What a request's answer is handed to: a future of the connection's loop (asyncio callers) or a thread's future
# (the synchronous API hands its request straight to the loop).
Waiter = asyncio.Future[Response] | concurrent.futures.Future[Response]


class ConnectionLost(DeviceRemoved):
    """The connection to the node closed; requests in flight did not complete. Retryable on another node."""

    retryable = True


def result_of(response: Response) -> Any:
    """The value of a response, or raise the error it carries (the class registered for its ``CKR_*``)."""
    if response.ckr == 0:
        return response.value
    if isinstance(response.value, int) and response.ckr == BufferTooSmall.ckr:
        err: StrongroomError = BufferTooSmall(response.value)
    else:
        err = error_for(response.ckr, response.message)
    raise err


def request_frame(request_id: int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, after: int = 0,
                  key: bytes = b"") -> bytes:
    """Encode one call as a frame (``after``: the client's causal log index; ``key``: a write's request key).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown call or arguments of the wrong type.
    """
    try:
        call = CALL_TYPES[name](*args, **kwargs)
        body = _encoder.encode(Request(request_id, call, after, key))
    except KeyError:
        raise ArgumentsBad(f"no call named {name}") from None
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise ArgumentsBad(f"{name}: {exc}") from None
    if len(body) > DEFAULT_MAX_FRAME_BYTES:  # the HSM would close the connection on it: refuse it here
        raise ArgumentsBad(f"{name}: the request is {len(body)} bytes; an HSM takes at most "
                           f"{DEFAULT_MAX_FRAME_BYTES}")
    return encode_frame(body)


class NodeConnection(asyncio.Protocol):
    """The protocol side of one connection; create with :func:`open_connection`."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, Waiter] = {}
        self.deadlines: dict[int, float] = {}
        self.ids = itertools.count(1)
        # the node's hello reply, or the error it answered the hello with (a Response with id 0)
        self.hello: asyncio.Future[HelloReply | Response] | None = None
        self.loop = asyncio.get_event_loop()
        self.closed = self.loop.create_future()
        self.node: dict[str, Any] = {}
        self.outgoing: list[bytes] = []
        self.sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        """Fail requests whose deadline passed (one timer per connection, not one per request)."""
        now = time.monotonic()
        for request_id, deadline in list(self.deadlines.items()):
            if deadline < now:
                del self.deadlines[request_id]
                waiter = self.pending.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(ConnectionLost("no answer from the node in time"))
        if self.is_open:
            self.sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.reader.feed(data)
        except StrongroomError:
            self.close()
            return
        for body in bodies:
            try:
                message = _decoder.decode(body)
            except msgspec.DecodeError:
                self.close()
                return
            if isinstance(message, HelloReply):
                if self.hello is not None and not self.hello.done():
                    self.hello.set_result(message)
                continue
            waiter = self.pending.pop(message.id, None)
            if waiter is not None:
                self.deadlines.pop(message.id, None)
                if not waiter.done():
                    waiter.set_result(message)
            elif message.id == 0 and self.hello is not None and not self.hello.done():
                self.hello.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        pending, self.pending = self.pending, {}
        self.deadlines.clear()
        lost = ConnectionLost(f"the connection to the node closed{': ' + str(exc) if exc else ''}")
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(lost)
        if self.hello is not None and not self.hello.done():  # closed before the node said anything
            self.hello.set_exception(ConnectionLost(
                f"the node closed the connection before its hello{': ' + str(exc) if exc else ''}: it refuses a "
                "client certificate that its owner CA (or a client CA an admin registered) did not issue, or it "
                "is stopping; check client_cert in the configuration"))
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, frame: bytes, request_id: int, waiter: Waiter, timeout_s: float | None = None) -> None:
        """Queue a request frame and register its waiter (call on the loop thread). Frames queued in one
        turn of the loop leave in one write."""
        if not self.is_open:
            waiter.set_exception(ConnectionLost("the connection to the node is closed"))
            return
        self.pending[request_id] = waiter
        if timeout_s is not None:
            self.deadlines[request_id] = time.monotonic() + timeout_s
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(frame)

    def _flush(self) -> None:
        data, self.outgoing = b"".join(self.outgoing), []
        transport = self.transport
        if data and transport is not None and not transport.is_closing():  # is_open
            transport.write(data)

    async def call(self, name: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Send one call and await its value (raises the error the node answered).

        Raises:
            ConnectionLost: ``CKR_DEVICE_REMOVED`` (retryable) when the connection drops or no answer comes
                within ``timeout_s`` seconds.
        """
        return result_of(await self.request(name, args, kwargs, timeout_s=timeout_s))

    async def request(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                      timeout_s: float | None = None, after: int = 0, key: bytes = b"") -> Response:
        """Send one call and await the node's :class:`Response` (value or error, and its log index)."""
        request_id = next(self.ids)
        frame = request_frame(request_id, name, args, kwargs, after=after, key=key)
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self.send(frame, request_id, waiter, timeout_s)
        return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_connection(endpoint: str, ssl_context: ssl.SSLContext, *, server_name: str | None = None,
                          timeout_s: float = 10.0, client: str = "strongroom-sdk") -> NodeConnection:
    """Connect to a node, complete TLS and the hello exchange.

    Args:
        endpoint: ``HOST:PORT``.
        ssl_context: from :func:`strongroom.protocol.tls.client_context`.
        server_name: the name the node certificate must carry; the endpoint's host if ``None``.
        timeout_s: for connecting, the handshake and the hello (seconds).

    Raises:
        ConnectionLost: ``CKR_DEVICE_REMOVED`` (retryable) when the node cannot be reached, the handshake
            fails (for example the node's certificate does not chain to the trust anchor) or the node closes.
        FunctionNotSupported: ``CKR_FUNCTION_NOT_SUPPORTED`` when the node speaks no common protocol version.
    """
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    loop = asyncio.get_running_loop()
    try:
        transport, conn = await asyncio.wait_for(loop.create_connection(
            NodeConnection, host, int(port), ssl=ssl_context, server_hostname=server_name or host,
            ssl_handshake_timeout=timeout_s), timeout_s)
    except (TimeoutError, OSError, ssl.SSLError) as exc:
        raise ConnectionLost(f"cannot connect to {endpoint}: {exc or type(exc).__name__}") from exc
    conn.hello = loop.create_future()
    transport.write(encode_frame(_encoder.encode(Hello([PROTOCOL_VERSION], [], client))))
    try:
        reply = await asyncio.wait_for(conn.hello, timeout_s)
    except TimeoutError:
        conn.close()
        raise ConnectionLost(f"{endpoint} did not answer the hello") from None
    except BaseException:  # cancelled (the application left while it connected): the connection goes too
        conn.close()
        raise
    if isinstance(reply, Response):
        conn.close()
        raise FunctionNotSupported(f"{endpoint}: {reply.message}")
    conn.node = reply.node
    return conn


def quiet_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An event loop exception handler: a connection cut mid-record (an HSM that died, an application that
    left) is reported in one line, its requests failing as ``ConnectionLost``; anything else as asyncio
    reports it."""
    exc = context.get("exception")
    if context.get("message", "").startswith("Fatal error on SSL") or isinstance(exc, ConnectionError):
        _log.info("a connection ended abruptly: %s", exc or context.get("message"))
        return
    loop.default_exception_handler(context)


class LoopThread:
    """A private event loop on a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.set_exception_handler(quiet_lost_connections)
        self.thread = threading.Thread(target=self.loop.run_forever, name="strongroom-client", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout_s: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it and close it (its sockets and descriptors go)."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # let closing transports finish

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(5)
            except Exception:  # noqa: S110 - stopping anyway
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()
