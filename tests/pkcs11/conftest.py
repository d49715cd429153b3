"""The client agent in front of a real node, for PKCS#11 applications."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Debian's p11-kit-modules (installed by `make test`), under the machine's multiarch directory
P11_KIT_CLIENT = next(iter(sorted(Path("/usr/lib").glob("*/pkcs11/p11-kit-client.so"))), Path("p11-kit-client.so"))
P256 = bytes.fromhex("06082a8648ce3d030107")


@pytest.fixture(scope="module")
def agent(node, tmp_path_factory):
    _, config = node
    folder = tmp_path_factory.mktemp("agent")
    (folder / "cluster.json").write_text(json.dumps(config))
    socket_path = folder / "p11.sock"
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "client", "--config", str(folder / "cluster.json"),
                                "--socket", str(socket_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert json.loads(process.stdout.readline())["socket"] == str(socket_path)
    yield socket_path
    process.terminate()
    assert process.wait(15) == 0
    assert "Traceback" not in process.stderr.read()
