"""Every audit entry of a connection's calls names the peer the TLS handshake authenticated (certificate subject
and fingerprint, address); the application a client agent names is recorded as ``client`` only from a peer whose
verified certificate marks it as an agent, and as ``claimed_client`` from anyone else."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from strongroom.errors import PinIncorrect
from strongroom.mechanism_params import Mechanism
from strongroom.node import Application
from strongroom.node.peer import NONE, PeerIdentity
from strongroom.vocab import CKA, CKM, CKO, CKU

from ..cluster.pki import CA, issue_agent
from .conftest import ADMIN_PW, ALICE_PW

# node-internal events: no connection asked for them
_INTERNAL = {"initialize", "self-test", "cluster-create", "change-refused", "snapshot-install"}


def _der(path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_every_entry_of_a_connections_calls_names_its_certificate_and_address(hsm, tmp_path):
    client = CA(tmp_path, "owner-ca").issue("billing-app", server=False)
    der = _der(client.cert)
    identity = PeerIdentity.of_connection(("192.0.2.7", 40001), der, verified=True)
    assert (identity.subject, identity.fingerprint, identity.agent) == (
        "CN=billing-app", hashlib.sha256(der).hexdigest(), False)
    first = len(hsm.store.audit_entries())

    app = Application(hsm, identity)
    s = app.open_session()
    with pytest.raises(PinIncorrect):
        app.login(s, CKU.USER, "mallory:wrong-password")
    app.login(s, CKU.USER, f"alice:{ALICE_PW}")
    key = app.generate_key(s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 32, CKA.TOKEN: True, CKA.LABEL: "k"})
    wrapping = app.generate_key(s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 32, CKA.TOKEN: True, CKA.WRAP: True,
                                                                 CKA.UNWRAP: True})
    app.set_attribute_value(s, key, {CKA.LABEL: "k2"})
    app.share(s, key, "bob")
    app.wrap_key(s, Mechanism(CKM.AES_KEY_WRAP_PAD), wrapping, key)
    data = app.create_object(s, {CKA.CLASS: CKO.DATA, CKA.TOKEN: True})
    app.destroy_object(s, data)
    app.logout(s)
    app.login(s, CKU.SO, f"admin:{ADMIN_PW}")
    app.create_user(s, "carol", "carol-pass-1", "crypto-user")
    app.change_password(s, "carol", "carol-pass-2")
    app.delete_user(s, "carol")
    app.close_all_sessions()

    entries = [e for e in hsm.store.audit_entries()[first:] if e.event not in _INTERNAL]
    assert len(entries) >= 14
    want = {"address": "192.0.2.7:40001", "subject": "CN=billing-app", "fingerprint": hashlib.sha256(der).hexdigest()}
    assert [e.event for e in entries if e.detail.get("peer") != want] == []


def test_a_client_string_is_recorded_as_client_only_from_a_verified_agent(hsm, tmp_path):
    ca = CA(tmp_path, "owner-ca")
    agent_der = _der(issue_agent(ca, tmp_path).cert)
    plain_der = _der(ca.issue("app-host", server=False).cert)
    cases = {"agent": (agent_der, True), "unverified agent": (agent_der, False), "application": (plain_der, True),
             "no certificate": (None, False)}
    recorded = {}
    for name, (der, verified) in cases.items():
        identity = PeerIdentity.of_connection(("198.51.100.1", 5000), der, verified)
        app = Application(hsm, identity)
        s = app.open_session()
        before = len(hsm.store.audit_entries())
        app.login(s, CKU.USER, f"alice:{ALICE_PW}", client="pid=1 uid=0 gid=0")
        [login] = [e for e in hsm.store.audit_entries()[before:] if e.event == "login"]  # this login's, and one
        recorded[name] = login.detail["peer"]
        app.close_all_sessions()
    assert recorded["agent"]["client"] == "pid=1 uid=0 gid=0" and "claimed_client" not in recorded["agent"]
    for name in ("unverified agent", "application", "no certificate"):
        assert recorded[name]["claimed_client"] == "pid=1 uid=0 gid=0" and "client" not in recorded[name], name
    assert recorded["no certificate"]["subject"] == recorded["no certificate"]["fingerprint"] == NONE
    assert recorded["agent"]["subject"] == "OU=strongroom-agent,CN=agent"  # RFC 4514: the last RDN first


def test_a_connection_without_a_certificate_or_address_is_recorded_as_none(hsm):
    assert PeerIdentity.of_connection(None, None, True).audit() == {"address": NONE, "subject": NONE,
                                                                    "fingerprint": NONE}
    assert PeerIdentity.of_connection(("::1", 9, 0, 0), b"not a certificate", True).audit() == {
        "address": "::1:9", "subject": NONE, "fingerprint": hashlib.sha256(b"not a certificate").hexdigest()}
