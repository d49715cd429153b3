"""CKM_RSA_X_509 (raw RSA) against cryptography's padded RSA: a PKCS#1 v1.5 block made by hand and run through
the raw primitive must verify and decrypt with the library's padded operations, and the reverse."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom.crypto import decrypt_init, encrypt_init, sign_init, verify_init
from strongroom.errors import (
    DataInvalid,
    DataLenRange,
    EncryptedDataLenRange,
    MechanismParamInvalid,
    SignatureInvalid,
    SignatureLenRange,
)
from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKM

RAW = Mechanism(CKM.RSA_X_509)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - raw RSA is legacy
K = 128
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def _single(operation, data: bytes) -> bytes:
    operation.update(data)
    return operation.final()


def test_a_hand_made_pkcs1_signature_block_signed_raw_verifies_with_cryptography() -> None:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"hello")
    info = SHA256_PREFIX + digest.finalize()
    block = b"\x00\x01" + b"\xff" * (K - 3 - len(info)) + b"\x00" + info
    signature = _single(sign_init(RAW, KEY), block)
    assert len(signature) == K
    KEY.public_key().verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())
    verifier = verify_init(RAW, KEY.public_key())
    verifier.update(block)
    verifier.final(signature)


def test_raw_encryption_of_a_hand_made_type_2_block_decrypts_with_cryptography() -> None:
    message = b"secret message"
    filler = bytes(b or 1 for b in os.urandom(K - 3 - len(message)))
    block = b"\x00\x02" + filler + b"\x00" + message
    ciphertext = _single(encrypt_init(RAW, KEY.public_key()), block)
    assert len(ciphertext) == K
    assert KEY.decrypt(ciphertext, padding.PKCS1v15()) == message
    assert _single(decrypt_init(RAW, KEY), ciphertext) == block  # k bytes, the leading zero kept


def test_short_input_is_a_left_padded_integer() -> None:
    ciphertext = _single(encrypt_init(RAW, KEY.public_key()), b"Hello world!")
    assert _single(decrypt_init(RAW, KEY), ciphertext) == bytes(K - 12) + b"Hello world!"


def test_refusals_have_the_standards_codes() -> None:
    n = KEY.public_key().public_numbers().n.to_bytes(K, "big")
    with pytest.raises(DataLenRange):
        _single(encrypt_init(RAW, KEY.public_key()), bytes(K + 1))
    with pytest.raises(DataInvalid):
        _single(encrypt_init(RAW, KEY.public_key()), n)
    with pytest.raises(EncryptedDataLenRange):
        _single(decrypt_init(RAW, KEY), bytes(K - 1))
    with pytest.raises(DataLenRange):
        _single(sign_init(RAW, KEY), bytes(K + 1))
    with pytest.raises(MechanismParamInvalid):
        sign_init(Mechanism(CKM.RSA_X_509, b"x"), KEY)
    verifier = verify_init(RAW, KEY.public_key())
    verifier.update(b"other")
    with pytest.raises(SignatureInvalid):
        verifier.final(_single(sign_init(RAW, KEY), b"data"))
    verifier = verify_init(RAW, KEY.public_key())
    verifier.update(b"data")
    with pytest.raises(SignatureLenRange):
        verifier.final(bytes(K - 1))
