"""Every key-management attack of tests/node/separation_attacks.py through the agent, with python-pkcs11 on a
p11-kit 0.25 client (Debian 13: the first to carry an AES mechanism that wraps), each with its exact code; and
python-pkcs11's default AES key and RSA-2048 pair, made as it asks, refusing to wrap a sensitive key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.vocab import CKR

from ..fixtures.cluster import ALICE_PW
from ..node.separation_attacks import ATTACKS
from .downloads import unreachable
from .newer_p11kit import client, default_cache

pytestmark = pytest.mark.network


def test_each_attack_is_refused_through_the_agent_with_its_code(agent):
    newer = client("trixie", default_cache())
    if newer is None:
        unreachable("Debian's package registry cannot be reached")
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run(newer.command([sys.executable, str(Path(__file__).with_name("p11_separation.py")),
                                         str(newer.module)]), capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    expected = {attack.name: int(attack.code) for attack in ATTACKS if not attack.needs}
    expected["python-pkcs11 default AES key wraps a sensitive key"] = int(CKR.KEY_NOT_WRAPPABLE)
    expected["python-pkcs11 default RSA key wraps a sensitive key"] = int(CKR.KEY_NOT_WRAPPABLE)
    assert {name: CKR(code).name for name, code in json.loads(done.stdout).items()} == {
        name: CKR(code).name for name, code in expected.items()}
