"""Fuzzing the node's frame decoder over a real TLS connection while a well-behaved client keeps working.

Hypothesis generates at least 10,000 frames: raw bytes, arbitrary msgpack values, requests with wrong field
types, valid calls with hostile arguments, repeated hellos and oversized length headers. The node must answer
or close that one connection, never crash, and keep serving the other client meanwhile.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.protocol import CALL_SPECS, PROTOCOL_VERSION, Hello
from strongroom.vocab import CKA, CKM

from ..fixtures.cluster import ALICE_PW, client_ssl

EXAMPLES = 1000
FRAMES_PER_EXAMPLE = (12, 24)

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=64)
    | st.text(max_size=32) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.integers(0, 2**32) | st.text(max_size=8),
                                                                  inner, max_size=6),
    max_leaves=20)


def _encode(value) -> bytes:
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, msgspec.EncodeError):
        return b"\xc1"


bodies = st.one_of(
    st.binary(max_size=200),
    msgpack_values.map(_encode),
    st.tuples(st.sampled_from(list(CALL_SPECS)), st.lists(msgpack_values, max_size=6)).map(
        lambda t: _encode(["request", 1, [t[0], *t[1]]])),
    st.tuples(st.integers(0, 2**64 - 1), st.sampled_from(list(CALL_SPECS)),
              st.lists(st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40), max_size=5)).map(
        lambda t: _encode(["request", t[0], [t[1], *t[2]]])),
    st.just(_encode(Hello([PROTOCOL_VERSION]))),
)
frames = st.one_of(
    bodies.map(lambda b: struct.pack(">I", len(b)) + b),
    st.integers(2**25, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # oversized header: closes the connection
)


class RawClient:
    """A TLS socket that says hello, then sends whatever it is given; answers are drained and discarded."""

    def __init__(self, endpoint: str, ctx: ssl.SSLContext) -> None:
        self.endpoint, self.ctx = endpoint, ctx
        self.sock: ssl.SSLSocket | None = None
        self.drainer: threading.Thread | None = None
        self.reconnects = 0

    def _open(self) -> None:
        host, _, port = self.endpoint.rpartition(":")
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=host)
        hello = _encode(Hello([PROTOCOL_VERSION]))
        self.sock.sendall(struct.pack(">I", len(hello)) + hello)
        self.drainer = threading.Thread(target=self._drain, args=(self.sock,), daemon=True)
        self.drainer.start()
        self.reconnects += 1

    @staticmethod
    def _drain(sock: ssl.SSLSocket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        for _ in range(2):
            if self.sock is None:
                self._open()
            try:
                self.sock.sendall(data)
                return
            except OSError:
                self.close()

    def close(self) -> None:
        """Close the socket only once its draining thread has stopped reading it: a descriptor closed under a
        reader is reused by the next connection, and the old reader would then eat the new handshake."""
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.drainer is not None:
            self.drainer.join(10)
        self.sock.close()
        self.sock = None


def test_fuzzed_frames_never_break_the_node(node, cluster, pki):
    proc, _ = node
    ctx = client_ssl(pki)
    fuzzer = RawClient(proc.endpoint, ctx)
    good = cluster.login("alice", ALICE_PW)
    key = good.generate_key(CKM.GENERIC_SECRET_KEY_GEN, value_len=32, label="fuzz-witness")
    expected = key.sign(b"witness", CKM.SHA256_HMAC)
    stop = threading.Event()
    served: list[int] = []
    failures: list[BaseException] = []

    def well_behaved() -> None:
        while not stop.is_set():
            try:
                assert key.sign(b"witness", CKM.SHA256_HMAC) == expected
                served.append(1)
            except BaseException as exc:  # recorded for the assertion below
                failures.append(exc)
                return

    witness = threading.Thread(target=well_behaved)
    witness.start()
    sent = [0]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=FRAMES_PER_EXAMPLE[0], max_size=FRAMES_PER_EXAMPLE[1]))
    def fuzz(batch: list[bytes]) -> None:
        for frame in batch:
            fuzzer.send(frame)
            sent[0] += 1

    try:
        fuzz()
    finally:
        stop.set()
        witness.join(30)
        fuzzer.close()
    assert sent[0] >= 10_000
    assert failures == []
    assert len(served) > 0
    assert proc.process.poll() is None, proc.process.stderr.read()
    # the node still answers new and old clients
    assert key.sign(b"witness", CKM.SHA256_HMAC) == expected
    assert good.find({CKA.LABEL: "fuzz-witness"}) == [key]
    assert cluster.hsm_info()["state"] == "operational"
