"""A real node process with real certificates, an activated admin and two crypto users."""

from __future__ import annotations

import pytest

import strongroom.client as sdk

from .nodes import init_node, start_node
from .pki import CA

PRECO = "initial-pass"
ADMIN_PW = "admin-pass-1"
ALICE_PW = "alice-pass-1"
BOB_PW = "bob-pass-11"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = CA(folder, "cluster-ca")
    return {"ca": ca, "server": ca.issue("node", server=True), "client": ca.issue("client", server=False),
            "stranger": CA(folder, "stranger-ca"), "folder": folder}


@pytest.fixture(scope="module")
def node(pki, tmp_path_factory):
    data = tmp_path_factory.mktemp("node") / "hsm"
    init_node(data, PRECO)
    proc = start_node(data, pki["server"], client_ca=pki["ca"])
    config = {"endpoints": [proc.endpoint], "trust_anchor": str(pki["ca"].issued.cert)}
    with sdk.connect(config) as cluster:
        admin = cluster.login("admin", PRECO, role="admin")
        admin.activate(ADMIN_PW)
        admin.create_user("alice", ALICE_PW)
        admin.create_user("bob", BOB_PW)
        admin.close()
    yield proc, config
    proc.stop()
    log = proc.log_text()
    assert proc.process.returncode == 0, log
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def cluster(node):
    _, config = node
    with sdk.connect(config) as c:
        yield c


@pytest.fixture(scope="module")
def alice(cluster):
    session = cluster.login("alice", ALICE_PW)
    yield session
