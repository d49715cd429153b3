"""Public objects through the agent and Debian 12's p11-kit client, nobody logged in: public session keys of every
class made and used, a public token key found and used, private and token keys refused (docs/pkcs11.md "Public
objects")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from strongroom.vocab import CKA, CKM

from .conftest import P11_KIT_CLIENT, P256


def test_a_public_session_makes_and_uses_public_keys_and_a_public_token_key(agent, alice):
    public, private = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                              {CKA.SIGN: True}, label="public-verifier")
    signature = private.sign(bytes(32), CKM.ECDSA)
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_public.py")), str(P11_KIT_CLIENT),
                           "public-verifier", signature.hex()], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "aes": 32, "rsa": True, "token public key": True,
        "found": ["PRIVATE_KEY", "PUBLIC_KEY", "PUBLIC_KEY", "SECRET_KEY"],
        "private session key": "UserNotLoggedIn", "public token key": "UserNotLoggedIn"}
    public.destroy()
    private.destroy()
