"""Key wrapping: NIST SP 800-38F KW/KWP vectors, round trips checked with ``cryptography`` directly."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.crypto import private_key_from_der, private_key_to_der, unwrap, wrap
from strongroom.errors import (
    KeySizeRange,
    MechanismInvalid,
    MechanismParamInvalid,
    UnwrappingKeySizeRange,
    UnwrappingKeyTypeInconsistent,
    WrappedKeyInvalid,
    WrappedKeyLenRange,
    WrappingKeySizeRange,
    WrappingKeyTypeInconsistent,
)
from strongroom.mechanism_params import GcmParams, Mechanism, OaepParams, RsaAesKeyWrapParams
from strongroom.vocab import CKG, CKM

from .vectors import nist_records, unhex


def _subset(path: str, per_length: int) -> list[dict]:
    chosen, seen = [], {}
    for record in nist_records(path):
        length = record["plaintext length"]
        # Keep the FAIL cases and a few of each length.
        if record.get("fail") or seen.get(length, 0) < per_length:
            seen[length] = seen.get(length, 0) + 1
            chosen.append(record)
    return chosen


@pytest.mark.parametrize("bits", [128, 192, 256])
@pytest.mark.parametrize(("name", "mechanisms"), [
    ("KW", (CKM.AES_KEY_WRAP,)),
    ("KWP", (CKM.AES_KEY_WRAP_KWP, CKM.AES_KEY_WRAP_PAD)),
])
def test_nist_wrap(bits: int, name: str, mechanisms: tuple[CKM, ...]) -> None:
    records = _subset(f"keywrap/kwtestvectors/{name}_AE_{bits}.txt", 3)
    assert len(records) >= 12
    for mechanism in mechanisms:
        for record in records:
            assert wrap(Mechanism(mechanism), unhex(record["k"]), unhex(record["p"])) == unhex(record["c"])


@pytest.mark.parametrize("bits", [128, 192, 256])
@pytest.mark.parametrize(("name", "mechanisms"), [
    ("KW", (CKM.AES_KEY_WRAP,)),
    ("KWP", (CKM.AES_KEY_WRAP_KWP, CKM.AES_KEY_WRAP_PAD)),
])
def test_nist_unwrap_including_invalid(bits: int, name: str, mechanisms: tuple[CKM, ...]) -> None:
    records = _subset(f"keywrap/kwtestvectors/{name}_AD_{bits}.txt", 3)
    failing = [r for r in records if r.get("fail")]
    assert len(failing) >= 50
    for mechanism in mechanisms:
        for record in records:
            key, wrapped = unhex(record["k"]), unhex(record["c"])
            if record.get("fail"):
                with pytest.raises(WrappedKeyInvalid):
                    unwrap(Mechanism(mechanism), key, wrapped)
            else:
                assert unwrap(Mechanism(mechanism), key, wrapped) == unhex(record["p"])


def test_aes_key_wrap_zero_pads_odd_lengths() -> None:
    kek, secret = os.urandom(32), os.urandom(20)
    wrapped = wrap(Mechanism(CKM.AES_KEY_WRAP), kek, secret)
    assert len(wrapped) == 32
    assert keywrap.aes_key_unwrap(kek, wrapped) == secret + bytes(4)
    assert unwrap(Mechanism(CKM.AES_KEY_WRAP), kek, wrapped) == secret + bytes(4)
    assert len(wrap(Mechanism(CKM.AES_KEY_WRAP), kek, b"12345")) == 24  # at least two semiblocks


def test_private_key_through_aes_key_wrap_padding(p256_key: ec.EllipticCurvePrivateKey) -> None:
    kek = os.urandom(16)
    der = private_key_to_der(p256_key)
    unwrapped = unwrap(Mechanism(CKM.AES_KEY_WRAP), kek, wrap(Mechanism(CKM.AES_KEY_WRAP), kek, der))
    restored = private_key_from_der(unwrapped)  # trailing zero padding is ignored
    assert restored.private_numbers() == p256_key.private_numbers()


def test_kwp_round_trip_against_cryptography() -> None:
    kek, secret = os.urandom(24), os.urandom(33)
    wrapped = wrap(Mechanism(CKM.AES_KEY_WRAP_KWP), kek, secret)
    assert keywrap.aes_key_unwrap_with_padding(kek, wrapped) == secret
    assert unwrap(Mechanism(CKM.AES_KEY_WRAP_KWP), kek, wrapped) == secret


def test_aes_gcm_wrap() -> None:
    kek, iv, secret = os.urandom(32), os.urandom(12), os.urandom(32)
    mech = Mechanism(CKM.AES_GCM, GcmParams(iv=iv, aad=b"label"))
    wrapped = wrap(mech, kek, secret)
    assert AESGCM(kek).decrypt(iv, wrapped, b"label") == secret
    assert unwrap(mech, kek, wrapped) == secret
    with pytest.raises(WrappedKeyInvalid):
        unwrap(mech, kek, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with pytest.raises(WrappedKeyLenRange):
        unwrap(mech, kek, bytes(10))
    with pytest.raises(MechanismParamInvalid):
        wrap(Mechanism(CKM.AES_GCM, GcmParams()), kek, secret)


def test_aes_cbc_pad_wrap() -> None:
    kek, iv, secret = os.urandom(16), os.urandom(16), os.urandom(24)
    mech = Mechanism(CKM.AES_CBC_PAD, iv)
    wrapped = wrap(mech, kek, secret)
    assert len(wrapped) == 32
    assert unwrap(mech, kek, wrapped) == secret
    with pytest.raises(WrappedKeyLenRange):
        unwrap(mech, kek, wrapped[:-1])


def test_rsa_wraps(rsa_key: rsa.RSAPrivateKey) -> None:
    secret = os.urandom(32)
    pkcs = Mechanism(CKM.RSA_PKCS)
    wrapped = wrap(pkcs, rsa_key.public_key(), secret)
    assert rsa_key.decrypt(wrapped, padding.PKCS1v15()) == secret
    assert unwrap(pkcs, rsa_key, wrapped) == secret
    oaep = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256))
    wrapped = wrap(oaep, rsa_key.public_key(), secret)
    assert unwrap(oaep, rsa_key, wrapped) == secret
    with pytest.raises(WrappedKeyInvalid):
        unwrap(oaep, rsa_key, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with pytest.raises(WrappedKeyLenRange):
        unwrap(oaep, rsa_key, wrapped[1:])
    with pytest.raises(KeySizeRange):
        wrap(pkcs, rsa_key.public_key(), bytes(246))


@pytest.mark.parametrize("aes_key_bits", [128, 192, 256])
def test_rsa_aes_key_wrap(rsa_key: rsa.RSAPrivateKey, ed25519_key, aes_key_bits: int) -> None:
    params = RsaAesKeyWrapParams(aes_key_bits=aes_key_bits,
                                 oaep=OaepParams(hash_alg=CKM.SHA384, mgf=CKG.MGF1_SHA384, source_data=b"L"))
    mech = Mechanism(CKM.RSA_AES_KEY_WRAP, params)
    material = private_key_to_der(ed25519_key)
    wrapped = wrap(mech, rsa_key.public_key(), material)

    # PKCS#11 3.0 §2.1.21: OAEP-wrapped AES key (modulus length), then the RFC 5649 wrap under it.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA384()), algorithm=hashes.SHA384(), label=b"L")
    aes_key = rsa_key.decrypt(wrapped[:256], oaep)
    assert len(aes_key) * 8 == aes_key_bits
    assert keywrap.aes_key_unwrap_with_padding(aes_key, wrapped[256:]) == material

    assert unwrap(mech, rsa_key, wrapped) == material
    assert wrap(mech, rsa_key.public_key(), material) != wrapped  # a fresh AES key each time
    with pytest.raises(WrappedKeyInvalid):
        unwrap(mech, rsa_key, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with pytest.raises(WrappedKeyLenRange):
        unwrap(mech, rsa_key, wrapped[:256])
    with pytest.raises(WrappedKeyLenRange):
        unwrap(mech, rsa_key, wrapped[:-1])


def test_rsa_aes_key_wrap_parameters(rsa_key: rsa.RSAPrivateKey) -> None:
    for params in (RsaAesKeyWrapParams(aes_key_bits=64), OaepParams()):
        with pytest.raises(MechanismParamInvalid):
            wrap(Mechanism(CKM.RSA_AES_KEY_WRAP, params), rsa_key.public_key(), b"k" * 16)
    with pytest.raises(WrappingKeyTypeInconsistent):
        wrap(Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams()), rsa_key, b"k" * 16)
    with pytest.raises(UnwrappingKeyTypeInconsistent):
        unwrap(Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams()), rsa_key.public_key(), bytes(300))


def test_wrapping_key_errors(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(WrappingKeyTypeInconsistent):
        wrap(Mechanism(CKM.RSA_PKCS), rsa_key, b"k" * 16)
    with pytest.raises(WrappingKeyTypeInconsistent):
        wrap(Mechanism(CKM.AES_KEY_WRAP), rsa_key, b"k" * 16)
    with pytest.raises(WrappingKeySizeRange):
        wrap(Mechanism(CKM.AES_KEY_WRAP), bytes(20), b"k" * 16)
    with pytest.raises(UnwrappingKeySizeRange):
        unwrap(Mechanism(CKM.AES_KEY_WRAP), bytes(20), bytes(24))
    with pytest.raises(UnwrappingKeyTypeInconsistent):
        unwrap(Mechanism(CKM.RSA_PKCS_OAEP, OaepParams()), rsa_key.public_key(), bytes(256))
    with pytest.raises(WrappedKeyLenRange):
        unwrap(Mechanism(CKM.AES_KEY_WRAP), bytes(16), bytes(20))
    with pytest.raises(WrappedKeyLenRange):
        unwrap(Mechanism(CKM.AES_KEY_WRAP_KWP), bytes(16), bytes(8))
    with pytest.raises(KeySizeRange):
        wrap(Mechanism(CKM.AES_KEY_WRAP_KWP), bytes(16), b"")
    with pytest.raises(MechanismInvalid):
        wrap(Mechanism(CKM.AES_ECB), bytes(16), bytes(16))
    with pytest.raises(MechanismInvalid):
        unwrap(Mechanism(CKM.SHA256_HMAC), bytes(16), bytes(16))
