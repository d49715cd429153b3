"""The client agent in front of real nodes, for PKCS#11 applications."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..cluster.pki import issue_agent

# Debian's p11-kit-modules (installed by `make test`), under the machine's multiarch directory
P11_KIT_CLIENT = next(iter(sorted(Path("/usr/lib").glob("*/pkcs11/p11-kit-client.so"))), Path("p11-kit-client.so"))
P256 = bytes.fromhex("06082a8648ce3d030107")


def agent_log(socket_path: Path) -> Path:
    """The log file of the agent serving ``socket_path``."""
    return socket_path.with_name("agent.log")


def with_agent_certificate(config: dict, pki: dict, folder: Path) -> dict:
    """The cluster ``config`` with a client certificate (issued into ``folder``) that marks its holder as an
    agent."""
    issued = issue_agent(pki["ca"], folder)
    return {**config, "client_cert": str(issued.cert), "client_key": str(issued.key)}


@contextmanager
def serving_agent(config: dict, folder: Path, *extra: str) -> Iterator[Path]:
    """A ``strongroom client`` process for the cluster ``config``; yields its socket. Its log (stderr) goes to
    :func:`agent_log`; it must hold no traceback and the agent must stop cleanly on SIGTERM."""
    (folder / "cluster.json").write_text(json.dumps(config))
    socket_path = folder / "p11.sock"
    with agent_log(socket_path).open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "strongroom", "client", "--config",
                                    str(folder / "cluster.json"), "--socket", str(socket_path), *extra],
                                   stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()
        assert line, agent_log(socket_path).read_text()
        assert json.loads(line)["socket"] == str(socket_path)
        yield socket_path
    finally:
        process.terminate()
        code = process.wait(15)
    errors = agent_log(socket_path).read_text()
    assert code == 0, errors
    assert "Traceback" not in errors, errors
    assert "never retrieved" not in errors, errors


@pytest.fixture(scope="module")
def agent(node, pki, tmp_path_factory):
    """The agent with a certificate that marks it as one: the nodes record the processes it names as ``client``."""
    _, config = node
    folder = tmp_path_factory.mktemp("agent")
    with serving_agent(with_agent_certificate(config, pki, folder), folder) as socket_path:
        yield socket_path
