"""Mutual TLS: a node that requires client certificates refuses clients without one from its CA, and the SDK
refuses a node whose certificate does not chain to its trust anchor."""

from __future__ import annotations

import pytest

import strongroom.client as sdk
from strongroom.vocab import CKR

from .nodes import init_node, start_node


@pytest.fixture(scope="module")
def mtls_node(pki, tmp_path_factory):
    data = tmp_path_factory.mktemp("mtls") / "hsm"
    init_node(data)
    proc = start_node(data, pki["server"], client_ca=pki["ca"], require_client_cert=True)
    yield proc
    proc.stop()


def _config(endpoint: str, anchor, cert=None) -> dict:
    config = {"endpoints": [endpoint], "trust_anchor": str(anchor.issued.cert), "connect_timeout_s": 5}
    if cert is not None:
        config.update(client_cert=str(cert.cert), client_key=str(cert.key))
    return config


def test_client_with_a_certificate_from_the_cluster_ca_is_served(mtls_node, pki):
    with sdk.connect(_config(mtls_node.endpoint, pki["ca"], pki["client"])) as cluster:
        assert cluster.hsm_info()["state"] == "operational"
        assert cluster.node["cluster_id"] == "cluster-test0000001"


def test_client_without_a_certificate_is_refused(mtls_node, pki):
    with pytest.raises(sdk.ConnectionLost) as info:
        sdk.connect(_config(mtls_node.endpoint, pki["ca"]))
    assert info.value.ckr == CKR.DEVICE_REMOVED and info.value.retryable


def test_client_with_a_certificate_from_another_ca_is_refused(mtls_node, pki):
    stranger_client = pki["stranger"].issue("stranger-client", server=False)
    with pytest.raises(sdk.ConnectionLost):
        sdk.connect(_config(mtls_node.endpoint, pki["ca"], stranger_client))


def test_node_not_chaining_to_the_trust_anchor_is_refused(node, pki):
    proc, _ = node
    with pytest.raises(sdk.ConnectionLost) as info:
        sdk.connect(_config(proc.endpoint, pki["stranger"]))
    assert "certificate" in info.value.message.lower()


def test_wrong_server_name_is_refused(node, pki):
    proc, _ = node
    config = {**_config(proc.endpoint, pki["ca"]), "server_name": "not-the-node.example"}
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
    with socket.create_connection((host, int(port)), timeout=5) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
