"""Mutual TLS on a hand-assembled node: every client presents a certificate from the node's client CA, or is
refused during the TLS handshake; the SDK refuses a node whose certificate does not chain to its trust anchor."""

from __future__ import annotations

import pytest

import strongroom.client as sdk
from strongroom.vocab import CKR

from ..fixtures.cluster import client_config
from .nodes import strongroom
from .pki import client_certificate, tls_refusal


def test_the_client_certificate_the_cluster_ca_issued_is_served(node, pki):
    proc, config = node
    assert tls_refusal(proc.endpoint, pki["client"]) is None
    with sdk.connect(config) as cluster:
        assert cluster.hsm_info()["state"] == "operational"
        assert cluster.node["cluster_id"] == "cluster-test0000001"


def test_a_client_without_a_certificate_is_refused_at_the_handshake(node):
    proc, _ = node
    assert tls_refusal(proc.endpoint) is not None


def test_forged_client_certificates_are_refused_at_the_handshake(node, pki, tmp_path):
    proc, _ = node
    ca_name = "cluster-ca"
    attacks = {
        "self-signed": client_certificate(tmp_path, "self-signed"),
        "another CA's": pki["stranger"].issue("stranger-client", server=False),
        "claiming the cluster CA's name": client_certificate(tmp_path, "same-name", issuer_name=ca_name),
        "issued by a client certificate": client_certificate(tmp_path, "from-a-leaf", issuer=pki["client"]),
        "expired": client_certificate(tmp_path, "expired", issuer=pki["ca"].issued, days=-1),
        # a node's own certificate is for servers only: it cannot log in as a client
        "the node's server certificate": pki["server"],
        "from the cluster CA without clientAuth": pki["ca"].issue("server-only", server=True,
                                                                  folder=tmp_path),
    }
    refusals = {what: tls_refusal(proc.endpoint, cert) for what, cert in attacks.items()}
    assert all(reason is not None for reason in refusals.values()), refusals
    assert proc.process.poll() is None and tls_refusal(proc.endpoint, pki["client"]) is None


def test_no_session_is_resumed(node, pki):
    """TLS 1.3 resumption skips the client certificate: the node issues no ticket, so no client reconnects on
    a session that once presented a good certificate (since expired, or from a CA since unregistered)."""
    import socket
    import ssl

    proc, _ = node
    host, _, port = proc.endpoint.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(str(pki["client"].cert), str(pki["client"].key))
    session = None
    for _ in range(2):
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=host, session=session) as tls:
            assert not tls.session_reused
            tls.settimeout(0.5)
            try:  # tickets would arrive after the handshake
                tls.recv(1)
            except (TimeoutError, ssl.SSLError):
                pass
            session = tls.session
            assert session is not None and not session.has_ticket


def test_the_sdk_without_a_client_certificate_fails_with_connection_lost(node):
    _, config = node
    bare = {k: v for k, v in config.items() if k not in ("client_cert", "client_key")}
    with pytest.raises(sdk.ConnectionLost) as info:
        sdk.connect({**bare, "connect_timeout_s": 5, "timeout_s": 5})
    assert info.value.ckr == CKR.DEVICE_REMOVED and info.value.retryable
    assert "refuses a client certificate" in info.value.message, info.value.message


def test_the_sdk_with_a_foreign_client_certificate_says_the_node_refuses_it(node, pki):
    _, config = node
    stranger = pki["stranger"].issue("stranger-sdk", server=False)
    with pytest.raises(sdk.ConnectionLost) as info:
        sdk.connect({**config, "client_cert": str(stranger.cert), "client_key": str(stranger.key),
                     "connect_timeout_s": 5, "timeout_s": 5})
    assert "refuses a client certificate that its owner CA" in info.value.message, info.value.message


def test_a_node_needs_a_client_ca(pki, tmp_path):
    done = strongroom("node", "--data-dir", str(tmp_path / "hsm"), "--listen", "127.0.0.1:0", "--cert",
                      str(pki["server"].cert), "--key", str(pki["server"].key))
    assert done.returncode != 0 and "--client-ca" in done.stderr


def test_node_not_chaining_to_the_trust_anchor_is_refused(node, pki):
    proc, _ = node
    config = {**client_config(pki, [proc.endpoint]), "trust_anchor": str(pki["stranger"].issued.cert),
              "connect_timeout_s": 5}
    with pytest.raises(sdk.ConnectionLost) as info:
        sdk.connect(config)
    assert "certificate" in info.value.message.lower()


def test_wrong_server_name_is_refused(node, pki):
    proc, _ = node
    config = client_config(pki, [proc.endpoint], server_name="not-the-node.example", connect_timeout_s=5)
    with pytest.raises(sdk.ConnectionLost):
        sdk.connect(config)


def test_tls_below_1_3_is_refused(node, pki):
    import socket
    import ssl

    proc, _ = node
    host, _, port = proc.endpoint.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(str(pki["ca"].issued.cert))
    ctx.load_cert_chain(str(pki["client"].cert), str(pki["client"].key))
    with socket.create_connection((host, int(port)), timeout=5) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
