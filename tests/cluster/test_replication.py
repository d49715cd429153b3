"""Replication across real node processes: every node holds every acknowledged key and user."""

from __future__ import annotations

import pytest

import strongroom.client as sdk
from strongroom.vocab import CKM

from .replicas import ALICE_PW, form


@pytest.fixture(scope="module")
def trio(pki, tmp_path_factory):
    cluster = form(tmp_path_factory.mktemp("trio"), pki, 3)
    yield cluster
    cluster.stop_all()
    cluster.check_logs()


def test_a_key_made_on_one_node_is_served_by_every_node(trio):
    first = trio.nodes[0]
    with sdk.connect(trio.config([first])) as c, c.login("alice", ALICE_PW) as s:
        key = s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="everywhere", encrypt=True, decrypt=True)
        sealed = key.encrypt(b"replicated")
    status = trio.status(first)
    assert sorted(status["members"]) == sorted(n.raft for n in trio.nodes)
    trio.wait_applied(status["commit_index"])
    for proc in trio.nodes:
        with sdk.connect(trio.config([proc])) as c, c.login("alice", ALICE_PW) as s:
            [found] = s.find(label="everywhere")
            assert found.handle == key.handle
            assert found.decrypt(sealed) == b"replicated"
