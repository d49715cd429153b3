"""Integrity check of sealed rows on open, self-test failure, and zeroisation."""

from __future__ import annotations

import sqlite3

import pytest

from strongroom.crypto.params import Mechanism
from strongroom.errors import StoreIntegrityError, StrongroomError
from strongroom.node import HSM, State
from strongroom.vocab import CKA, CKM, CKR

from .conftest import FAST
from .keys import aes


def _events(path) -> list[str]:
    conn = sqlite3.connect(path / "hsm.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT event FROM audit ORDER BY seq")]
    finally:
        conn.close()


@pytest.mark.parametrize("tamper", [
    "UPDATE objects SET envelope = CAST(substr(envelope, 1, 40) || x'00' || substr(envelope, 42) AS BLOB)"
    " WHERE handle = {h}",
    "UPDATE objects SET envelope = substr(envelope, 1, 40) || x'00' || substr(envelope, 42) WHERE handle = {h}",
    "UPDATE objects SET label = x'ff00' WHERE handle = {h}",
    "UPDATE objects SET handle = handle + 1000 WHERE handle = {h}",
    "UPDATE objects SET version = version + 1 WHERE handle = {h}",
    "UPDATE objects SET label = 'forged' WHERE handle = {h}",
    "UPDATE users SET envelope = (SELECT envelope FROM users WHERE name = 'admin') WHERE name = 'alice'",
])
def test_altered_rows_are_refused_and_audited(hsm, alice, tamper):
    handle = aes(alice, label="victim")
    path = hsm.data_dir
    hsm.close()
    conn = sqlite3.connect(path / "hsm.sqlite")
    conn.execute(tamper.format(h=handle))
    conn.commit()
    conn.close()
    with pytest.raises(StoreIntegrityError) as info:
        HSM(path, settings=FAST)
    assert info.value.ckr == CKR.DEVICE_ERROR
    assert "refused" in info.value.message
    events = _events(path)
    assert events[-2:] == ["store-integrity-failure", "zeroize"]
    # the node stays zeroised: no key, no user, every operation refused
    node = HSM(path, settings=FAST)
    assert node.state == State.ZEROIZED and node.info()["token_objects"] == 0
    with pytest.raises(StrongroomError) as info:
        node.connect().open_session()
    assert info.value.ckr == CKR.DEVICE_ERROR
    assert node.store.verify_audit().ok
    node.close()


@pytest.mark.parametrize("fault", ["aes-gcm", "aes-kw", "sha-256", "hmac-sha256", "rsa", "ecdsa", "rng"])
def test_failed_self_test_enters_the_error_state(hsm, fault):
    path = hsm.data_dir
    hsm.close()
    node = HSM(path, settings=FAST, self_test_fault=fault)
    assert node.state == State.ERROR and fault in node.error_reason
    with pytest.raises(StrongroomError) as info:
        node.connect().open_session()
    assert info.value.ckr == CKR.DEVICE_ERROR
    last = node.store.audit_entries()[-1]
    assert (last.event, last.detail["passed"], last.detail["failed"]) == ("self-test", False, [fault])
    node.close()
    healthy = HSM(path, settings=FAST)
    assert healthy.state == State.OPERATIONAL
    assert all(healthy.info()["self_tests"].values())
    healthy.close()


def test_zeroize(hsm, alice, admin):
    aes(alice)
    path = hsm.data_dir
    admin.app.zeroize(admin.s)
    assert hsm.state == State.ZEROIZED
    with pytest.raises(StrongroomError) as info:
        alice.app.generate_key(alice.s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 16})
    assert info.value.ckr == CKR.DEVICE_ERROR
    assert not (path / "node.key").exists()
    conn = sqlite3.connect(path / "hsm.sqlite")
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed table names
              for t in ("objects", "users")]
    conn.close()
    assert counts == [0, 0]
    entries = hsm.store.audit_entries()
    assert (entries[-1].event, entries[-1].actor) == ("zeroize", "admin")
    assert hsm.store.verify_audit().ok


def test_audit_records_key_lifecycle(hsm, alice):
    key = aes(alice)
    alice.app.set_attribute_value(alice.s, key, {CKA.LABEL: "new"})
    alice.app.share(alice.s, key, "bob")
    alice.app.destroy_object(alice.s, key)
    tail = [(e.event, e.actor, e.detail.get("handle", e.detail.get("handles"))) for e in hsm.store.audit_entries()[-4:]]
    assert tail == [("key-generate", "alice", [key]), ("attribute-change", "alice", key),
                    ("key-share", "alice", key), ("object-destroy", "alice", key)]
    report = hsm.store.verify_audit()
    assert report.ok and report.entries == len(hsm.store.audit_entries())
