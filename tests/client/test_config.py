"""The client configuration names whose client certificate to present: the SDK and the agent read
``client_cert``/``client_key``, the command line ``cli_cert``/``cli_key`` when the file names them."""

from __future__ import annotations

from pathlib import Path

from strongroom.client import ClientConfig

BASE = {"endpoints": ["127.0.0.1:2225"], "trust_anchor": "owner-ca.crt", "client_cert": "clients/agent.crt",
        "client_key": "clients/agent.key"}


def test_the_sdk_reads_the_client_certificate_relative_to_the_file(tmp_path):
    config = ClientConfig.from_dict({**BASE, "cli_cert": "clients/cli.crt", "cli_key": "clients/cli.key"},
                                    base=tmp_path)
    assert (config.client_cert, config.client_key) == (tmp_path / "clients/agent.crt", tmp_path / "clients/agent.key")


def test_the_command_line_reads_its_own_certificate_else_the_clients():
    config = ClientConfig.from_dict({**BASE, "cli_cert": "clients/cli.crt", "cli_key": "clients/cli.key"},
                                    certificate="cli")
    assert (config.client_cert, config.client_key) == (Path("clients/cli.crt"), Path("clients/cli.key"))
    config = ClientConfig.from_dict(BASE, certificate="cli")
    assert config.client_cert == Path("clients/agent.crt")
