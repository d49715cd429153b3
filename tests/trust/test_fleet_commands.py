"""``strongroom fleet init`` and ``fleet provision`` as a new user runs them: JSON on stdout, nothing on stderr (no
library warning), and a fleet CA key that cannot sign certificates refused with a sentence."""

from __future__ import annotations

import json
import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519


def _strongroom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strongroom", *args], capture_output=True, text=True, timeout=60)


def test_fleet_init_and_provision_print_json_and_no_warning(tmp_path):
    made = _strongroom("fleet", "init", "--dir", str(tmp_path / "fleet"))
    assert (made.returncode, made.stderr) == (0, "")
    assert json.loads(made.stdout) == {"fleet_ca": str(tmp_path / "fleet" / "fleet-ca.crt")}
    provisioned = _strongroom("fleet", "provision", "--fleet", str(tmp_path / "fleet"), "--data-dir",
                              str(tmp_path / "hsm0"), "--name", "hsm0")
    assert (provisioned.returncode, provisioned.stderr) == (0, "")
    assert json.loads(provisioned.stdout) == {"data_dir": str(tmp_path / "hsm0"), "name": "hsm0"}


def test_a_fleet_ca_key_that_cannot_sign_is_refused_with_a_sentence(tmp_path):
    assert _strongroom("fleet", "init", "--dir", str(tmp_path / "fleet")).returncode == 0
    key = x25519.X25519PrivateKey.generate()
    (tmp_path / "fleet" / "fleet-ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    refused = _strongroom("fleet", "provision", "--fleet", str(tmp_path / "fleet"), "--data-dir",
                          str(tmp_path / "hsm0"), "--name", "hsm0")
    assert refused.returncode == 1
    assert "holds no key that signs certificates" in refused.stderr
    assert "Traceback" not in refused.stderr
