"""Every refusal carries its reason: in the node's and the agent's logs (the call, the ``CKR_*`` name, the reason,
never a PIN), in the SDK's exception and in ``strongroom-cli``'s error text. PKCS#11 itself has no room for a
message, so a python-pkcs11 application reads the reason in the agent's log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.errors import KeyNotWrappable
from strongroom.vocab import CKM

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT, agent_log

REASON = ("a sensitive key is not wrapped under a key that (or whose other half, or a copy) can decrypt: the wrapped "
          "bytes could be decrypted in clear; wrap with a key made for wrapping only")


def _lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_python_pkcs11_defaults_are_made_and_the_attack_refused_with_its_reason_in_the_logs(agent, node):
    """python-pkcs11's default AES key and RSA-2048 pair are made as it asks; wrapping a sensitive key under
    either (the first step of wrap-then-decrypt) is refused, and the agent's and the node's logs say why."""
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_refused.py")), str(P11_KIT_CLIENT)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # AES_ECB does not wrap, and Debian 12's client carries no AES mechanism that does: the AES key's attack runs
    # through a newer client in test_key_separation_agent.py
    assert out == {"aes": "MechanismInvalid", "rsa": "KeyNotWrappable", "data": "data", "value": "AttributeSensitive",
                   "sensitive": True}
    agent_text, node_text = agent_log(agent).read_text(), node[0].log_text()
    assert any(re.search(r"C_GetAttributeValue of object \d+ refused CKR_ATTRIBUTE_SENSITIVE: CKA_VALUE is "
                         r"sensitive: key material never leaves the HSM in clear$", line)
               for line in _lines(agent_text, "C_GetAttributeValue of object")), agent_text
    [line] = _lines(agent_text, "C_WrapKey refused CKR_KEY_NOT_WRAPPABLE")
    assert line.endswith(f"C_WrapKey refused CKR_KEY_NOT_WRAPPABLE: {REASON} "
                         f"(pid={line.split('pid=')[1].split()[0]} uid={os.getuid()} gid={os.getgid()})")
    assert " INFO strongroom.pkcs11: " in line
    [line] = _lines(node_text, "C_WrapKey refused CKR_KEY_NOT_WRAPPABLE")
    assert line.endswith(f"C_WrapKey refused CKR_KEY_NOT_WRAPPABLE: {REASON} (alice)")
    for text in (agent_text, node_text):
        assert ALICE_PW not in text  # the PIN crossed both, and is in neither log


def test_a_wrong_pin_is_logged_without_the_pin(agent, node):
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}"}
    done = subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "-l", "-p", "alice:not-the-pin-42",
                           "-O"], capture_output=True, text=True, timeout=120, env=env)
    assert "CKR_PIN_INCORRECT" in done.stdout + done.stderr
    agent_text, node_text = agent_log(agent).read_text(), node[0].log_text()
    assert _lines(agent_text, "C_Login refused CKR_PIN_INCORRECT: wrong username or password")
    assert _lines(node_text, "C_Login refused CKR_PIN_INCORRECT: wrong username or password (no login)")
    assert "not-the-pin-42" not in agent_text + node_text


def test_the_sdk_exception_and_the_cli_error_carry_the_reason(alice, node, tmp_path):
    both = alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label="both", decrypt=True, wrap=True)
    with pytest.raises(KeyNotWrappable) as raised:
        both.wrap(alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label="sensitive"))
    assert raised.value.message == str(raised.value) == REASON
    assert raised.value.ckr_name == "CKR_KEY_NOT_WRAPPABLE"
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps(node[1]))
    env = {**os.environ, "STRONGROOM_CLUSTER": str(cluster), "STRONGROOM_ROLE": "crypto-user",
           "STRONGROOM_PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "key", "wrap", "aes-pkcs5-pad",
                           "--payload-filter", "attr.label=sensitive", "--wrapping-filter", "attr.label=both"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"error_code": 1, "data": f"{REASON} (CKR_KEY_NOT_WRAPPABLE)"}
