"""``strongroom up --mode``: a NON_FIPS cluster from nothing; the HSM that joins learns the mode from the cluster;
``DescribeClusters``, ``strongroom-cli cluster hsm-info`` and cluster.json show it; a restart asking for the other
mode keeps the cluster's and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import strongroom.client as sdk
from strongroom.control.api_client import ControlClient
from strongroom.errors import KeySizeRange
from strongroom.vocab import CKA, CKM

from .nodes import TEST_HASH_MEMORY_KIB
from .test_up import _stopped_cleanly


def _up(data: Path, *extra: str) -> tuple[subprocess.Popen, list[dict]]:
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "up", "--data-dir", str(data), "--hsms", "2",
                                "--json", "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB, *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in process.stdout:
        lines.append(json.loads(line))
        if lines[-1].get("ready"):
            return process, lines
    raise AssertionError("no 'ready': " + json.dumps(lines) + process.stderr.read())


def _rsa_1024(data: Path) -> None:
    user = json.loads((data / "credentials.json").read_text())["crypto_user"]
    with sdk.connect(data / "cluster.json") as cluster, cluster.login(user["username"], user["password"]) as s:
        public, _ = s.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 1024, CKA.VERIFY: True},
                                        {CKA.SIGN: True})
        assert public[CKA.MODULUS_BITS] == 1024


@pytest.mark.slow
def test_a_non_fips_cluster_keeps_its_mode_on_every_hsm_and_across_restarts(tmp_path):
    data = tmp_path / "var"
    process, _ = _up(data, "--mode", "NON_FIPS")
    try:
        summary = json.loads((data / "cluster.json").read_text())
        assert summary["mode"] == "NON_FIPS"
        keys = json.loads((data / "credentials.json").read_text())["control_plane"]
        control = ControlClient(summary["control_plane_url"], keys["access_key_id"], keys["secret_access_key"],
                                keys["region"], str(data / summary["control_plane_ca"]))
        [cluster] = control.call("DescribeClusters")["Clusters"]
        assert cluster["Mode"] == "NON_FIPS"
        info = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "--cluster", str(data / "cluster.json"),
                               "cluster", "hsm-info"], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ))
        assert info.returncode == 0, info.stdout + info.stderr
        hsms = json.loads(info.stdout)["data"]["hsms"]
        assert [h["fips-state"] for h in hsms] == ["0 [non-FIPS mode]"] * 2  # the founder and the one that joined
        _rsa_1024(data)
    finally:
        _stopped_cleanly(process, data)
    process, lines = _up(data, "--mode", "FIPS")
    try:
        steps = [line.get("step", "") for line in lines]
        cluster_id = summary["cluster_id"]
        assert (f"cluster {cluster_id} keeps its mode NON_FIPS: a cluster's mode is fixed when it is created "
                "(--mode FIPS applies to a new data directory)") in steps, steps
        assert json.loads((data / "cluster.json").read_text())["mode"] == "NON_FIPS"
        _rsa_1024(data)
    finally:
        _stopped_cleanly(process, data)


@pytest.mark.slow
def test_a_cluster_is_fips_unless_asked(tmp_path):
    data = tmp_path / "var"
    process, _ = _up(data)
    try:
        assert json.loads((data / "cluster.json").read_text())["mode"] == "FIPS"
        with pytest.raises(KeySizeRange):
            _rsa_1024(data)
    finally:
        _stopped_cleanly(process, data)
