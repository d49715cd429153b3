"""Applications written before PKCS#11 3.0 or with their own templates, through p11-kit's client and the agent:
OpenSSL's libp11 engine with Ed25519, EC and AES keys on the token, and pkcs11-tool making secret keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import strongroom.client as sdk
from strongroom.vocab import CKA, CKC, CKK, CKM, CKO

from ..fixtures.cluster import ALICE_PW, BOB_PW
from .conftest import P11_KIT_CLIENT, P256

TOKEN = "cluster-test0000001"
PIN = f"alice:{ALICE_PW}"
ENGINE = next(iter(sorted(Path("/usr/lib").glob("*/engines-3/pkcs11.so"))), None)
ED25519 = bytes.fromhex("06032b6570")


def _env(agent: Path) -> dict[str, str]:
    return {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PKCS11_MODULE_PATH": str(P11_KIT_CLIENT)}


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def mixed_keys(alice):
    """alice's keys of every kind the node makes: Ed25519 first (an older application meets it before the RSA
    key), then RSA, EC P-256 and AES; and an X.509 attribute certificate before an X.509 one."""
    for n in range(2):
        alice.generate_key_pair(CKM.EC_EDWARDS_KEY_PAIR_GEN, {CKA.EC_PARAMS: ED25519, CKA.VERIFY: True},
                                {CKA.SIGN: True}, label=f"old-ed{n}", token=True)
    rsa_public, _ = alice.generate_key_pair(
        CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 2048, CKA.PUBLIC_EXPONENT: b"\x01\x00\x01", CKA.VERIFY: True,
                                    CKA.ID: b"old-rsa"}, {CKA.SIGN: True, CKA.ID: b"old-rsa"}, label="old-rsa",
        token=True)
    alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True}, {CKA.SIGN: True},
                            label="old-ec", token=True)
    alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label="old-aes", encrypt=True, decrypt=True, token=True)
    for kind, label in ((CKC.X_509_ATTR_CERT, "old-attribute-cert"), (CKC.X_509, "old-cert")):
        alice.create_object({CKA.CLASS: CKO.CERTIFICATE, CKA.CERTIFICATE_TYPE: kind, CKA.TOKEN: True,
                             CKA.SUBJECT: b"\x30\x00", CKA.VALUE: b"\x30\x00", CKA.LABEL: label})
    return rsa_public


def test_openssl_engine_signs_with_rsa_while_the_user_owns_ed25519_ec_and_aes_keys(agent, mixed_keys, tmp_path):
    if ENGINE is None:
        pytest.skip("libengine-pkcs11-openssl is not installed")
    env = _env(agent)
    uri = f"pkcs11:token={TOKEN};object=old-rsa;type=private;pin-value={PIN}"
    cert = tmp_path / "cert.pem"
    _run(["openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", uri,
          "-subj", "/CN=older.test", "-days", "2", "-sha256", "-out", str(cert)], env)
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert certificate.public_key().public_numbers().n == int.from_bytes(mixed_keys[CKA.MODULUS], "big")
    certificate.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(),
                                    hashes.SHA256())
    data, signature, public = tmp_path / "data", tmp_path / "data.sig", tmp_path / "rsa.pem"
    data.write_bytes(b"signed by an RSA key beside Ed25519 keys" * 50)
    public.write_bytes(certificate.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    _run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign", uri,
          "-out", str(signature), str(data)], env)
    certificate.public_key().verify(signature.read_bytes(), data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("flags", [(), ("--sensitive", "--private")])
def test_pkcs11_tool_generates_aes_keys_the_owner_alone_uses(agent, alice, node, flags, tmp_path):
    """pkcs11-tool's template asks CKA_PRIVATE false unless told --private (PKCS#11 3.0 §4.4 lets a key be a
    public object): the key is made, encrypts through pkcs11-tool and decrypts through the SDK, and stays
    alice's alone."""
    label, ident = f"tool-aes{len(flags)}", f"a{len(flags)}"  # pkcs11-tool --encrypt finds its key by id
    out = _run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "-l", "-p", PIN, "--keygen", "--key-type", "AES:32",
                "--label", label, "--id", ident, *flags], _env(agent))
    assert "Key generated" in out and "AES length 32" in out
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    plain.write_bytes(bytes(range(64)))
    _run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "-l", "-p", PIN, "--encrypt", "-m", "AES-ECB",
          "--id", ident, "-i", str(plain), "-o", str(sealed)], _env(agent))
    (key,) = alice.find(label=label)
    assert key.get(CKA.CLASS, CKA.KEY_TYPE, CKA.VALUE_LEN, CKA.PRIVATE, CKA.TOKEN) == {
        CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE_LEN: 32, CKA.PRIVATE: bool(flags),
        CKA.TOKEN: True}
    assert key.decrypt(sealed.read_bytes(), CKM.AES_ECB) == plain.read_bytes()
    with sdk.connect(node[1]) as other, other.login("bob", BOB_PW) as bob:
        assert bob.find(label=label) == []


def test_keys_and_certificates_older_applications_do_not_know_are_found_only_by_naming_their_type(agent, mixed_keys):
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_key_types.py")), str(P11_KIT_CLIENT)],
                          capture_output=True, text=True, timeout=120, env={**_env(agent), "PIN": PIN})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["by_class"] == [CKK.RSA, CKK.EC]
    assert out["named"] == {str(int(CKK.RSA)): 1, str(int(CKK.EC)): 1, str(int(CKK.EC_EDWARDS)): 2}
    assert out["certificates"] == ["old-cert"]
    assert out["attribute_certificates"] == ["old-attribute-cert"]


def test_pkcs11_tool_generates_generic_secrets_too(agent, alice):
    out = _run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "-l", "-p", PIN, "--keygen", "--key-type",
                "GENERIC:32", "--label", "tool-generic"], _env(agent))
    assert "Key generated" in out
    (key,) = alice.find(label="tool-generic")
    assert key.get(CKA.KEY_TYPE, CKA.VALUE_LEN, CKA.PRIVATE) == {CKA.KEY_TYPE: CKK.GENERIC_SECRET,
                                                                  CKA.VALUE_LEN: 32, CKA.PRIVATE: False}
