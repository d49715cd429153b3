"""Short helpers to make keys through the boundary's API in tests."""

from __future__ import annotations

from typing import Any

from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKA, CKM

# DER OIDs (RFC 5480 §2.1.1.1, RFC 8410 §3)
P256 = bytes.fromhex("06082a8648ce3d030107")
P384 = bytes.fromhex("06052b81040022")
P521 = bytes.fromhex("06052b81040023")
SECP256K1 = bytes.fromhex("06052b8104000a")
ED25519 = bytes.fromhex("06032b6570")


def aes(who: Any, size: int = 32, **attrs: Any) -> int:
    template = {CKA.VALUE_LEN: size, CKA.TOKEN: True, CKA.ENCRYPT: True, CKA.DECRYPT: True, CKA.LABEL: "aes"}
    template.update({CKA[k.upper()]: v for k, v in attrs.items()})
    return who.app.generate_key(who.s, Mechanism(CKM.AES_KEY_GEN), template)


def wrapper(who: Any, size: int = 32, **attrs: Any) -> int:
    """An AES key for wrapping only (a key may not both wrap and decrypt)."""
    return aes(who, size, **{"encrypt": False, "decrypt": False, "wrap": True, "unwrap": True, "label": "wrapper",
                             **attrs})


def hmac_key(who: Any, size: int = 32, **attrs: Any) -> int:
    template = {CKA.VALUE_LEN: size, CKA.TOKEN: True, CKA.LABEL: "hmac"}
    template.update({CKA[k.upper()]: v for k, v in attrs.items()})
    return who.app.generate_key(who.s, Mechanism(CKM.GENERIC_SECRET_KEY_GEN), template)


def rsa(who: Any, bits: int = 2048, pub: dict | None = None, priv: dict | None = None) -> tuple[int, int]:
    public = {CKA.MODULUS_BITS: bits, CKA.TOKEN: True, CKA.VERIFY: True, CKA.ENCRYPT: True, CKA.LABEL: "rsa"}
    private = {CKA.TOKEN: True, CKA.SIGN: True, CKA.DECRYPT: True, CKA.LABEL: "rsa"}
    public.update(pub or {})
    private.update(priv or {})
    return who.app.generate_key_pair(who.s, Mechanism(CKM.RSA_PKCS_KEY_PAIR_GEN), public, private)


def ec(who: Any, params: bytes = P256, pub: dict | None = None, priv: dict | None = None) -> tuple[int, int]:
    mech = CKM.EC_EDWARDS_KEY_PAIR_GEN if params == ED25519 else CKM.EC_KEY_PAIR_GEN
    public = {CKA.EC_PARAMS: params, CKA.TOKEN: True, CKA.VERIFY: True, CKA.LABEL: "ec"}
    private = {CKA.TOKEN: True, CKA.SIGN: True, CKA.DERIVE: True, CKA.LABEL: "ec"}
    public.update(pub or {})
    private.update(priv or {})
    return who.app.generate_key_pair(who.s, Mechanism(mech), public, private)
