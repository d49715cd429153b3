"""HSMs a control plane manages: the cluster key and CSR, initialisation with the owner's certificate, TLS under
the owner's trust anchor, mutual TLS (the fleet before initialisation, then also the owner's clients), the
appliance identity by certificate, and joins the appliance admitted."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

import strongroom.client as sdk
from strongroom.client.connection import open_connection
from strongroom.errors import PinIncorrect, StrongroomError
from strongroom.vendor import CKU_APPLIANCE
from strongroom.vocab import CKF, CKM, CKR

from .nodes import TEST_HASH_MEMORY_KIB, start_node, strongroom
from .pki import Issued, OwnerCA, client_certificate, tls_refusal

ADMIN_PW = "admin-pass-1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("managed")
    assert strongroom("fleet", "init", "--dir", str(root / "fleet")).returncode == 0
    assert strongroom("fleet", "appliance", "--fleet", str(root / "fleet"), "--out",
                      str(root / "control")).returncode == 0
    return root


def _provision(root: Path, name: str) -> Path:
    data = root / name
    done = strongroom("fleet", "provision", "--fleet", str(root / "fleet"), "--data-dir", str(data), "--name", name)
    assert done.returncode == 0, done.stderr
    return data


def _appliance_context(root: Path, trust: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # a fleet identity names the HSM, not its address
    ctx.load_verify_locations(cafile=str(root / "fleet" / "fleet-ca.crt"))
    if trust is not None:
        ctx.load_verify_locations(cafile=str(trust))
    ctx.load_cert_chain(str(root / "control" / "appliance.crt"), str(root / "control" / "appliance.key"))
    return ctx


def _as_appliance(endpoint: str, ctx: ssl.SSLContext, *calls):
    async def run():
        conn = await open_connection(endpoint, ctx)
        try:
            session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION))
            await conn.call("login", session, CKU_APPLIANCE, "")
            return [await conn.call(name, *(session if a is SESSION else a for a in args)) for name, *args in calls]
        finally:
            conn.close()

    return asyncio.run(run())


SESSION = object()


def _eventually(check, timeout_s: float = 20.0) -> None:
    """Wait for ``check()`` to hold (replicated, then followed by each HSM within a second or two)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_managed_cluster_is_initialised_by_its_owner_and_grows_through_admissions(fleet):
    root = fleet
    founder = _provision(root, "hsm0")
    done = strongroom("init-node", "--data-dir", str(founder), "--cluster-id", "cluster-managed0001",
                      "--cluster-key", "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB)
    assert done.returncode == 0, done.stderr
    first = start_node(founder, None)
    procs = [first]
    try:
        appliance = _appliance_context(root)
        # the initial admin password: made by the HSM, read by the appliance (the control plane's PreCoPassword)
        [csr, preco] = _as_appliance(first.endpoint, appliance, ("cluster_csr",), ("initial_password", SESSION))
        assert len(preco) == 24 and preco != "password"
        request = x509.load_pem_x509_csr(csr.encode())
        assert request.is_signature_valid and "cluster-managed0001" in request.subject.rfc4514_string()
        owner, stranger = OwnerCA(root), OwnerCA(root, "stranger-ca")
        owner_client = client_certificate(root, "owner-client", issuer=owner.issued)
        appliance_cert = Issued(root / "control" / "appliance.crt", root / "control" / "appliance.key")
        # before InitializeCluster only the fleet may talk: the appliance, not even the owner's clients
        assert tls_refusal(first.endpoint, appliance_cert) is None
        assert tls_refusal(first.endpoint, owner_client) is not None
        assert tls_refusal(first.endpoint) is not None
        # what InitializeCluster refuses: a certificate from another CA; one fit neither to issue the HSMs'
        # certificates (a CA's) nor to be served by them (a TLS server's): here, for TLS clients only
        client_only = owner.sign(csr.encode(), ca=False, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))
        for certificate, anchor in ((stranger.sign(csr.encode()), owner.pem), (client_only, owner.pem)):
            with pytest.raises(StrongroomError) as info:
                _as_appliance(first.endpoint, appliance,
                              ("initialize_cluster", SESSION, certificate.decode(), anchor.decode()))
            assert info.value.ckr == CKR.SIGNATURE_INVALID
        signed = owner.sign(csr.encode())
        _as_appliance(first.endpoint, appliance, ("initialize_cluster", SESSION, signed.decode(), owner.pem.decode()))
        config = {"endpoints": [first.endpoint], "trust_anchor": str(owner.path),
                  "client_cert": str(owner_client.cert), "client_key": str(owner_client.key)}
        deadline = time.monotonic() + 20
        while True:  # the HSM serves a certificate under the cluster key within a second or two
            try:
                with sdk.connect(config) as cluster:
                    admin = cluster.login("admin", preco, role="admin")
                    break
            except StrongroomError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # once initialised, the owner's clients and the fleet are served; no certificate, a self-made one or
        # one from another CA is refused during the handshake
        attacks = {"none": None, "self-signed": client_certificate(root, "self-signed"),
                   "another CA's": client_certificate(root, "stranger-client", issuer=stranger.issued),
                   "claiming the owner CA's name": client_certificate(root, "same-name", issuer_name="owner-ca"),
                   "issued by the owner's client": client_certificate(root, "leaf-issued", issuer=owner_client)}
        refusals = {what: tls_refusal(first.endpoint, cert) for what, cert in attacks.items()}
        assert all(reason is not None for reason in refusals.values()), refusals
        assert tls_refusal(first.endpoint, owner_client) is None
        assert tls_refusal(first.endpoint, appliance_cert) is None
        with sdk.connect(config) as cluster:
            with pytest.raises(PinIncorrect) as refused:
                cluster.login("admin", "password", role="admin")
            assert refused.value.ckr == CKR.PIN_INCORRECT
            admin = cluster.login("admin", preco, role="admin")
            admin.activate(ADMIN_PW)
            admin.create_user("alice", "alice-pass-1")
            admin.close()
        with sdk.connect(config) as cluster, cluster.login("alice", "alice-pass-1") as alice:
            key = alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label="managed", encrypt=True, decrypt=True)
            sealed = key.encrypt(b"owner-rooted TLS")
        with pytest.raises(StrongroomError) as gone:  # activated: the initial password is not kept
            _as_appliance(first.endpoint, _appliance_context(root, owner.path), ("initial_password", SESSION))
        assert gone.value.ckr == CKR.ACTION_PROHIBITED
        # a second HSM joins with no password: the control plane admits its fleet certificate first
        second = _provision(root, "hsm1")
        join = root / "join.json"
        join.write_text(json.dumps(config))
        with pytest.raises(RuntimeError):  # not admitted: the member refuses it
            start_node(second, None, extra=("--join-config", str(join)))
        certificate = (second / "identity.crt").read_bytes()
        [fingerprint] = _as_appliance(first.endpoint, _appliance_context(root, owner.path),
                                      ("admit_member", SESSION, certificate))
        assert fingerprint == x509.load_pem_x509_certificate(certificate).fingerprint(hashes.SHA256()).hex()
        procs.append(start_node(second, None, extra=("--join-config", str(join))))
        both = {**config, "endpoints": [p.endpoint for p in procs]}
        deadline = time.monotonic() + 30
        while True:
            try:
                with sdk.connect({**both, "endpoints": [procs[1].endpoint]}) as cluster, \
                        cluster.login("alice", "alice-pass-1") as alice:
                    assert alice.key(key.handle).decrypt(sealed) == b"owner-rooted TLS"
                    break
            except StrongroomError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        # the member that joined trusts the owner's clients too, and refuses the others
        assert tls_refusal(procs[1].endpoint, owner_client) is None
        assert all(tls_refusal(procs[1].endpoint, cert) is not None for cert in attacks.values())
        # an admin registers a partner's client CA: its clients are served by every HSM, until unregistered
        partner = OwnerCA(root, "partner-ca")
        partner_client = client_certificate(root, "partner-client", issuer=partner.issued)
        assert all(tls_refusal(p.endpoint, partner_client) is not None for p in procs)
        with sdk.connect(both) as cluster, cluster.login("admin", ADMIN_PW, role="admin") as admin:
            fingerprint = admin.call("register_client_ca", partner.pem.decode())
            listed = admin.call("list_client_cas")
            assert [(c["source"], c["fingerprint"]) for c in listed][1:] == [("registered", fingerprint)]
            assert listed[0]["source"] == "owner"
            with sdk.connect(both) as other, other.login("alice", "alice-pass-1") as alice, \
                    pytest.raises(StrongroomError) as info:
                alice.call("register_client_ca", stranger.pem.decode())
            assert info.value.ckr == CKR.USER_NOT_LOGGED_IN
            _eventually(lambda: all(tls_refusal(p.endpoint, partner_client) is None for p in procs))
            admin.call("unregister_client_ca", fingerprint)
            _eventually(lambda: all(tls_refusal(p.endpoint, partner_client) is not None for p in procs))
        assert all(tls_refusal(p.endpoint, owner_client) is None for p in procs)
        # a password-less appliance login needs the appliance certificate
        with pytest.raises(PinIncorrect) as info, sdk.connect(both) as cluster:
            cluster.login("control_plane", "", role="appliance")
        assert info.value.ckr == CKR.PIN_INCORRECT  # no such user: the empty password is no appliance login
    finally:
        for proc in procs:
            proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.log_text(), proc.log_text()

    # an admission serves one join
    from strongroom.node import HSM

    hsm = HSM(procs[0].data_dir)
    try:
        assert hsm.machine.admitted() == set()
    finally:
        hsm.close()
