"""The cluster's mode as a PKCS#11 application sees it through p11-kit's client: pkcs11-tool's mechanism list
(C_GetMechanismList/Info) and its RSA-1024 key pair generation, against a FIPS and a NON_FIPS cluster."""

from __future__ import annotations

import os
import subprocess

import pytest

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT, serving_agent, with_agent_certificate


@pytest.fixture(scope="module")
def legacy_agent(non_fips_node, pki, tmp_path_factory):
    _, config = non_fips_node
    folder = tmp_path_factory.mktemp("legacy-agent")
    with serving_agent(with_agent_certificate(config, pki, folder), folder) as socket_path:
        yield socket_path


def _tool(socket_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={socket_path}"})


def _mechanisms(socket_path) -> dict[str, str]:
    listed = _tool(socket_path, "-M")
    assert listed.returncode == 0, listed.stderr
    rows = [line.strip() for line in listed.stdout.splitlines() if line.startswith("  ")]
    return {row.split(",")[0]: row for row in rows}


def test_the_mechanism_list_and_key_sizes_follow_the_clusters_mode(agent, legacy_agent):
    fips, legacy = _mechanisms(agent), _mechanisms(legacy_agent)
    assert "RSA-X-509" not in fips
    assert legacy["RSA-X-509"] == "RSA-X-509, keySize={1024,16384}, encrypt, decrypt, sign, verify"
    assert fips["SHA1-RSA-PKCS"] == "SHA1-RSA-PKCS, keySize={1024,16384}, verify"
    assert legacy["SHA1-RSA-PKCS"] == "SHA1-RSA-PKCS, keySize={1024,16384}, sign, verify"
    assert fips["RSA-PKCS-KEY-PAIR-GEN"].startswith("RSA-PKCS-KEY-PAIR-GEN, keySize={2048,4096}")
    assert legacy["RSA-PKCS-KEY-PAIR-GEN"].startswith("RSA-PKCS-KEY-PAIR-GEN, keySize={1024,4096}")
    pin = ("-l", "-p", f"alice:{ALICE_PW}")
    refused = _tool(agent, *pin, "--keypairgen", "--key-type", "rsa:1024", "--label", "mode-rsa-1024")
    assert refused.returncode != 0 and "CKR_KEY_SIZE_RANGE" in refused.stderr, refused.stdout + refused.stderr
    made = _tool(legacy_agent, *pin, "--keypairgen", "--key-type", "rsa:1024", "--label", "mode-rsa-1024",
                 "--usage-sign")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "RSA 1024 bits" in made.stdout
