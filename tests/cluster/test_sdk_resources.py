"""The SDK gives back what it takes: sockets and descriptors of closed or failed clients, and it does not wait
for unreachable HSMs when one answers."""

from __future__ import annotations

import os
import socket
import threading

import pytest

import strongroom.client as sdk
from strongroom.client import ConnectionLost

from ..fixtures.cluster import ALICE_PW


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connect_and_close_leave_no_descriptors_behind(node):
    _, config = node
    with sdk.connect(config) as cluster, cluster.login("alice", ALICE_PW) as session:
        session.random(8)
    before = _open_fds()
    for _ in range(20):
        with sdk.connect(config) as cluster, cluster.login("alice", ALICE_PW) as session:
            session.random(8)
        with pytest.raises(ConnectionLost):
            sdk.connect({**config, "endpoints": ["127.0.0.1:1"], "connect_timeout_s": 1})
    assert _open_fds() <= before + 2


def test_connect_returns_when_one_hsm_answers(node):
    _, config = node
    silent = socket.socket()  # accepts TCP connections, never answers the TLS handshake
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        states = []

        def use():
            with sdk.connect({**config, "endpoints": [endpoint, *config["endpoints"]],
                              "connect_timeout_s": 120}) as c:
                states.append(c.hsm_info()["state"])

        worker = threading.Thread(target=use, daemon=True)
        worker.start()
        worker.join(30)  # waiting for the silent endpoint would take its whole connect timeout (120 s)
        assert states == ["operational"]
    finally:
        silent.close()
