"""Protocol edges against a real node: hello first, version negotiation, read and idle timeouts, oversized and
malformed frames. Each misbehaving connection is answered or closed alone."""

from __future__ import annotations

import socket
import struct
import time

import msgspec
import pytest

import strongroom.client as sdk
from strongroom.protocol import PROTOCOL_VERSION, Hello, HelloReply, Request, Response, ServerMessage
from strongroom.protocol.messages import CALL_TYPES
from strongroom.vocab import CKR

from ..fixtures.cluster import client_config, client_ssl
from .nodes import init_node, start_node

decoder = msgspec.msgpack.Decoder(ServerMessage)


@pytest.fixture(scope="module")
def strict_node(pki, tmp_path_factory):
    data = tmp_path_factory.mktemp("strict") / "hsm"
    init_node(data)
    proc = start_node(data, pki["server"], client_ca=pki["ca"], extra=("--read-timeout", "1", "--idle-timeout", "2"))
    yield proc
    proc.stop()


class Raw:
    def __init__(self, endpoint: str, pki) -> None:
        host, _, port = endpoint.rpartition(":")
        ctx = client_ssl(pki)
        self.sock = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
        self.buffer = b""

    def send(self, message) -> None:
        body = msgspec.msgpack.encode(message)
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def receive(self):
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    body, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
                    return decoder.decode(body)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except TimeoutError:
            return False
        except OSError:
            return True


def test_request_before_hello_is_refused_and_closed(strict_node, pki):
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Request(5, CALL_TYPES["hsm_info"]()))
    answer = raw.receive()
    assert isinstance(answer, Response) and (answer.id, answer.ckr) == (5, CKR.ARGUMENTS_BAD)
    assert raw.closed_within(3)


def test_unknown_protocol_version_is_refused(strict_node, pki):
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION + 100]))
    answer = raw.receive()
    assert isinstance(answer, Response) and answer.ckr == CKR.FUNCTION_NOT_SUPPORTED
    assert raw.closed_within(3)


def test_hello_reply_and_pipelined_answers(strict_node, pki):
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION], [], "test"))
    reply = raw.receive()
    assert isinstance(reply, HelloReply) and reply.version == PROTOCOL_VERSION
    assert reply.max_frame_bytes >= 16 * 1024 * 1024 and reply.idle_timeout_s == 2
    for request_id in (11, 12, 13):
        raw.send(Request(request_id, CALL_TYPES["session_info"](999)))
    answers = [raw.receive() for _ in range(3)]
    assert sorted(a.id for a in answers) == [11, 12, 13]
    assert {a.ckr for a in answers} == {CKR.SESSION_HANDLE_INVALID}
    raw.send(Hello([PROTOCOL_VERSION]))
    assert raw.receive().ckr == CKR.ARGUMENTS_BAD  # a second hello is an error, not a reset
    raw.sock.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    malformed = raw.receive()
    assert (malformed.id, malformed.ckr) == (0, CKR.ARGUMENTS_BAD)


def test_stalled_partial_frame_is_closed_after_the_read_timeout(strict_node, pki):
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION]))
    assert isinstance(raw.receive(), HelloReply)
    raw.sock.sendall(struct.pack(">I", 100) + b"abc")
    started = time.monotonic()
    assert raw.closed_within(5)
    assert time.monotonic() - started < 4


def test_idle_connection_is_closed_but_a_busy_one_is_not(strict_node, pki):
    idle = Raw(strict_node.endpoint, pki)
    idle.send(Hello([PROTOCOL_VERSION]))
    assert isinstance(idle.receive(), HelloReply)
    config = client_config(pki, [strict_node.endpoint])
    with sdk.connect(config) as busy:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert busy.hsm_info()["state"] == "operational"
            time.sleep(0.5)
        assert idle.closed_within(1)


def test_oversized_frame_closes_only_that_connection(strict_node, pki):
    config = client_config(pki, [strict_node.endpoint])
    with sdk.connect(config) as other:
        raw = Raw(strict_node.endpoint, pki)
        raw.send(Hello([PROTOCOL_VERSION]))
        assert isinstance(raw.receive(), HelloReply)
        raw.sock.sendall(struct.pack(">I", 2**31))
        answer = raw.receive()
        assert answer is not None and answer.ckr == CKR.ARGUMENTS_BAD and "exceeds" in answer.message
        assert raw.closed_within(3)
        assert other.hsm_info()["state"] == "operational"


@pytest.mark.xfail(strict=True, reason="known: a connection closed in TLS reads and discards what the peer keeps "
                   "sending until the peer stops (the node's memory stays flat); to be cut after a grace")
def test_a_peer_that_keeps_sending_after_an_oversized_frame_is_cut_off(strict_node, pki):
    """The node answers the oversized length once and ends the connection within its close grace, whatever the
    peer keeps streaming (a TLS close alone would read and discard the stream until the peer stops)."""
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION]))
    assert isinstance(raw.receive(), HelloReply)
    raw.sock.sendall(struct.pack(">I", 2**31 - 1))
    sent, cut = 0, False
    raw.sock.settimeout(1.0)
    for _ in range(4000):  # up to 256 MiB
        try:
            raw.sock.sendall(b"A" * 65536)
        except OSError:
            cut = True
            break
        sent += 65536
    assert cut, f"the node still read after {sent >> 20} MiB"
    assert sent < 200 << 20


def test_negative_ids_and_indexes_and_long_request_keys_are_refused(strict_node, pki):
    raw = Raw(strict_node.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION], [], "test"))
    raw.receive()
    raw.send(Request(-5, CALL_TYPES["hsm_info"]()))
    raw.send(Request(7, CALL_TYPES["hsm_info"](), after=-1))
    raw.send(Request(8, CALL_TYPES["hsm_info"](), key=b"k" * 33))
    raw.send(Request(9, CALL_TYPES["hsm_info"](), key=b"k" * 32))
    answers = {a.id: a.ckr for a in (raw.receive() for _ in range(4))}
    assert answers == {0: CKR.ARGUMENTS_BAD, 7: CKR.ARGUMENTS_BAD, 8: CKR.ARGUMENTS_BAD, 9: CKR.OK}
