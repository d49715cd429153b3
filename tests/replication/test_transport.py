"""The replication channel (replication/transport.py, replication/peer_tls.py) of a lone in-process Raft member,
over real sockets: a log without fleet identities takes only peers whose certificate comes from its secret's CA,
and from them only capped frames of plain data naming a member first."""

from __future__ import annotations

import pickle
import socket
import ssl
import time
from pathlib import Path

import pytest

from strongroom.replication.log import RaftLog
from strongroom.replication.machine import StateMachine
from strongroom.replication.peer_tls import secret_peer_tls
from strongroom.replication.transport import MAX_FRAME_BYTES
from strongroom.store import Store

from .test_log import SECRET, _free_address, _ready


@pytest.fixture
def member(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    log = RaftLog(StateMachine(store), tmp_path / "raft", _free_address(), [], SECRET)
    _ready(log)
    yield log
    log.close()
    store.close()


def _connect(address: str, secret: bytes) -> ssl.SSLSocket:
    """A connection presenting a certificate from ``secret``'s CA (and, so that the member under test is the one
    that decides, trusting whatever the member presents)."""
    host, _, port = address.rpartition(":")
    ctx = secret_peer_tls(secret).client
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((host, int(port)), timeout=5)
    return ctx.wrap_socket(raw)


def _closed(tls: ssl.SSLSocket) -> bool:
    """Whether the member closes the connection (within 2 s) rather than waiting for more."""
    tls.settimeout(2.0)
    try:
        return tls.recv(1) == b""
    except TimeoutError:
        return False
    except (ssl.SSLError, ConnectionError):
        return True


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


def test_a_peer_with_the_same_secret_is_accepted_and_one_with_another_is_refused(member):
    with _connect(member.self_address, SECRET) as tls:
        assert not _closed(tls)
    with _connect(member.self_address, bytes(32)) as tls:
        assert _closed(tls)


def test_a_frame_over_the_cap_closes_the_connection_unread(member):
    with _connect(member.self_address, SECRET) as tls:
        tls.sendall((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + bytes(1024))
        assert _closed(tls)


@pytest.mark.parametrize("first", [
    "127.0.0.1:1",  # not a member
    ["status"],  # a pysyncobj utility command
    "readonly",  # a pysyncobj read-only node
])
def test_a_peer_must_name_a_member_first(member, first):
    with _connect(member.self_address, SECRET) as tls:
        tls.sendall(_frame(first))
        assert _closed(tls)


class _CreatesAFileWhenLoaded:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_message_referring_to_any_class_is_refused_unloaded(member, tmp_path):
    with _connect(member.self_address, SECRET) as tls:
        tls.sendall(_frame(Path(tmp_path)))
        assert _closed(tls)
    # Any first message that is not a member's name closes the connection: that it is not loaded shows here.
    loaded = tmp_path / "loaded"
    with _connect(member.self_address, SECRET) as tls:
        tls.sendall(_frame(_CreatesAFileWhenLoaded(loaded)))
        assert _closed(tls)
    assert not loaded.exists()
    assert member.ready()


def test_a_peer_that_does_not_complete_its_handshake_is_dropped_after_the_connection_timeout(member):
    host, _, port = member.self_address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a TLS record, never finished
        started = time.monotonic()
        assert raw.recv(1) == b""
        assert 2.5 < time.monotonic() - started < 6.0  # the log's connection timeout is 3 s
