"""Log compaction: snapshots on disk, a restart from snapshot and journal, a newcomer catching up from a snapshot."""

from __future__ import annotations

import os
import sqlite3

import pytest

import strongroom.client as sdk
from strongroom.vocab import CKM, CKO

from .replicas import ALICE_PW, boundary_view, kill, running
from .test_replication import _burst


@pytest.fixture(scope="module")
def pair(pki, tmp_path_factory):
    with running(tmp_path_factory.mktemp("pair"), pki, 2, flags=("--log-compaction-entries", "40")) as cluster:
        yield cluster


def test_compacted_log_restarts_and_feeds_a_newcomer(pair):
    with sdk.connect(pair.config()) as c, c.login("alice", ALICE_PW) as s:
        acked, errors = _burst(s, 150, "compact", threads=4)
        assert errors == [] and len(acked) == 150
        index = c.cluster_status()["commit_index"]
    pair.wait_applied(index)
    for proc in pair.nodes:
        assert (proc.data_dir / "raft" / "snapshot").is_file()
    restarted = pair.restart(pair.nodes[1])
    third = pair.add_node("hsm-late")  # the founder's log no longer starts at 1: it gets the snapshot
    index = pair.status(pair.nodes[0])["commit_index"]
    pair.wait_applied(index, [restarted, third])
    for proc in (restarted, third):
        with sdk.connect(pair.config([proc])) as c, c.login("alice", ALICE_PW) as s:
            keys = s.find(cls=CKO.SECRET_KEY)
            assert sorted(k.handle for k in keys) == sorted(acked.values())
            assert keys[0].encrypt(b"y" * 16, CKM.AES_ECB)
    pair.stop_all()
    with sqlite3.connect(third.data_dir / "hsm.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM audit WHERE event = 'snapshot-install'").fetchone()[0] == 1
    views = [boundary_view(p.data_dir) for p in pair.nodes]
    assert views[1] == views[0] and views[2] == views[0]


LONG = int(os.environ.get("STRONGROOM_LONG_LOG", "2500"))


@pytest.fixture(scope="module")
def trio(pki, tmp_path_factory):
    with running(tmp_path_factory.mktemp("long"), pki, 3) as cluster:
        yield cluster


def test_a_long_log_feeds_a_returning_follower_and_a_newcomer_without_unseating_the_leader(trio):
    leader = trio.leader()
    follower = next(p for p in trio.nodes if p is not leader)
    kill(follower)
    with sdk.connect(trio.config([p for p in trio.nodes if p is not follower])) as c, \
            c.login("alice", ALICE_PW) as s:
        _, errors = _burst(s, LONG, "long", threads=16)
        assert errors == []
        status = c.cluster_status()
    term = status["term"]
    returning = trio.restart(follower)  # LONG entries behind, caught up entry by entry
    newcomer = trio.add_node("hsm-new")  # joins after a compaction: one snapshot
    trio.wait_applied(status["commit_index"], [returning, newcomer], timeout=60)
    assert max(trio.status(p)["term"] for p in trio.nodes) <= term + 1  # nobody called an election on the way
    for proc in (returning, newcomer):
        with sdk.connect(trio.config([proc])) as c, c.login("alice", ALICE_PW) as s:
            assert len(s.find(cls=CKO.SECRET_KEY)) == LONG
