"""The replication channel: pysyncobj's messages over mutual TLS 1.3 (:class:`TLSTransport`).

pysyncobj's own TCP transport listens on every address, reads a 4-byte length (up to 2 GiB) and buffers the
whole frame before it authenticates it, then unpickles it. This one, plugged in through pysyncobj's
``transportClass``:

- listens only on the member's own replication address;
- completes a TLS 1.3 handshake in which both ends present a certificate the other verifies (``PeerTLS``)
  before a byte of payload is read; a peer that has not finished it within the connection timeout is dropped;
- frames each message as a 4-byte big-endian length and a pickle; a length over ``MAX_FRAME_BYTES`` closes the
  connection without reading the frame, and a frame is unpickled only from an authenticated peer, with no
  class allowed (Raft messages are dicts, lists, tuples, strings, bytes and numbers);
- takes no pysyncobj utility commands or read-only nodes: only members, each naming its address first.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import pickle
import socket
import ssl
from typing import Any

from pysyncobj.monotonic import monotonic as _monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import set_keepalive
from pysyncobj.transport import TCPTransport

from .peer_tls import PeerTLS

log = logging.getLogger("strongroom.replication")

# Raft messages carry at most two batches of entries (pysyncobj sends a batch up to the size that the log sets,
# 8 MiB, plus the entry that crossed it; larger entries travel in batch-size pieces) or one snapshot piece.
MAX_FRAME_BYTES = 32 * 1024 * 1024
MAX_UNAUTHENTICATED = 64  # incoming connections still in their handshake or not yet named
_RECV_CHUNK_BYTES = 256 * 1024
_RECV_BUDGET_BYTES = 4 * 1024 * 1024  # read per poll event, so one busy peer cannot hold the tick thread

DISCONNECTED, CONNECTING, CONNECTED = 0, 1, 2  # pysyncobj's CONNECTION_STATE values


class _PlainData(pickle.Unpickler):
    """Unpickles built-in data only: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a replication message holds no objects, got {module}.{name}")


class TLSConnection:
    """One replication connection (pysyncobj's ``TcpConnection`` interface) driven by the poller of the log's
    tick thread: a non-blocking socket and a TLS 1.3 session over memory buffers.

    ``state`` is CONNECTED only once the handshake is complete and the peer's certificate verified.
    """

    def __init__(self, poller: Any, tls: PeerTLS, *, timeout_s: float, keepalive: tuple[int, int, int] | None = None,
                 sock: socket.socket | None = None) -> None:
        self._poller = poller
        self._keepalive = keepalive
        self._tls = tls
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._fileno: int | None = None
        self._session: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._read_buffer = bytearray()
        self._write_buffer = bytearray()
        self._tcp_connected = False
        self.state = DISCONNECTED
        self.started = _monotonic()
        self._last_read = self.started
        self._on_message: Any = None
        self._on_connected: Any = None
        self._on_disconnected: Any = None
        if sock is not None:
            self._open(sock, server_side=True)
            self._tcp_connected = True

    # pysyncobj's TcpConnection interface
    def setOnConnectedCallback(self, callback: Any) -> None:
        self._on_connected = callback

    def setOnMessageReceivedCallback(self, callback: Any) -> None:
        self._on_message = callback

    def setOnDisconnectedCallback(self, callback: Any) -> None:
        self._on_disconnected = callback

    def fileno(self) -> int | None:
        return self._fileno

    def getSendBufferSize(self) -> int:
        return len(self._write_buffer)

    def connect(self, host: str | None, port: int) -> bool:
        if host is None:
            return False
        self.disconnect()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            return False
        self._tcp_connected = False
        self._open(sock, server_side=False)
        return True

    def _open(self, sock: socket.socket, *, server_side: bool) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._keepalive is not None:  # the kernel notices a vanished peer of an idle connection
            set_keepalive(sock, *self._keepalive)
        sock.setblocking(False)
        self._sock, self._fileno = sock, sock.fileno()
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = self._tls.server if server_side else self._tls.client
        self._session = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._read_buffer.clear()
        self._write_buffer.clear()
        self.state = CONNECTING
        self.started = self._last_read = _monotonic()
        self._poller.subscribe(self._fileno, self._on_event,
                               POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR)

    def send(self, message: Any) -> None:
        if self.state != CONNECTED or self._session is None:
            return
        if self.expired(_monotonic()):  # as pysyncobj's: a peer silent for the timeout is taken for dead
            self.disconnect()
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_FRAME_BYTES:
            log.error("a replication message of %d bytes exceeds the frame limit; connection closed", len(data))
            self.disconnect()
            return
        try:
            self._session.write(len(data).to_bytes(4, "big") + data)  # one TLS record per message
        except ssl.SSLError:  # the session ended (the peer's alert or close was read first)
            self.disconnect()
            return
        self._write_buffer += self._outgoing.read()
        self._flush()

    def disconnect(self) -> None:
        was_open = self.state != DISCONNECTED
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._session = None
        self._read_buffer = bytearray()
        self._write_buffer = bytearray()
        self.state = DISCONNECTED
        if was_open and self._on_disconnected is not None:
            self._on_disconnected()

    def expired(self, now: float) -> bool:
        """Whether the peer has been silent longer than the timeout (or, before it authenticated, connected)."""
        since = self.started if self.state != CONNECTED else self._last_read
        return self.state != DISCONNECTED and now - since > self._timeout_s

    def unauthenticated_too_long(self, now: float) -> bool:
        return self.state == CONNECTING and now - self.started > self._timeout_s

    # poller callback
    def _on_event(self, descr: int, event: int) -> None:
        if descr != self._fileno or self._sock is None:
            self._poller.unsubscribe(descr)
            return
        if event & POLL_EVENT_TYPE.ERROR or self.unauthenticated_too_long(_monotonic()):
            self.disconnect()
            return
        if not self._tcp_connected:
            if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return
            self._tcp_connected = True
            self._handshake()
        elif event & POLL_EVENT_TYPE.READ:
            self._receive()
        if self.state != DISCONNECTED:
            self._flush()

    def _handshake(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            session.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self._write_buffer += self._outgoing.read()
            return
        except (ssl.SSLError, OSError) as exc:
            log.debug("replication handshake refused: %s", exc)
            self._write_buffer += self._outgoing.read()  # the alert, if any
            self._flush()
            self.disconnect()
            return
        self._write_buffer += self._outgoing.read()
        peer = session.getpeercert(binary_form=True)
        if peer is None or session.version() != "TLSv1.3" or (
                self._tls.accepts is not None and not self._tls.accepts(peer)):
            log.warning("replication peer refused: its certificate is not a member's")
            self.disconnect()
            return
        self.state = CONNECTED
        self._last_read = _monotonic()
        if self._on_connected is not None:
            self._on_connected()

    def _receive(self) -> None:
        received = 0
        while received < _RECV_BUDGET_BYTES and self._sock is not None:
            try:
                chunk = self._sock.recv(_RECV_CHUNK_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    self.disconnect()
                return
            if not chunk:
                self.disconnect()
                return
            received += len(chunk)
            self._incoming.write(chunk)
            if self.state == CONNECTING:
                self._handshake()
                if self.state != CONNECTED:
                    return
            if not self._decrypt():
                return
        self._last_read = _monotonic()

    def _decrypt(self) -> bool:
        """Turn the TLS records received into messages; False once the connection closed."""
        while self._session is not None:
            try:
                plain = self._session.read(_RECV_CHUNK_BYTES)
            except ssl.SSLWantReadError:
                return True
            except (ssl.SSLError, OSError):
                self.disconnect()
                return False
            if not plain:  # the peer closed its TLS session
                self.disconnect()
                return False
            self._read_buffer += plain
            if not self._deliver():
                return False
        return False

    def _deliver(self) -> bool:
        """Hand over every whole frame buffered; False once the connection closed."""
        buffer = self._read_buffer
        while len(buffer) >= 4:
            length = int.from_bytes(buffer[:4], "big")
            if length > MAX_FRAME_BYTES:
                log.warning("replication peer sent a frame of %d bytes, over the limit; connection closed", length)
                self.disconnect()
                return False
            if len(buffer) < 4 + length:
                return True
            view = memoryview(buffer)
            try:
                message = _PlainData(io.BytesIO(view[4:4 + length])).load()
            except Exception:  # any malformed pickle: unpickling errors are not one class
                log.warning("replication peer sent a malformed message; connection closed")
                self.disconnect()
                return False
            finally:
                view.release()  # the buffer is cut next
            del buffer[:4 + length]
            if self._on_message is not None:
                self._on_message(message)
            if self.state == DISCONNECTED or buffer is not self._read_buffer:
                return False
        return True

    def _flush(self) -> None:
        sock = self._sock
        while self._write_buffer and sock is not None:
            try:
                sent = sock.send(self._write_buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.disconnect()
                return
            del self._write_buffer[:sent]
        if self._fileno is not None:
            mask = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
            if self._write_buffer or not self._tcp_connected:
                mask |= POLL_EVENT_TYPE.WRITE
            self._poller.subscribe(self._fileno, self._on_event, mask)


class _Listener:
    """The replication port, bound to the member's own address only."""

    def __init__(self, poller: Any, host: str, port: int, on_connection: Any) -> None:
        self._poller = poller
        self._address = (host, port)
        self._on_connection = on_connection
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind(self._address)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._poller.subscribe(sock.fileno(), self._on_event, POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)

    def unbind(self) -> None:
        if self._sock is not None:
            self._poller.unsubscribe(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _on_event(self, descr: int, event: int) -> None:
        while self._sock is not None:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors, for instance: the next event tries again
                return
            self._on_connection(sock)


def transport_class(tls: PeerTLS) -> type[TCPTransport]:
    """pysyncobj's ``transportClass`` for a member whose connections use ``tls``."""
    return functools.partial(TLSTransport, tls=tls)  # type: ignore[return-value]


class TLSTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj is untyped
    """pysyncobj's TCP transport with :class:`TLSConnection` connections and :class:`_Listener`."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, *, tls: PeerTLS) -> None:
        self._tls = tls
        super().__init__(syncObj, selfNode, otherNodes)

    def _createServer(self) -> None:
        host, port = self._selfNode.address.rsplit(":", 1)
        host = host.strip("[]")
        if not host.replace(".", "").isdigit() and ":" not in host:
            host = socket.gethostbyname(host)
        self._server = _Listener(self._syncObj._poller, host, int(port), self._accepted)

    def _connection(self, sock: socket.socket | None = None) -> TLSConnection:
        conf = self._syncObj.conf
        return TLSConnection(self._syncObj._poller, self._tls, timeout_s=conf.connectionTimeout,
                             keepalive=conf.tcp_keepalive, sock=sock)

    def _accepted(self, sock: socket.socket) -> None:
        if len(self._unknownConnections) >= MAX_UNAUTHENTICATED:
            sock.close()
            return
        self._onNewIncomingConnection(self._connection(sock))

    def _onNewIncomingConnection(self, conn: TLSConnection) -> None:
        self._unknownConnections.add(conn)
        conn.setOnMessageReceivedCallback(functools.partial(self._onIncomingMessageReceived, conn))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))

    def _onIncomingMessageReceived(self, conn: TLSConnection, message: Any) -> None:
        # An authenticated peer's first message names it: only a member's address is taken.
        node = self._nodeAddrToNode.get(message) if isinstance(message, str) else None
        self._unknownConnections.discard(conn)
        if node is None:
            log.warning("replication peer refused: %.80r is not a member", message)
            conn.disconnect()
            return
        previous = self._connections.get(node)
        if previous is not None and previous is not conn:
            previous.setOnDisconnectedCallback(None)
            previous.disconnect()
        self._connections[node] = conn
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        self._onNodeConnected(node)

    def _onOutgoingConnected(self, conn: TLSConnection) -> None:
        conn.send(self._selfNode.address)
        self._onNodeConnected(self._connToNode(conn))

    def _onTick(self) -> None:
        super()._onTick()
        now = _monotonic()
        # A peer has the connection timeout to authenticate, and an incoming one as long again to name itself.
        for conn in list(self._unknownConnections):
            if conn.expired(now):
                conn.disconnect()
        for conn in list(self._connections.values()):
            if conn.unauthenticated_too_long(now):
                conn.disconnect()

    def addNode(self, node: Any) -> None:
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = self._connection()
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn
