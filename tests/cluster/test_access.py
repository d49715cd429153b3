"""An authenticated peer (a valid client certificate) that has not logged in, against a real node process:
nothing about users or keys, no token objects, and public session objects only up to their caps, with the
node's memory bounded by them (measured)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

import strongroom.client as sdk
from strongroom.client.connection import NodeConnection, open_connection
from strongroom.node.public_objects import (
    PUBLIC_SESSION_OBJECT_BYTES_PER_CONNECTION,
    PUBLIC_SESSION_OBJECT_BYTES_PER_NODE,
    SESSION_OBJECT_OVERHEAD_BYTES,
)
from strongroom.protocol.tls import client_context
from strongroom.vocab import CKA, CKC, CKK, CKO, CKR

from ..fixtures.cluster import ADMIN_PW, ALICE_PW
from .nodes import init_node, start_node
from .pki import issue_agent

P256 = bytes.fromhex("06082a8648ce3d030107")
TOKEN_TEMPLATES = {
    "data": {CKA.CLASS: CKO.DATA, CKA.VALUE: b"planted", CKA.LABEL: "app-key"},
    "certificate": {CKA.CLASS: CKO.CERTIFICATE, CKA.CERTIFICATE_TYPE: CKC.X_509, CKA.SUBJECT: b"\x30\x00",
                    CKA.VALUE: b"\x30\x03\x02\x01\x01", CKA.LABEL: "app-key"},
    "public key": {CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.EC, CKA.EC_PARAMS: P256,
                   CKA.EC_POINT: bytes.fromhex("044104") + bytes(64), CKA.LABEL: "app-key"},
    "secret key": {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(32), CKA.LABEL: "app-key"},
}
VALUE_BYTES = 60 * 1024  # under the 64 KiB an attribute value may hold
# Beside the objects themselves: connections, TLS buffers, and the allocator's slack (the node's threads each
# keep freed request buffers in their own malloc arena; measured at about 12 MiB for this test).
RSS_MARGIN_BYTES = 24 << 20


def _wire(template: dict) -> dict[int, object]:
    return {int(k): int(v) if isinstance(v, int) else v for k, v in template.items()}


async def _peer(endpoint: str, pki, issued=None) -> tuple[NodeConnection, int]:
    """A connection with a client certificate (the issued client's by default) and one open read-write session,
    no login."""
    issued = issued or pki["client"]
    ctx = client_context(pki["ca"].issued.cert, cert_file=issued.cert, key_file=issued.key)
    conn = await open_connection(endpoint, ctx)
    opened = await conn.request("open_session", (6,), {})
    assert opened.ckr == CKR.OK
    return conn, opened.value


def test_without_a_login_no_users_no_token_objects_and_no_destruction(node, pki):
    proc, config = node
    with sdk.connect(config) as cluster, cluster.login("alice", ALICE_PW) as alice:
        planted = alice.create_object({**TOKEN_TEMPLATES["certificate"], CKA.TOKEN: True,
                                       CKA.LABEL: "alice-cert"}).handle

    async def attempts() -> dict[str, int]:
        conn, session = await _peer(proc.endpoint, pki)
        try:
            codes = {"list_users": (await conn.request("list_users", (session,), {})).ckr}
            for name, template in TOKEN_TEMPLATES.items():
                created = await conn.request("create_object", (session, _wire({**template, CKA.TOKEN: True})), {})
                codes[f"create token {name}"] = created.ckr
            codes["destroy"] = (await conn.request("destroy_object", (session, planted), {})).ckr
            codes["key_info"] = (await conn.request("key_info", (session, planted), {})).ckr
            return codes
        finally:
            conn.close()

    codes = asyncio.run(attempts())
    assert codes == {name: CKR.USER_NOT_LOGGED_IN for name in codes}, codes
    with sdk.connect(config) as cluster, cluster.login("alice", ALICE_PW) as alice:
        assert [o.handle for o in alice.find(label="alice-cert")] == [planted]
        assert alice.find(label="app-key") == []


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the node's RSS from /proc")
def test_public_session_objects_fill_to_the_cap_then_device_memory_with_the_nodes_memory_bounded(pki, tmp_path):
    init_node(tmp_path / "hsm")
    proc = start_node(tmp_path / "hsm", pki["server"], client_ca=pki["ca"])
    template = _wire({CKA.CLASS: CKO.DATA, CKA.VALUE: bytes(VALUE_BYTES)})
    per_object = VALUE_BYTES + SESSION_OBJECT_OVERHEAD_BYTES
    per_connection = PUBLIC_SESSION_OBJECT_BYTES_PER_CONNECTION // per_object
    # eight times what the node holds, in attempts: without the caps the values alone would outgrow the bound
    connections = 8 * PUBLIC_SESSION_OBJECT_BYTES_PER_NODE // PUBLIC_SESSION_OBJECT_BYTES_PER_CONNECTION
    assert connections * (per_connection + 2) * VALUE_BYTES > 2 * (PUBLIC_SESSION_OBJECT_BYTES_PER_NODE
                                                                   + RSS_MARGIN_BYTES)

    async def fill() -> tuple[int, int, list[int], set[int]]:
        warm, warm_session = await _peer(proc.endpoint, pki)  # code paths and buffers warmed before measuring
        made = await warm.request("create_object", (warm_session, template), {})
        await warm.request("destroy_object", (warm_session, made.value), {})
        before = _rss_bytes(proc.process.pid)
        peers = [await _peer(proc.endpoint, pki) for _ in range(connections)]
        accepted, refused = [], set()
        for conn, session in peers:
            answers = [await conn.request("create_object", (session, template), {})
                       for _ in range(per_connection + 2)]
            accepted.append(sum(a.ckr == CKR.OK for a in answers))
            refused |= {a.ckr for a in answers if a.ckr != CKR.OK}
        after = _rss_bytes(proc.process.pid)
        for conn, _ in [*peers, (warm, 0)]:
            conn.close()
        return before, after, accepted, refused

    try:
        before, after, accepted, refused = asyncio.run(fill())
    finally:
        proc.stop()
    assert refused == {CKR.DEVICE_MEMORY}
    assert max(accepted) == per_connection  # each connection up to its cap
    # full: one more object (its value, record and default attributes, under 512 bytes) would not fit
    assert sum(accepted) * per_object <= PUBLIC_SESSION_OBJECT_BYTES_PER_NODE < (sum(accepted) + 1) * (per_object + 512)
    assert accepted[-1] == 0  # the node is full: later connections get none
    grown = after - before
    print(f"RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB (+{grown / 2**20:.1f} MiB) for "
          f"{sum(accepted)} objects of {VALUE_BYTES} bytes, node cap {PUBLIC_SESSION_OBJECT_BYTES_PER_NODE} bytes")
    assert grown <= PUBLIC_SESSION_OBJECT_BYTES_PER_NODE + RSS_MARGIN_BYTES


def _fingerprint(cert_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def test_audit_entries_name_the_authenticated_peer_and_only_an_agent_vouches_for_its_client(node, pki, tmp_path):
    proc, _ = node
    agent = issue_agent(pki["ca"], tmp_path)
    claimed = "pid=1 uid=0 gid=0"

    async def exported() -> list:
        admin, session = await _peer(proc.endpoint, pki)
        assert (await admin.request("login", (session, 0, f"admin:{ADMIN_PW}"), {})).ckr == CKR.OK
        entries = (await admin.request("export_audit", (0,), {})).value
        admin.close()
        return entries

    def seq(entry) -> int:
        return entry["seq"] if isinstance(entry, dict) else entry[0]

    async def scenario() -> list:
        start = max(seq(e) for e in await exported())  # other tests of the module used the same certificate
        for who, issued in (("application", pki["client"]), ("agent", agent)):
            conn, session = await _peer(proc.endpoint, pki, issued)
            login = await conn.request("login", (session, 1, f"alice:{ALICE_PW}"), {"client": claimed})
            assert login.ckr == CKR.OK
            made = await conn.request("create_object", (session, _wire({CKA.CLASS: CKO.DATA, CKA.TOKEN: True,
                                                                        CKA.LABEL: f"audited-{who}"})), {})
            assert made.ckr == CKR.OK
            assert (await conn.request("destroy_object", (session, made.value), {})).ckr == CKR.OK
            conn.close()
        return [e for e in await exported() if seq(e) > start]

    entries = asyncio.run(scenario())
    by_peer: dict[str, list[tuple[str, dict]]] = {}
    for entry in entries:  # an AuditEntry on the wire: seq, time, event, actor, detail, prev, digest
        event, actor, detail = (entry[k] for k in ("event", "actor", "detail")) if isinstance(entry, dict) \
            else entry[2:5]
        if actor == "alice" and isinstance(detail.get("peer"), dict):
            by_peer.setdefault(detail["peer"]["fingerprint"], []).append((event, detail["peer"]))
    for who, issued, field in (("application", pki["client"], "claimed_client"), ("agent", agent, "client")):
        events = by_peer[_fingerprint(issued.cert)]
        names = [event for event, _ in events]
        assert {"login", "object-create", "object-destroy"} <= set(names), (who, names)
        for event, peer in events:
            assert peer["address"].startswith("127.0.0.1:") and peer["subject"].endswith(f"CN={issued.cert.stem}")
            if event == "login":
                assert peer[field] == claimed and ({"client", "claimed_client"} - {field}).isdisjoint(peer), peer
