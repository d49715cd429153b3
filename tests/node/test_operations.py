"""Operation state and the output-buffer rules of PKCS#11 3.0 §5.2, on the faults real tokens had."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.crypto import public_key_from_der
from strongroom.crypto.params import GcmParams, Mechanism
from strongroom.errors import BufferTooSmall
from strongroom.node.testing import key_material
from strongroom.vocab import CKM, CKR

from .keys import aes, rsa
from .test_sessions import rv

ECB = Mechanism(CKM.AES_ECB)
CBC_PAD = Mechanism(CKM.AES_CBC_PAD, bytes(16))


def test_too_small_buffer_reports_the_size_and_keeps_the_operation(hsm, alice):
    key = aes(alice)
    alice.app.encrypt_init(alice.s, ECB, key)
    with pytest.raises(BufferTooSmall) as info:
        alice.app.encrypt(alice.s, bytes(32), out_len=16)
    assert info.value.required == 32 and info.value.ckr == CKR.BUFFER_TOO_SMALL
    out = alice.app.encrypt(alice.s, bytes(32), out_len=32)
    assert len(out) == 32
    assert rv(alice.app.encrypt, alice.s, bytes(32)) == CKR.OPERATION_NOT_INITIALIZED

    _, priv = rsa(alice)
    alice.app.sign_init(alice.s, Mechanism(CKM.SHA256_RSA_PKCS), priv)
    with pytest.raises(BufferTooSmall) as info:
        alice.app.sign(alice.s, b"data", out_len=10)
    assert info.value.required == 256
    assert len(alice.app.sign(alice.s, b"data", out_len=256)) == 256


def test_size_query_does_not_consume_input(hsm, alice):
    key = aes(alice)
    data = os.urandom(17)
    alice.app.encrypt_init(alice.s, CBC_PAD, key)
    assert alice.app.encrypt(alice.s, data, query=True) == 32
    ct = alice.app.encrypt(alice.s, data, out_len=32)
    alice.app.encrypt_init(alice.s, CBC_PAD, key)
    assert alice.app.encrypt(alice.s, data) == ct
    alice.app.decrypt_init(alice.s, CBC_PAD, key)
    assert alice.app.decrypt(alice.s, ct, query=True) == 17
    assert alice.app.decrypt(alice.s, ct) == data


def test_sign_size_query_then_sign(hsm, alice):
    pub, priv = rsa(alice)
    alice.app.sign_init(alice.s, Mechanism(CKM.SHA256_RSA_PKCS), priv)
    assert alice.app.sign(alice.s, b"message", query=True) == 256
    sig = alice.app.sign(alice.s, b"message")
    material = alice.app.hsm.get_object(pub).material
    public_key_from_der(material).verify(sig, b"message", padding.PKCS1v15(), hashes.SHA256())


def test_gcm_decrypt_final_query_with_nothing_left(hsm, alice):
    key = aes(alice)
    iv = os.urandom(12)
    ct = AESGCM(key_material(hsm, key)).encrypt(iv, b"secret message", b"aad")
    mech = Mechanism(CKM.AES_GCM, GcmParams(iv=iv, aad=b"aad"))
    alice.app.decrypt_init(alice.s, mech, key)
    assert alice.app.decrypt_update(alice.s, ct, query=True) == 0
    assert alice.app.decrypt_update(alice.s, ct) == b""
    assert alice.app.decrypt_final(alice.s, query=True) == 14
    assert alice.app.decrypt_final(alice.s) == b"secret message"
    alice.app.decrypt_init(alice.s, mech, key)
    alice.app.decrypt_update(alice.s, ct[:-1] + bytes([ct[-1] ^ 1]))
    assert rv(alice.app.decrypt_final, alice.s) == CKR.ENCRYPTED_DATA_INVALID
    assert rv(alice.app.decrypt_final, alice.s) == CKR.OPERATION_NOT_INITIALIZED


def test_zero_length_buffer_is_a_real_call(hsm, alice):
    key = aes(alice)
    alice.app.encrypt_init(alice.s, ECB, key)
    assert alice.app.encrypt_update(alice.s, bytes(16), out_len=16) != b""
    assert alice.app.encrypt_final(alice.s, out_len=0) == b""
    assert rv(alice.app.encrypt_final, alice.s) == CKR.OPERATION_NOT_INITIALIZED


def test_multi_part_equals_single_part(hsm, alice):
    key = aes(alice)
    data = os.urandom(100)
    alice.app.encrypt_init(alice.s, CBC_PAD, key)
    one = alice.app.encrypt(alice.s, data)
    alice.app.encrypt_init(alice.s, CBC_PAD, key)
    parts = b"".join(alice.app.encrypt_update(alice.s, data[i:i + 7]) for i in range(0, 100, 7))
    assert parts + alice.app.encrypt_final(alice.s) == one
    _, priv = rsa(alice)
    alice.app.sign_init(alice.s, Mechanism(CKM.SHA256_RSA_PKCS), priv)
    sig = alice.app.sign(alice.s, data)
    alice.app.sign_init(alice.s, Mechanism(CKM.SHA256_RSA_PKCS), priv)
    alice.app.sign_update(alice.s, data[:50])
    alice.app.sign_update(alice.s, data[50:])
    assert alice.app.sign_final(alice.s) == sig


def test_operation_state_errors(hsm, alice):
    key = aes(alice)
    assert rv(alice.app.encrypt, alice.s, b"x") == CKR.OPERATION_NOT_INITIALIZED
    assert rv(alice.app.encrypt_final, alice.s) == CKR.OPERATION_NOT_INITIALIZED
    alice.app.encrypt_init(alice.s, ECB, key)
    assert rv(alice.app.encrypt_init, alice.s, ECB, key) == CKR.OPERATION_ACTIVE
    # an error other than a short buffer ends the operation
    assert rv(alice.app.encrypt, alice.s, bytes(15)) == CKR.DATA_LEN_RANGE
    assert rv(alice.app.encrypt, alice.s, bytes(16)) == CKR.OPERATION_NOT_INITIALIZED
    # encrypt and decrypt may be active together in one session
    alice.app.encrypt_init(alice.s, ECB, key)
    alice.app.decrypt_init(alice.s, ECB, key)
    ct = alice.app.encrypt(alice.s, bytes(16))
    assert alice.app.decrypt(alice.s, ct) == bytes(16)


def test_verify_and_signature_errors(hsm, alice):
    pub, priv = rsa(alice)
    mech = Mechanism(CKM.SHA256_RSA_PKCS)
    alice.app.sign_init(alice.s, mech, priv)
    sig = alice.app.sign(alice.s, b"abc")
    alice.app.verify_init(alice.s, mech, pub)
    alice.app.verify(alice.s, b"abc", sig)
    alice.app.verify_init(alice.s, mech, pub)
    assert rv(alice.app.verify, alice.s, b"abd", sig) == CKR.SIGNATURE_INVALID
    alice.app.verify_init(alice.s, mech, pub)
    assert rv(alice.app.verify, alice.s, b"abc", sig[:-1]) == CKR.SIGNATURE_LEN_RANGE
    assert rv(alice.app.verify, alice.s, b"abc", sig) == CKR.OPERATION_NOT_INITIALIZED


def test_hsm_generated_gcm_iv(hsm, alice):
    key = aes(alice)
    iv1 = alice.app.encrypt_init(alice.s, Mechanism(CKM.AES_GCM, GcmParams()), key)
    ct1 = alice.app.encrypt(alice.s, b"m")
    iv2 = alice.app.encrypt_init(alice.s, Mechanism(CKM.AES_GCM, GcmParams()), key)
    alice.app.encrypt(alice.s, b"m")
    assert len(iv1) == 12 and iv1 != iv2
    assert AESGCM(key_material(hsm, key)).decrypt(iv1, ct1, b"") == b"m"


def test_digest_and_random(hsm, alice):
    import hashlib

    alice.app.digest_init(alice.s, Mechanism(CKM.SHA256))
    assert alice.app.digest(alice.s, b"abc", query=True) == 32
    assert alice.app.digest(alice.s, b"abc") == hashlib.sha256(b"abc").digest()
    r1, r2 = alice.app.generate_random(alice.s, 32), alice.app.generate_random(alice.s, 32)
    assert len(r1) == 32 and r1 != r2
