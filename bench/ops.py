"""The measured operations, each in three forms: through the SDK to a node, directly with ``cryptography``,
and through SoftHSM2 with python-pkcs11. Every form signs/encrypts the same message size with the same kind
of key; key material differs (each side generates its own keys)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from constants import P256_PARAMS
from strongroom.mechanism_params import GcmParams, Mechanism, PssParams
from strongroom.vocab import CKA, CKG, CKM


@dataclass(frozen=True)
class Operation:
    id: str
    title: str
    key: str  # which key it uses: "rsa", "ec", "aes", "hmac"
    size: int  # message bytes
    mechanism: Mechanism  # for the SDK
    out_len: int  # expected output bytes through the SDK (sanity check)


OPERATIONS = [
    Operation(
        "rsa_pkcs1",
        "RSA-2048 sign PKCS#1 v1.5 (CKM_SHA256_RSA_PKCS)",
        "rsa",
        64,
        Mechanism(CKM.SHA256_RSA_PKCS),
        256,
    ),
    Operation(
        "rsa_pss",
        "RSA-2048 sign PSS (CKM_SHA256_RSA_PKCS_PSS)",
        "rsa",
        64,
        Mechanism(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 32)),
        256,
    ),
    Operation("ecdsa_p256", "ECDSA P-256 sign (CKM_ECDSA_SHA256)", "ec", 64, Mechanism(CKM.ECDSA_SHA256), 64),
    Operation(
        "aes_gcm_64", "AES-256-GCM encrypt 64 B", "aes", 64, Mechanism(CKM.AES_GCM, GcmParams()), 12 + 64 + 16
    ),
    Operation(
        "aes_gcm_4k",
        "AES-256-GCM encrypt 4 KiB",
        "aes",
        4096,
        Mechanism(CKM.AES_GCM, GcmParams()),
        12 + 4096 + 16,
    ),
    Operation(
        "hmac_64", "HMAC-SHA256 over 64 B (CKM_SHA256_HMAC)", "hmac", 64, Mechanism(CKM.SHA256_HMAC), 32
    ),
]


def message(op: Operation) -> bytes:
    return os.urandom(op.size)


# ------------------------------------------------------------------ SDK
def sdk_keys(session: Any) -> dict[str, int]:
    """Generate one key of each kind on the node (token keys); returns handles by kind."""
    _, rsa_priv = session.generate_key_pair(
        CKM.RSA_PKCS_KEY_PAIR_GEN,
        {CKA.MODULUS_BITS: 2048, CKA.PUBLIC_EXPONENT: b"\x01\x00\x01", CKA.VERIFY: True},
        {CKA.SIGN: True},
        label="bench-rsa",
    )
    _, ec_priv = session.generate_key_pair(
        CKM.EC_KEY_PAIR_GEN,
        {CKA.EC_PARAMS: P256_PARAMS, CKA.VERIFY: True},
        {CKA.SIGN: True},
        label="bench-ec",
    )
    aes = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="bench-aes", encrypt=True, decrypt=True)
    mac = session.generate_key(
        CKM.GENERIC_SECRET_KEY_GEN, value_len=32, label="bench-hmac", sign=True, verify=True
    )
    return {"rsa": rsa_priv.handle, "ec": ec_priv.handle, "aes": aes.handle, "hmac": mac.handle}


def sdk_call(op: Operation, key: Any, data: bytes) -> Callable[[], Any]:
    """The SDK's one-round-trip call for ``op`` (sync: returns the value; asyncio: returns an awaitable)."""
    mech = op.mechanism
    if op.key == "aes":
        return lambda: key.encrypt(data, mech)
    return lambda: key.sign(data, mech)


# ------------------------------------------------------------------ cryptography
@dataclass
class RawKeys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    aes: bytes
    hmac: bytes

    @classmethod
    def generate(cls) -> RawKeys:
        return cls(
            rsa.generate_private_key(65537, 2048),
            ec.generate_private_key(ec.SECP256R1()),
            os.urandom(32),
            os.urandom(32),
        )


def raw_call(op: Operation, keys: RawKeys, data: bytes) -> Callable[[], Any]:
    """The same operation straight on ``cryptography``: cached key objects, a fresh random 96-bit IV per
    AES-GCM call (as the node does), a new HMAC context per message."""
    if op.id == "rsa_pkcs1":
        pad, sha = padding.PKCS1v15(), hashes.SHA256()
        return lambda: keys.rsa.sign(data, pad, sha)
    if op.id == "rsa_pss":
        pss, sha = padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
        return lambda: keys.rsa.sign(data, pss, sha)
    if op.id == "ecdsa_p256":
        alg = ec.ECDSA(hashes.SHA256())
        return lambda: keys.ec.sign(data, alg)
    if op.key == "aes":
        aead, urandom = AESGCM(keys.aes), os.urandom
        return lambda: aead.encrypt(urandom(12), data, None)
    if op.id == "hmac_64":
        sha, mac_key, HMAC = hashes.SHA256(), keys.hmac, hmac.HMAC

        def mac() -> bytes:
            h = HMAC(mac_key, sha)
            h.update(data)
            return h.finalize()

        return mac
    raise KeyError(op.id)


# ------------------------------------------------------------------ SoftHSM2
def softhsm_call(op: Operation, keys: dict[str, Any], data: bytes) -> tuple[Callable[[], Any], str]:
    """The operation through python-pkcs11 on a SoftHSM2 token; returns the call and a note (or "")."""
    from pkcs11.mechanisms import GCMParams

    import pkcs11
    from pkcs11 import MGF
    from pkcs11 import Mechanism as M

    if op.id == "rsa_pkcs1":
        return (lambda: keys["rsa"].sign(data, mechanism=M.SHA256_RSA_PKCS)), ""
    if op.id == "rsa_pss":
        param = (M.SHA256, MGF.SHA256, 32)
        return (lambda: keys["rsa"].sign(data, mechanism=M.SHA256_RSA_PKCS_PSS, mechanism_param=param)), ""
    if op.id == "ecdsa_p256":
        key = keys["ec"]
        try:
            key.sign(data, mechanism=M.ECDSA_SHA256)
            return (lambda: key.sign(data, mechanism=M.ECDSA_SHA256)), ""
        except pkcs11.exceptions.MechanismInvalid:
            sha256 = hashlib.sha256
            return (
                (lambda: key.sign(sha256(data).digest(), mechanism=M.ECDSA)),
                "CKM_ECDSA_SHA256 is not offered: SHA-256 in Python (hashlib) + CKM_ECDSA",
            )
    if op.key == "aes":
        key, urandom = keys["aes"], os.urandom
        return (lambda: key.encrypt(data, mechanism=M.AES_GCM, mechanism_param=GCMParams(urandom(12)))), ""
    if op.id == "hmac_64":
        return (lambda: keys["hmac"].sign(data, mechanism=M.SHA256_HMAC)), ""
    raise KeyError(op.id)
