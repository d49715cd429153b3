"""Replication across real node processes: every node holds every acknowledged key and user."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import strongroom.client as sdk
from strongroom.errors import ArgumentsBad, NoQuorum, PinIncorrect, PinLocked
from strongroom.node.users import backoff_s
from strongroom.trust.ca import CertificateAuthority
from strongroom.vocab import CKA, CKM, CKO

from ..fixtures.cluster import client_ssl
from .replicas import ADMIN_PW, ALICE_PW, boundary_view, kill, running

P256 = bytes.fromhex("06082a8648ce3d030107")


@pytest.fixture(scope="module")
def trio(pki, tmp_path_factory):
    with running(tmp_path_factory.mktemp("trio"), pki, 3) as cluster:
        yield cluster


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


def test_session_objects_are_seen_by_every_session_of_the_application(trio):
    """PKCS#11 3.0 §4.4: a session object is visible to all sessions of the application that made it, so the SDK
    sends every session of an application to the HSM holding its session objects."""
    with sdk.connect(trio.config()) as c:
        maker = c.login("alice", ALICE_PW)
        key = maker.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True, decrypt=True, token=False)
        others = [c.open_session() for _ in range(6)]  # the balancer would spread these over the HSMs
        sealed = key.encrypt(b"session object")
        for other in others:
            assert other.key(key.handle).decrypt(sealed) == b"session object"
        for other in others:
            other.close()
        maker.close()


def test_session_object_handles_are_never_the_same_on_two_hsms(trio):
    """A handle an application kept from an HSM that failed must not name another object on the HSM it moves
    to: session handles, like token handles, come from blocks reserved through the log."""
    handles = []
    for proc in trio.nodes[:2]:
        with sdk.connect(trio.config([proc])) as c, c.login("alice", ALICE_PW) as s:
            handles.append({s.generate_key(CKM.AES_KEY_GEN, value_len=16, encrypt=True, token=False).handle
                            for _ in range(5)})
    assert not handles[0] & handles[1]
    assert all(h >> 63 for h in handles[0] | handles[1])  # session handles carry the top bit


def _raw_call(endpoint, pki, name, *args):
    """One call on a connection of its own to one node (no balancing, no retries)."""
    import asyncio

    from strongroom.client.connection import open_connection

    async def run():
        conn = await open_connection(endpoint, client_ssl(pki))
        try:
            return await conn.call(name, *args)
        finally:
            conn.close()

    return asyncio.run(run())


def test_a_write_sent_again_with_its_request_key_is_done_once_on_any_node(trio, pki):
    import asyncio

    from strongroom.client.connection import open_connection
    from strongroom.vocab import CKF, CKU

    ctx = client_ssl(pki)
    template = {int(CKA.TOKEN): True, int(CKA.VALUE_LEN): 32, int(CKA.LABEL): "once", int(CKA.ENCRYPT): True}
    deadline = time.monotonic() + 30
    while not all(trio.status(node)["ready"] for node in trio.nodes):  # when this test runs first
        assert time.monotonic() < deadline
        time.sleep(0.2)

    async def generate(endpoint, key):
        conn = await open_connection(endpoint, ctx)
        try:
            session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION))
            await conn.call("login", session, int(CKU.USER), f"alice:{ALICE_PW}")
            response = await conn.request("generate_key", (session, sdk.mechanism(CKM.AES_KEY_GEN), template), {},
                                          key=key)
            return response.value, response.index
        finally:
            conn.close()

    async def run():
        first = await generate(trio.nodes[0].endpoint, b"k" * 16)
        again = await generate(trio.nodes[1].endpoint, b"k" * 16)
        other = await generate(trio.nodes[2].endpoint, b"j" * 16)
        return first, again, other

    (handle, index), (again, again_index), (other, _) = asyncio.run(run())
    assert again == handle and again_index == index and other != handle
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        assert sorted(k.handle for k in s.find(label="once")) == sorted([handle, other])

    async def write(endpoint, name, args, key):
        conn = await open_connection(endpoint, ctx)
        try:
            session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION))
            await conn.call("login", session, int(CKU.USER), f"alice:{ALICE_PW}")
            response = await conn.request(name, (session, *args), {}, key=key)
            return response.ckr, response.message
        finally:
            conn.close()

    async def destroy_twice():
        # the second is what a client sends when the first one's answer was lost; the HSM answering it has
        # applied the first, so the object it would look up is gone already
        first = await write(trio.nodes[0].endpoint, "destroy_object", (other,), b"d" * 16)
        await asyncio.sleep(0.5)  # every node has applied it
        return first, await write(trio.nodes[1].endpoint, "destroy_object", (other,), b"d" * 16)

    assert asyncio.run(destroy_twice()) == ((0, ""), (0, ""))
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        assert [k.handle for k in s.find(label="once")] == [handle]


def _burst(session, count, prefix, on_ack=None, threads=8):
    acked, errors = {}, []
    lock = threading.Lock()
    todo = iter(range(count))

    def worker():
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            label = f"{prefix}-{i}"
            try:
                key = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label=label, encrypt=True)
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))
                continue
            with lock:
                acked[label] = key.handle
                if on_ack is not None:
                    on_ack(len(acked))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    return acked, errors


def _labels(session, prefix, count):
    found = {}
    for i in range(count):
        keys = session.find(label=f"{prefix}-{i}")
        found[f"{prefix}-{i}"] = [k.handle for k in keys]
    return found


def test_leader_killed_during_500_creations_loses_no_acknowledged_key(trio):
    leader = trio.leader()
    killed = threading.Event()

    def on_ack(n):
        if n == 250 and not killed.is_set():
            killed.set()
            kill(leader)

    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        acked, errors = _burst(s, 500, "burst", on_ack)
        assert killed.is_set(), errors[:3]
        assert errors == []
        assert len(acked) == 500
        found = _labels(s, "burst", 500)
    assert all(found[label] == [handle] for label, handle in acked.items())  # each once, with its handle
    restarted = trio.restart(leader)
    index = max(trio.status(p)["commit_index"] for p in trio.nodes if p is not restarted)
    trio.wait_applied(index)
    with sdk.connect(trio.config([restarted])) as c, c.login("alice", ALICE_PW) as s:
        assert _labels(s, "burst", 500) == found


def test_2000_signatures_see_no_error_while_a_follower_then_the_leader_restart(trio):
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        public, private = s.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                              {CKA.SIGN: True}, label="signer")
        trio.wait_applied(c.cluster_status()["commit_index"])
        verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public[CKA.EC_POINT][2:])
        signatures = []
        leader = trio.leader()
        term = trio.status(leader)["term"]
        follower = next(p for p in trio.nodes if p is not leader)
        for i in range(2000):
            if i == 400:
                kill(follower)
                assert follower.process.returncode == -signal.SIGKILL
            elif i == 800:
                follower = trio.restart(follower)
            elif i == 1200:
                kill(leader)
                assert leader.process.returncode == -signal.SIGKILL
            elif i == 1599:  # the failover happened: another member won an election in a later term
                elected = trio.leader()
                assert elected is not leader and trio.status(elected)["term"] > term
            elif i == 1600:
                leader = trio.restart(leader)
            message = b"message %d" % i
            signatures.append((message, private.sign(message, CKM.ECDSA_SHA256)))
    assert len(signatures) == 2000
    members = sorted(n.raft for n in trio.nodes)
    assert all(sorted(trio.status(p)["members"]) == members for p in trio.nodes)
    for message, signature in signatures:
        r, s_ = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        verifier.verify(encode_dss_signature(r, s_), message, ec.ECDSA(hashes.SHA256()))


def test_writes_continue_while_a_node_is_stopped_and_it_catches_up(trio):
    leader = trio.leader()
    stopped = next(p for p in trio.nodes if p is not leader)
    stopped.process.send_signal(signal.SIGSTOP)
    try:
        with sdk.connect(trio.config([p for p in trio.nodes if p is not stopped])) as c, \
                c.login("alice", ALICE_PW) as s:
            acked, errors = _burst(s, 50, "while-stopped", threads=4)
            index = c.cluster_status()["commit_index"]
        assert errors == [] and len(acked) == 50
    finally:
        stopped.process.send_signal(signal.SIGCONT)
    trio.wait_applied(index, [stopped])
    with sdk.connect(trio.config([stopped])) as c, c.login("alice", ALICE_PW) as s:
        assert sorted(h for hs in _labels(s, "while-stopped", 50).values() for h in hs) == sorted(acked.values())


def test_five_wrong_passwords_spread_over_three_nodes_lock_the_user(trio):
    with sdk.connect(trio.config([trio.nodes[0]])) as c, c.login("admin", ADMIN_PW, role="admin") as admin:
        admin.create_user("carol", "carol-pass-1")
    for i in range(5):
        time.sleep(backoff_s(i, 1.0, 60.0) + 0.2)  # the back-off after each failure, counted cluster-wide
        proc = trio.nodes[i % 3]
        with sdk.connect(trio.config([proc])) as c, pytest.raises(PinIncorrect):
            c.login("carol", "wrong-password")
    for proc in trio.nodes:
        with sdk.connect(trio.config([proc])) as c:
            with pytest.raises(PinLocked):
                c.login("carol", "carol-pass-1")
            with c.login("admin", ADMIN_PW, role="admin") as admin:
                [carol] = [u for u in admin.list_users() if u["username"] == "carol"]
            assert carol["locked"] and carol["failures"] == 5


def test_a_follower_killed_during_a_burst_restarts_with_a_store_equal_to_the_log(trio):
    leader = trio.leader()
    follower = next(p for p in trio.nodes if p is not leader)

    def on_ack(n):
        if n == 60:
            kill(follower)

    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        acked, errors = _burst(s, 150, "follower-kill", on_ack)
        assert errors == [] and len(acked) == 150
        index = c.cluster_status()["commit_index"]
    restarted = trio.restart(follower)  # its store opens (integrity checked) and it replays the rest of the log
    trio.wait_applied(index, [restarted])
    with sdk.connect(trio.config([restarted])) as c, c.login("alice", ALICE_PW) as s:
        assert _labels(s, "follower-kill", 150) == {label: [h] for label, h in acked.items()}


def test_without_a_majority_writes_and_reads_fail_with_retryable_errors(trio):
    leader = trio.leader()
    others = [p for p in trio.nodes if p is not leader]
    with sdk.connect(trio.config([leader], timeout_s=4)) as c, c.login("alice", ALICE_PW) as s:
        key = s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="before-the-split", encrypt=True, decrypt=True)
        trio.wait_applied(c.cluster_status()["commit_index"])
        for proc in others:
            kill(proc)
        with pytest.raises(NoQuorum) as caught:
            s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="no-majority")
        assert caught.value.retryable and caught.value.ckr == 0x80000101
        with pytest.raises(NoQuorum):  # cut off from the majority, it no longer serves from its replica
            key.encrypt(b"not served")
    for proc in others:
        trio.restart(proc)
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="majority-again")
        assert len(s.find(label="no-majority")) <= 1  # the refused write may have committed later, once


def test_concurrent_changes_to_one_key_from_every_node_all_succeed(trio):
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        handle = s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="contended").handle
    errors = []

    def relabel(n):
        with sdk.connect(trio.config([trio.nodes[n % 3]])) as c, c.login("alice", ALICE_PW) as s:
            for i in range(5):
                try:
                    s.key(handle).set(label=f"contended-{n}-{i}")
                except Exception as exc:  # collected and asserted below
                    errors.append(repr(exc))

    threads = [threading.Thread(target=relabel, args=(n,)) for n in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        assert s.key(handle)[CKA.LABEL].startswith("contended-")


def test_a_fourth_node_catches_up_and_a_removed_node_leaves(trio):
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        present = len(s.find(cls=CKO.SECRET_KEY))
        _, errors = _burst(s, max(0, 1000 - present), "filler")
        assert errors == []
        keys = sorted(k.handle for k in s.find(cls=CKO.SECRET_KEY))
        assert len(keys) >= 1000
    fourth = trio.add_node("hsm-fourth")
    index = trio.status(trio.nodes[0])["commit_index"]
    trio.wait_applied(index, [fourth])
    assert fourth.raft in trio.status(trio.nodes[0])["members"]
    with sdk.connect(trio.config([fourth])) as c, c.login("alice", ALICE_PW) as s:
        assert sorted(k.handle for k in s.find(cls=CKO.SECRET_KEY)) == keys
        assert s.key(keys[-1]).encrypt(b"x" * 16, CKM.AES_ECB)
    with sdk.connect(trio.config([fourth])) as c, c.login("admin", ADMIN_PW, role="admin") as admin:
        with pytest.raises(ArgumentsBad):
            admin.remove_member("127.0.0.1:1")  # not a member
        admin.remove_member(fourth.raft)  # whichever member takes the call, itself included
    assert fourth.raft not in trio.status(trio.nodes[0])["members"]
    # the removed member applied its own removal and stopped: it answers nothing and calls no election
    assert fourth.process.wait(20) == 0
    assert "was removed from its cluster: it stops" in fourth.log_text()
    for address in (fourth.endpoint, fourth.raft):
        host, _, port = address.rpartition(":")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=3).close()
    terms = {p.raft: trio.status(p)["term"] for p in trio.nodes if p is not fourth}
    time.sleep(5)  # more than two election timeouts
    assert {p.raft: trio.status(p)["term"] for p in trio.nodes if p is not fourth} == terms
    with sdk.connect(trio.config([fourth, *trio.nodes[:3]])) as c, c.login("alice", ALICE_PW) as s:
        assert s.key(keys[-1]).encrypt(b"x" * 16, CKM.AES_ECB)  # clients move on
        assert fourth.endpoint not in c.cluster_status()["endpoints"]
    again = subprocess.run([sys.executable, "-m", "strongroom", *fourth.args], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode != 0 and "this HSM was removed from its cluster" in again.stderr, again.stderr
    trio.nodes.remove(fourth)


def test_the_leader_can_be_removed_and_joins_again(trio):
    leader = trio.leader()
    with sdk.connect(trio.config()) as c, c.login("admin", ADMIN_PW, role="admin") as admin:
        admin.remove_member(leader.raft)  # it hands over its leadership first
    for other in (p for p in trio.nodes if p is not leader):
        status = trio.status(other)
        assert leader.raft not in status["members"] and status["leader"] != leader.raft
    leader.stop()
    trio.nodes.remove(leader)
    shutil.rmtree(leader.data_dir)
    leader.data_dir.with_name(leader.data_dir.name + ".log").unlink(missing_ok=True)
    # a new HSM at the same replication address: the log's entry that removed the old one is not about it
    back = trio.add_node(leader.data_dir.name)
    assert back.raft == leader.raft
    trio.wait_applied(trio.status(trio.nodes[0])["commit_index"], [back])
    assert sorted(trio.status(back)["members"]) == sorted(p.raft for p in trio.nodes)
    time.sleep(5)  # past the time a member that applied its own removal takes to stop
    assert back.process.poll() is None and trio.status(back)["ready"]


def test_a_node_without_a_genuine_fleet_certificate_is_refused(trio, tmp_path):
    rogue_fleet = CertificateAuthority(tmp_path, "rogue-fleet")
    members = trio.status(trio.nodes[0])["members"]
    # its identity is its TLS client certificate: the members refuse it at the handshake
    with pytest.raises(RuntimeError, match=r"CKR_DEVICE_REMOVED.*fleet identity is not from their fleet CA"):
        trio.add_node("hsm-rogue", fleet=rogue_fleet)
    trio.count -= 1
    assert trio.status(trio.nodes[0])["members"] == members


def test_a_client_given_one_endpoint_discovers_and_uses_every_member(trio):
    first = trio.nodes[0]
    deadline = time.monotonic() + 20
    while sorted(trio.status(first)["endpoints"]) != sorted(p.endpoint for p in trio.nodes):
        assert time.monotonic() < deadline, trio.status(first)  # a member publishes its endpoint once caught up
        time.sleep(0.1)
    with sdk.connect(trio.config([first])) as c:
        assert sorted(c.cluster_status()["endpoints"]) == sorted(p.endpoint for p in trio.nodes)
        with c.login("alice", ALICE_PW) as s:
            key = s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="discovery", encrypt=True, decrypt=True)
            kill(first)  # the only configured endpoint
            sealed = key.encrypt(b"failover to a discovered node")
            assert key.decrypt(sealed) == b"failover to a discovered node"
    trio.restart(first)


def test_followers_converge_after_the_leader_is_stopped_under_write_load(trio):
    stop_writing = threading.Event()
    errors = []

    def writer(session, n):
        i = 0
        while not stop_writing.is_set():
            try:
                session.generate_key(CKM.AES_KEY_GEN, value_len=32, label=f"under-load-{n}-{i}")
            except Exception as exc:  # counted, not asserted: a stopped leader may time out
                errors.append(repr(exc))
            i += 1

    with sdk.connect(trio.config(timeout_s=60)) as c, c.login("alice", ALICE_PW) as s:
        writers = [threading.Thread(target=writer, args=(s, n)) for n in range(8)]
        for t in writers:
            t.start()
        try:
            for _ in range(2):
                time.sleep(2)
                leader = trio.leader()
                leader.process.send_signal(signal.SIGSTOP)
                time.sleep(5)
                leader.process.send_signal(signal.SIGCONT)
            time.sleep(3)
        finally:
            stop_writing.set()
            for t in writers:
                t.join(90)
    deadline = time.monotonic() + 30
    while True:
        statuses = [trio.status(p) for p in trio.nodes]
        if len({(st["commit_index"], st["applied_index"]) for st in statuses}) == 1:
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)


def test_every_node_stopped_and_restarted_keeps_every_key_and_user(trio):
    index = max(trio.status(p)["commit_index"] for p in trio.nodes)
    trio.wait_applied(index)
    trio.stop_all()
    views = [boundary_view(p.data_dir) for p in trio.nodes]
    assert len(views[0]) > 1000
    for view in views[1:]:  # identical attributes, values and users everywhere
        assert [k for k in view if isinstance(k, str)] == [k for k in views[0] if isinstance(k, str)], \
            [p.data_dir for p in trio.nodes]
        assert set(view) == set(views[0])
        assert [k for k in view if view[k] != views[0][k]] == []
    for proc in list(trio.nodes):
        trio.restart(proc)
    with sdk.connect(trio.config()) as c, c.login("alice", ALICE_PW) as s:
        assert len(s.find(cls=CKO.SECRET_KEY)) == sum(1 for k in views[0] if isinstance(k, int)
                                                       and views[0][k] != b"") - 2  # minus the EC pair
        users = {u["username"] for u in s.list_users()}
    assert users == {k.split(":", 1)[1] for k in views[0] if isinstance(k, str)}
