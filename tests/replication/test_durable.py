"""Raft's persistent state reaches the disk before a member acts on it (real pysyncobj members, loopback)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pysyncobj.pickle import loads

from strongroom.replication.change import Change
from strongroom.replication.durable import write_durably
from strongroom.replication.log import RaftLog
from strongroom.replication.machine import StateMachine
from strongroom.store import Store

SECRET = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_write_durably_replaces_the_file_whole(tmp_path):
    target = tmp_path / "meta"
    target.write_bytes(b"old")
    write_durably(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta"]


@pytest.fixture
def pair(tmp_path):
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    logs, stores = [], []
    for i, address in enumerate(addresses):
        store = Store(tmp_path / f"n{i}.sqlite")
        stores.append(store)
        logs.append(RaftLog(StateMachine(store), tmp_path / f"raft{i}", address,
                            [a for a in addresses if a != address], SECRET))
    yield logs
    for log in logs:
        log.close()
    for store in stores:
        store.close()


def test_a_member_acknowledges_entries_only_once_its_journal_is_on_the_disk(pair):
    deadline = time.monotonic() + 30
    while not all(log.ready() for log in pair):
        assert time.monotonic() < deadline, [log.status() for log in pair]
        time.sleep(0.1)
    leader = next(log for log in pair if log.status()["role"] == "leader")
    follower = next(log for log in pair if log is not leader)
    events: list[tuple[str, int]] = []
    journal = follower._durable.journal
    flush, send = journal.flush, follower._member._SyncObj__transport.send

    def flushed() -> None:
        flush()
        events.append(("synced", len(journal) and journal[-1][1]))

    def sent(node, message):
        if isinstance(message, dict) and message.get("type") == "next_node_idx" and message.get("success"):
            events.append(("acknowledged", message["next_node_idx"] - 1))
        return send(node, message)

    journal.flush = flushed
    follower._member._SyncObj__transport.send = sent
    for i in range(5):
        change = Change()
        change.add_audit("test", f"entry {i}")
        leader.commit(change)
    deadline = time.monotonic() + 10
    while follower.machine.applied < leader.machine.applied:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    acknowledged = [(i, index) for i, (kind, index) in enumerate(events) if kind == "acknowledged"]
    assert acknowledged, events
    for position, index in acknowledged:
        synced = [value for kind, value in events[:position] if kind == "synced"]
        assert synced and max(synced) >= index, events  # each acknowledged entry was forced to the disk first
    # the term and vote file, now written by write_durably, reads back as pysyncobj's own
    meta = journal._FileJournal__metaStorer.getPath()
    assert loads(Path(meta).read_bytes())["currentTerm"] >= 1
    assert leader._durable.syncs >= 1
