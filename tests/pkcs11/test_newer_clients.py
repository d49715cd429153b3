"""Applications on hosts with newer p11-kit clients: 0.25.5 (Debian 13, protocol version 1) and 0.26.x (Debian
sid, version 2, whose mechanism encoding differs), fetched from Debian's registry and run through their own glibc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.vocab import CKM

from ..fixtures.cluster import ALICE_PW
from .downloads import unreachable
from .newer_p11kit import client, default_cache

pytestmark = pytest.mark.network

HERE = Path(__file__).parent
KEY = bytes(range(32))


@pytest.fixture(scope="module", params=["trixie", "sid"])
def newer(request):
    found = client(request.param, default_cache())
    if found is None:
        unreachable("Debian's package registry cannot be reached")
    return found


def _env(agent: Path) -> dict[str, str]:
    return {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}


def test_newer_client_carries_aes_gcm_cbc_ctr_ecdh_and_hash_and_sign(agent, newer):
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    done = subprocess.run(newer.command([sys.executable, str(HERE / "p11_newer.py"), str(newer.module),
                                         peer_point.hex()]), capture_output=True, text=True, timeout=120,
                          env=_env(agent))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {int(CKM.AES_GCM), int(CKM.AES_CBC_PAD), int(CKM.AES_CTR), int(CKM.ECDH1_DERIVE),
            int(CKM.ECDSA_SHA256)} <= set(out["mechanisms"])
    assert bytes.fromhex(out["gcm"]) == AESGCM(KEY).encrypt(bytes(range(12)), b"through a newer client", b"header")
    assert out["gcm_back"] == "through a newer client"
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(bytes(16))).decryptor()
    assert decryptor.update(bytes.fromhex(out["cbc"])) + decryptor.finalize() == b"cbc with padding" + bytes([16]) * 16
    assert out["cbc_back"] == "cbc with padding"
    ctr = Cipher(algorithms.AES(KEY), modes.CTR(bytes(15) + b"\x01")).encryptor()  # python-pkcs11 counts from 1
    assert bytes.fromhex(out["ctr"]) == ctr.update(b"counter mode") + ctr.finalize()
    point = bytes.fromhex(out["ec_point"])[2:]  # DER OCTET STRING around the point
    shared = peer.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
    ecb = Cipher(algorithms.AES(shared), modes.ECB()).encryptor()
    assert bytes.fromhex(out["ecdh_block"]) == ecb.update(bytes(16)) + ecb.finalize()
    signature = bytes.fromhex(out["ecdsa_sha256"])
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(out["signer_point"])[2:])
    verifier.verify(utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                               int.from_bytes(signature[32:], "big")),
                    b"hash and sign", ec.ECDSA(hashes.SHA256()))


def test_newer_pkcs11_tool_signs_ecdsa_sha256_and_passes_its_self_test(agent, newer, tmp_path):
    def tool(*args: str) -> str:
        done = subprocess.run(newer.command(["pkcs11-tool", "--module", str(newer.module), *args]),
                              capture_output=True, text=True, timeout=120, env=_env(agent))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    pin = ("-l", "-p", f"alice:{ALICE_PW}")
    listed = tool("-M")
    assert "AES-GCM" in listed and "ECDSA-SHA256" in listed and "ECDH1-DERIVE" in listed
    key_id = "c1" if newer.suite == "trixie" else "c2"
    tool(*pin, "--keypairgen", "--key-type", "EC:prime256v1", "--label", f"newer-{newer.suite}", "--id", key_id)
    message = tmp_path / "message"
    message.write_bytes(b"hash-and-sign through " + newer.suite.encode())
    signature = tmp_path / "signature"
    tool(*pin, "--sign", "-m", "ECDSA-SHA256", "--id", key_id, "-i", str(message), "-o", str(signature),
         "--signature-format", "openssl")
    public = tmp_path / "public.der"
    tool("--read-object", "--type", "pubkey", "--id", key_id, "-o", str(public))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-keyform", "DER", "-signature",
                           str(signature), str(message)], capture_output=True, text=True, timeout=60)
    assert "Verified OK" in done.stdout, done.stdout + done.stderr
    assert "No errors" in tool(*pin, "--test")
