"""The replicated log (replication/log.py) with one member: the node-local log, and a lone Raft member whose
journal outlives it."""

from __future__ import annotations

import json
import socket
import time

import pytest

from strongroom.errors import ArgumentsBad, DeviceError
from strongroom.replication.change import ENCODER, Change
from strongroom.replication.log import LocalLog, RaftLog
from strongroom.replication.machine import StateMachine
from strongroom.replication.peer_tls import cluster_secret
from strongroom.store import ObjectRow, Store

SECRET = bytes(range(32))


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _put(handle: int, request: bytes = b"") -> Change:
    change = Change(request=request)
    change.put_object(ObjectRow(handle, 1, 4, 0x1F, "k", b"", "alice", b"sealed"), new=True)
    return change


def _ready(log: RaftLog, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not log.ready():
        assert time.monotonic() < deadline, log.status()
        time.sleep(0.05)


def test_the_cluster_secret_is_32_bytes_bound_to_the_cluster_id():
    one = cluster_secret(b"m" * 32, "cluster-a")
    assert len(one) == 32 and one == cluster_secret(b"m" * 32, "cluster-a")
    assert one != cluster_secret(b"m" * 32, "cluster-b") and one != cluster_secret(b"n" * 32, "cluster-a")


def test_a_local_log_commits_each_change_at_the_next_index(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    try:
        log = LocalLog(StateMachine(store))
        assert log.unavailable() is None
        assert [log.commit(_put(h)).index for h in (10, 11)] == [1, 2]
        assert log.commit(_put(12, request=b"k")).index == 3
        again = log.commit(_put(13, request=b"k"))
        assert again.duplicate and again.index == 3
        status = log.status()
        assert (status["role"], status["applied_index"], status["has_quorum"]) == ("leader", 4, True)
        assert store.count_objects() == 3
    finally:
        store.close()


@pytest.fixture
def lone(tmp_path):
    """Open (and close) a lone Raft member over ``tmp_path`` as often as a test asks."""
    address = _free_address()
    opened: list[tuple[RaftLog, Store]] = []

    def open_member() -> RaftLog:
        store = Store(tmp_path / "store.sqlite")
        log = RaftLog(StateMachine(store), tmp_path / "raft", address, [], SECRET)
        opened.append((log, store))
        return log

    yield open_member
    for log, store in opened:
        log.close()
        store.close()


def test_a_lone_member_commits_and_its_journal_outlives_it(lone, tmp_path):
    log = lone()
    _ready(log)
    outcomes = [log.commit(_put(h, request=bytes([h]))) for h in (10, 11, 12)]
    assert [o.ckr for o in outcomes] == [0, 0, 0]
    assert outcomes[0].index < outcomes[1].index < outcomes[2].index
    status = log.status()
    assert status["role"] == "leader" and status["members"] == [status["self"]]
    assert json.loads((tmp_path / "raft" / "members.json").read_text()) == [status["self"]]
    assert (tmp_path / "raft" / "journal").exists()
    log.close()
    log.machine.store.close()

    again = lone()
    _ready(again)
    assert again.machine.applied >= outcomes[2].index
    assert again.machine.store.count_objects() == 3
    retried = again.commit(_put(11, request=bytes([11])))  # the request key outlived the restart
    assert retried.duplicate and retried.index == outcomes[1].index


def test_a_store_ahead_of_a_missing_journal_is_refused(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    try:
        machine = StateMachine(store)
        machine.apply(1, ENCODER.encode([Change()]))
        with pytest.raises(DeviceError) as caught:
            RaftLog(machine, tmp_path / "raft", _free_address(), [], SECRET)
        assert "replicated log does not have" in str(caught.value)
    finally:
        store.close()


@pytest.mark.parametrize("address", ["no-port", "host:0", "host:65536", ":80", "host:http"])
def test_a_malformed_member_address_is_refused(lone, address):
    log = lone()
    with pytest.raises(ArgumentsBad):
        log.change_membership(address, add=True)


def test_removing_a_node_that_is_not_a_member_is_refused(lone):
    log = lone()
    _ready(log)
    with pytest.raises(ArgumentsBad):
        log.change_membership("127.0.0.1:1", add=False)
    assert log.change_membership(log.self_address, add=True)  # already a member
