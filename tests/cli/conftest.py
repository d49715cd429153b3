"""One real node per test module, and the cluster activated with the crypto users alice and bob."""

from __future__ import annotations

import json

import pytest

from ..cluster.nodes import init_node, start_node
from ..fixtures.cluster import client_config
from .runner import ADMIN_PW, cli, initial


@pytest.fixture(scope="module")
def cluster_file(pki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    init_node(folder / "hsm")
    proc = start_node(folder / "hsm", pki["server"], client_ca=pki["ca"])
    path = folder / "cluster.json"
    path.write_text(json.dumps(client_config(pki, [proc.endpoint])))
    yield path
    proc.stop()


@pytest.fixture
def activated(cluster_file):
    """The cluster activated with alice and bob, whether or not an earlier test of the module did it."""
    admin = f"admin:{ADMIN_PW}"
    listed = cli(cluster_file, "user", "list", pin=admin, role="admin", ok=None)
    if listed is None:  # the admin password is not set yet: activate with the initial one
        cli(cluster_file, "cluster", "activate", "--password", ADMIN_PW, pin=f"admin:{initial(cluster_file)}",
            role="admin")
        listed = cli(cluster_file, "user", "list", pin=admin, role="admin")
    roles = {u["username"]: u["role"] for u in listed["users"]}
    for name in ("alice", "bob"):
        if name not in roles:
            cli(cluster_file, "user", "create", "--username", name, "--role", "crypto-user", "--password",
                f"{name}-pass-1", pin=admin, role="admin")
    return cluster_file
