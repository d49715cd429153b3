"""The wrap mechanism table (src/strongroom/objects/wrap_mechanisms.py) and the legacy HMAC key types through the
agent, with python-pkcs11 on Debian 12's p11-kit 0.24 client and on Debian 13's 0.25 (the first to carry an AES
mechanism that wraps), each case with its exact code; and the ``CKA_EC_POINT`` form of Ed25519 keys (docs/pkcs11.md:
the PKCS#11 3.0 DER OCTET STRING, whichever form was given)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.vocab import CKK, CKR

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT
from .downloads import unreachable
from .newer_p11kit import client, default_cache

SCRIPT = Path(__file__).with_name("p11_wrap_table.py")
COMMON = {
    "RSA_PKCS wraps an AES key": CKR.OK,
    "RSA_PKCS_OAEP wraps an AES key": CKR.OK,
    "RSA_PKCS wraps an EC private key": CKR.KEY_NOT_WRAPPABLE,
    "RSA_PKCS_OAEP wraps an EC private key": CKR.KEY_NOT_WRAPPABLE,
    "RSA_PKCS_OAEP unwraps into a private key": CKR.TEMPLATE_INCONSISTENT,
    "CKK_SHA256_HMAC key type read back": CKK.SHA256_HMAC,
    "CKK_SHA256_HMAC signs with CKM_SHA256_HMAC": CKR.OK,
    "CKK_SHA256_HMAC signs with CKM_SHA384_HMAC": CKR.KEY_TYPE_INCONSISTENT,
    "Ed25519 CKA_EC_POINT given raw, read back": True,
    "Ed25519 CKA_EC_POINT given DER, read back": True,
}


def _env(agent: Path) -> dict[str, str]:
    return {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}


def _check(done: subprocess.CompletedProcess[str], expected: dict[str, int], flags: dict[str, list[bool]]) -> None:
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out.pop("flags") == flags
    assert out == {name: int(value) for name, value in expected.items()}


def test_wrap_table_and_legacy_hmac_keys_through_p11_kit_0_24(agent):
    done = subprocess.run([sys.executable, str(SCRIPT), str(P11_KIT_CLIENT)], capture_output=True, text=True,
                          timeout=120, env=_env(agent))
    _check(done, COMMON, {"RSA_PKCS": [True, True], "RSA_PKCS_OAEP": [True, True]})


@pytest.mark.network
def test_wrap_table_and_legacy_hmac_keys_through_the_newer_client(agent):
    newer = client("trixie", default_cache())
    if newer is None:
        unreachable("Debian's package registry cannot be reached")
    done = subprocess.run(newer.command([sys.executable, str(SCRIPT), str(newer.module), "aes"]),
                          capture_output=True, text=True, timeout=300, env=_env(agent))
    _check(done, {**COMMON, "AES_CBC_PAD wraps an EC private key": CKR.OK},
           {"RSA_PKCS": [True, True], "RSA_PKCS_OAEP": [True, True], "AES_CBC_PAD": [True, True],
            "AES_GCM": [True, True]})
