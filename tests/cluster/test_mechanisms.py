"""Every mechanism of the HSM core, through the SDK against a real node, checked by ``cryptography`` directly.

Known key values enter the node through ``C_CreateObject`` (secret and public keys) or ``C_UnwrapKey``
(private keys); generated keys are proven by reading their public attributes or by wrapping them out under a
known key and unwrapping the result with ``cryptography``. No result is checked only by Strongroom itself.
The node is a NON_FIPS cluster, which offers every mechanism implemented (tests/node/test_fips_mode.py has
what a FIPS cluster refuses).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import cmac, hashes, hmac, keywrap, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from strongroom import errors
from strongroom.client import Key, Session
from strongroom.mechanism_catalogue import IMPLEMENTED
from strongroom.mechanism_params import (
    CounterFormat,
    CtrParams,
    DkmLengthFormat,
    Ecdh1DeriveParams,
    GcmParams,
    Mechanism,
    OaepParams,
    PrfDataParam,
    PssParams,
    RsaAesKeyWrapParams,
    Sp800108Params,
)
from strongroom.vocab import CK_SP800_108, CK_SP800_108_DKM_LENGTH, CKA, CKD, CKG, CKK, CKM, CKO, CKR, CKZ

# ------------------------------------------------------------------------------------------------------------
# Reference values, written out from the standards rather than taken from Strongroom.

# Named-curve OIDs, DER (SEC 2 §A.2, RFC 5480 §2.1.1.1, RFC 8410 §3).
CURVES = {
    "P-224": (bytes.fromhex("06052b81040021"), ec.SECP224R1()),
    "P-256": (bytes.fromhex("06082a8648ce3d030107"), ec.SECP256R1()),
    "P-384": (bytes.fromhex("06052b81040022"), ec.SECP384R1()),
    "P-521": (bytes.fromhex("06052b81040023"), ec.SECP521R1()),
    "secp256k1": (bytes.fromhex("06052b8104000a"), ec.SECP256K1()),
}
ED25519_OID = bytes.fromhex("06032b6570")

# (digest mechanism, MGF1, cryptography hash, DER DigestInfo prefix of RFC 8017 §9.2 note 1)
HASHES = {
    "SHA-1": (CKM.SHA_1, CKG.MGF1_SHA1, hashes.SHA1, "3021300906052b0e03021a05000414"),
    "SHA-224": (CKM.SHA224, CKG.MGF1_SHA224, hashes.SHA224, "302d300d06096086480165030402040500041c"),
    "SHA-256": (CKM.SHA256, CKG.MGF1_SHA256, hashes.SHA256, "3031300d060960864801650304020105000420"),
    "SHA-384": (CKM.SHA384, CKG.MGF1_SHA384, hashes.SHA384, "3041300d060960864801650304020205000430"),
    "SHA-512": (CKM.SHA512, CKG.MGF1_SHA512, hashes.SHA512, "3051300d060960864801650304020305000440"),
}
HMACS = {"SHA-1": (CKM.SHA_1_HMAC, CKM.SHA_1_HMAC_GENERAL),
         "SHA-224": (CKM.SHA224_HMAC, CKM.SHA224_HMAC_GENERAL),
         "SHA-256": (CKM.SHA256_HMAC, CKM.SHA256_HMAC_GENERAL),
         "SHA-384": (CKM.SHA384_HMAC, CKM.SHA384_HMAC_GENERAL),
         "SHA-512": (CKM.SHA512_HMAC, CKM.SHA512_HMAC_GENERAL)}
RSA_PKCS_HASHED = {"SHA-1": CKM.SHA1_RSA_PKCS, "SHA-224": CKM.SHA224_RSA_PKCS, "SHA-256": CKM.SHA256_RSA_PKCS,
                   "SHA-384": CKM.SHA384_RSA_PKCS, "SHA-512": CKM.SHA512_RSA_PKCS}
RSA_PSS_HASHED = {"SHA-1": CKM.SHA1_RSA_PKCS_PSS, "SHA-224": CKM.SHA224_RSA_PKCS_PSS,
                  "SHA-256": CKM.SHA256_RSA_PKCS_PSS, "SHA-384": CKM.SHA384_RSA_PKCS_PSS,
                  "SHA-512": CKM.SHA512_RSA_PKCS_PSS}
ECDSA_HASHED = {"SHA-1": CKM.ECDSA_SHA1, "SHA-224": CKM.ECDSA_SHA224, "SHA-256": CKM.ECDSA_SHA256,
                "SHA-384": CKM.ECDSA_SHA384, "SHA-512": CKM.ECDSA_SHA512}
AES_SIZES = [16, 24, 32]
AES_TEMPLATE = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}
MESSAGE = b"The quick brown fox jumps over the lazy dog, 0123456789" * 3

# Every mechanism a test hands to the node is recorded here, and every case that ran in this process; the last
# test checks none was left out.
EXERCISED: set[int] = set()
RAN: set[str] = set()


@pytest.fixture(scope="module")
def node(non_fips_node):
    return non_fips_node


@pytest.fixture(autouse=True)
def _record_the_case(request):
    yield
    RAN.add(request.node.nodeid)


def m(ckm: CKM, parameter: object = None) -> Mechanism:
    EXERCISED.add(int(ckm))
    return Mechanism(int(ckm), parameter)


# ------------------------------------------------------------------------------------------------------------
# Helpers


def secret_key(session: Session, value: bytes, key_type: CKK = CKK.AES, **usage: object) -> Key:
    """Import a secret key of known value with C_CreateObject."""
    template = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: key_type, CKA.VALUE: value}
    return session.create_object(template, **usage)


def unwrap_secret(session: Session, mech: Mechanism, unwrapping_key: Key, wrapped: bytes,
                  key_type: CKK = CKK.AES, **attrs: object) -> Key:
    return session.unwrap(mech, unwrapping_key, wrapped, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: key_type},
                          **attrs)


def der_octet_string(data: bytes) -> bytes:
    """Content of a DER OCTET STRING (X.690 §8.7), as CKA_EC_POINT carries it."""
    assert data[0] == 0x04
    if data[1] < 0x80:
        length, offset = data[1], 2
    else:
        count = data[1] & 0x7F
        length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
    assert len(data) == offset + length
    return data[offset:]


def rsa_public_of(pub: Key) -> rsa.RSAPublicKey:
    attrs = pub.get(CKA.MODULUS, CKA.PUBLIC_EXPONENT)
    return rsa.RSAPublicNumbers(int.from_bytes(attrs[CKA.PUBLIC_EXPONENT], "big"),
                                int.from_bytes(attrs[CKA.MODULUS], "big")).public_key()


def ec_public_of(pub: Key, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, der_octet_string(pub[CKA.EC_POINT]))


def rs_to_der(signature: bytes) -> bytes:
    half = len(signature) // 2
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    return encode_dss_signature(r, s)


def der_to_rs(signature: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def aes_ecb(value: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def hmac_of(value: bytes, algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    mac = hmac.HMAC(value, algorithm)
    mac.update(data)
    return mac.finalize()


def assert_aes_key(key: Key, value: bytes) -> None:
    """The node's AES key has this value: same ECB output for two blocks."""
    block = bytes(range(32))
    assert key.encrypt(block, m(CKM.AES_ECB)) == aes_ecb(value, block)


def assert_hmac_key(key: Key, value: bytes) -> None:
    """The node's generic secret has this value: same HMAC-SHA256."""
    assert key.sign(MESSAGE, m(CKM.SHA256_HMAC)) == hmac_of(value, hashes.SHA256(), MESSAGE)


def raises_exactly(error: type[errors.PKCS11Error], ckr: CKR):
    """Context manager: the call raises exactly ``error`` carrying ``ckr`` over the wire."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(errors.StrongroomError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            assert type(self.info.value) is error, f"{type(self.info.value).__name__}: {self.info.value}"
            assert self.info.value.ckr == ckr
            return suppressed

    return _Check()


def pkcs8(private_key: object) -> bytes:
    return private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


# ------------------------------------------------------------------------------------------------------------
# Module keys


@pytest.fixture(scope="module")
def kek_value() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def kek(alice, kek_value) -> Key:
    """A known AES-256 key that wraps and unwraps (and, by key separation, neither encrypts nor decrypts)."""
    return secret_key(alice, kek_value, wrap=True, unwrap=True)


def import_private(session: Session, kek: Key, kek_value: bytes, private_key: object, key_type: CKK,
                   **usage: object) -> Key:
    """C_UnwrapKey of a cryptography-made PKCS#8 key wrapped with RFC 5649 under the known KEK."""
    wrapped = keywrap.aes_key_wrap_with_padding(kek_value, pkcs8(private_key))
    return session.unwrap(m(CKM.AES_KEY_WRAP_PAD), kek, wrapped,
                          {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: key_type}, **usage)


def import_rsa_public(session: Session, public_key: rsa.RSAPublicKey, **usage: object) -> Key:
    numbers = public_key.public_numbers()
    return session.create_object({CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA,
                                  CKA.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
                                  CKA.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big")}, **usage)


@pytest.fixture(scope="module")
def rsa_pair(alice):
    """A generated RSA-2048 pair for signing and data encryption (no wrapping, by key separation)."""
    pub, priv = alice.generate_key_pair(m(CKM.RSA_PKCS_KEY_PAIR_GEN),
                                        {CKA.MODULUS_BITS: 2048, CKA.VERIFY: True, CKA.ENCRYPT: True},
                                        {CKA.SIGN: True, CKA.DECRYPT: True}, label="rsa-sign")
    return pub, priv, rsa_public_of(pub)


@pytest.fixture(scope="module")
def rsa_wrap_pair(alice):
    """A generated RSA-2048 pair for key transport only."""
    pub, priv = alice.generate_key_pair(m(CKM.RSA_PKCS_KEY_PAIR_GEN),
                                        {CKA.MODULUS_BITS: 2048, CKA.WRAP: True}, {CKA.UNWRAP: True},
                                        label="rsa-wrap")
    return pub, priv, rsa_public_of(pub)


@pytest.fixture(scope="module")
def known_rsa(alice, kek, kek_value):
    """A cryptography-made RSA-2048 key imported into the node: private for sign/decrypt, public for
    verify/encrypt, so results of the node's public operations can be checked with the private key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = import_private(alice, kek, kek_value, private_key, CKK.RSA, sign=True, decrypt=True)
    pub = import_rsa_public(alice, private_key.public_key(), verify=True, encrypt=True)
    return pub, priv, private_key


@pytest.fixture(scope="module")
def known_rsa_wrap(alice, kek, kek_value):
    """A cryptography-made RSA-2048 key imported for key transport: public wraps, private unwraps."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = import_private(alice, kek, kek_value, private_key, CKK.RSA, unwrap=True)
    pub = import_rsa_public(alice, private_key.public_key(), wrap=True)
    return pub, priv, private_key


@pytest.fixture(scope="module")
def ec_pairs(alice):
    """A generated pair on every supported short-Weierstrass curve.

    Returns name → (public key, private key, the public key as cryptography reads it).
    """
    out = {}
    for name, (oid, curve) in CURVES.items():
        pub, priv = alice.generate_key_pair(m(CKM.EC_KEY_PAIR_GEN), {CKA.EC_PARAMS: oid, CKA.VERIFY: True},
                                            {CKA.SIGN: True, CKA.DERIVE: True}, label=f"ec-{name}")
        out[name] = (pub, priv, ec_public_of(pub, curve))
    return out


# ------------------------------------------------------------------------------------------------------------
# AES


@pytest.mark.parametrize("size", AES_SIZES)
def test_aes_key_generation(alice, kek, kek_value, size):
    key = alice.generate_key(m(CKM.AES_KEY_GEN), value_len=size, encrypt=True, decrypt=True, token=False)
    attrs = key.get(CKA.CLASS, CKA.KEY_TYPE, CKA.VALUE_LEN, CKA.LOCAL, CKA.KEY_GEN_MECHANISM, CKA.CHECK_VALUE)
    assert attrs[CKA.CLASS] == CKO.SECRET_KEY and attrs[CKA.KEY_TYPE] == CKK.AES
    assert attrs[CKA.VALUE_LEN] == size
    assert attrs[CKA.LOCAL] is True and attrs[CKA.KEY_GEN_MECHANISM] == CKM.AES_KEY_GEN
    # Export the generated value under the known KEK and check it with cryptography.
    value = keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(key, m(CKM.AES_KEY_WRAP_PAD)))
    assert len(value) == size
    assert attrs[CKA.CHECK_VALUE] == aes_ecb(value, bytes(16))[:3]
    assert_aes_key(key, value)
    sealed = key.encrypt(MESSAGE)  # the SDK default: AES-GCM, HSM IV in front
    assert AESGCM(value).decrypt(sealed[:12], sealed[12:], None) == MESSAGE


def test_aes_generated_keys_differ(alice, kek, kek_value):
    keys = [alice.generate_key(m(CKM.AES_KEY_GEN), value_len=32, token=False) for _ in range(3)]
    values = {keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(k)) for k in keys}
    assert len(values) == 3


@pytest.mark.parametrize("size", AES_SIZES)
@pytest.mark.parametrize("tag_bits", [96, 104, 112, 120, 128])
def test_aes_gcm_caller_iv(alice, size, tag_bits):
    value, iv, aad = os.urandom(size), os.urandom(12), b"header:" + os.urandom(9)
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    out = key.encrypt(MESSAGE, m(CKM.AES_GCM, GcmParams(iv=iv, aad=aad, tag_bits=tag_bits)))
    tag_len = tag_bits // 8
    assert len(out) == len(MESSAGE) + tag_len
    mode = modes.GCM(iv, out[-tag_len:], min_tag_length=tag_len)
    decryptor = Cipher(algorithms.AES(value), mode).decryptor()
    decryptor.authenticate_additional_data(aad)
    assert decryptor.update(out[:-tag_len]) + decryptor.finalize() == MESSAGE
    if tag_bits == 128:
        assert out == AESGCM(value).encrypt(iv, MESSAGE, aad)
    # and the other way round: cryptography encrypts, the node decrypts
    encryptor = Cipher(algorithms.AES(value), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(aad)
    theirs = encryptor.update(b"reply" * 7) + encryptor.finalize() + encryptor.tag[:tag_len]
    assert key.decrypt(theirs, m(CKM.AES_GCM, GcmParams(iv=iv, aad=aad, tag_bits=tag_bits))) == b"reply" * 7


@pytest.mark.parametrize("size", AES_SIZES)
def test_aes_gcm_generated_iv(alice, size):
    value, aad = os.urandom(size), b"associated"
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    sealed = key.encrypt(MESSAGE, m(CKM.AES_GCM, GcmParams(aad=aad)))
    iv, body = sealed[:12], sealed[12:]
    assert AESGCM(value).decrypt(iv, body, aad) == MESSAGE
    again = key.encrypt(MESSAGE, m(CKM.AES_GCM, GcmParams(aad=aad)))
    assert again[:12] != iv  # a fresh IV each time
    # multi-part: the init call returns the IV the HSM chose
    gen_iv = alice.call("encrypt_init", m(CKM.AES_GCM, GcmParams(aad=aad, tag_bits=96)), key.handle)
    assert isinstance(gen_iv, bytes) and len(gen_iv) == 12
    parts = [alice.call("encrypt_update", MESSAGE[i:i + 50]) for i in range(0, len(MESSAGE), 50)]
    tail = alice.call("encrypt_final")
    out = b"".join(parts) + tail
    assert b"".join(parts) == AESGCM(value).encrypt(gen_iv, MESSAGE, aad)[:len(MESSAGE)]
    decryptor = Cipher(algorithms.AES(value), modes.GCM(gen_iv, out[-12:], min_tag_length=12)).decryptor()
    decryptor.authenticate_additional_data(aad)
    assert decryptor.update(out[:-12]) + decryptor.finalize() == MESSAGE
    # multi-part decryption through the node
    alice.call("decrypt_init", m(CKM.AES_GCM, GcmParams(iv=gen_iv, aad=aad, tag_bits=96)), key.handle)
    clear = alice.call("decrypt_update", out[:40]) + alice.call("decrypt_update", out[40:])
    assert clear + alice.call("decrypt_final") == MESSAGE


def _reference_cipher(mech: CKM, value: bytes, param: object, data: bytes, encrypt: bool) -> bytes:
    if mech == CKM.AES_ECB:
        mode = modes.ECB()
    elif mech == CKM.AES_CTR:
        mode = modes.CTR(param.cb)
    else:
        mode = modes.CBC(param)
    cipher = Cipher(algorithms.AES(value), mode)
    if encrypt:
        if mech == CKM.AES_CBC_PAD:
            padder = padding.PKCS7(128).padder()
            data = padder.update(data) + padder.finalize()
        ctx = cipher.encryptor()
        return ctx.update(data) + ctx.finalize()
    ctx = cipher.decryptor()
    out = ctx.update(data) + ctx.finalize()
    if mech == CKM.AES_CBC_PAD:
        unpadder = padding.PKCS7(128).unpadder()
        out = unpadder.update(out) + unpadder.finalize()
    return out


CIPHER_MODES = {
    "ECB": (CKM.AES_ECB, lambda: None, 64),
    "CBC": (CKM.AES_CBC, lambda: os.urandom(16), 80),
    "CBC_PAD": (CKM.AES_CBC_PAD, lambda: os.urandom(16), 77),
    "CTR": (CKM.AES_CTR, lambda: CtrParams(cb=os.urandom(12) + bytes(4), counter_bits=32), 77),
}


@pytest.mark.parametrize("size", AES_SIZES)
@pytest.mark.parametrize("mode", list(CIPHER_MODES))
def test_aes_block_modes_single_and_multi_part(alice, mode, size):
    mech, make_param, length = CIPHER_MODES[mode]
    value, param = os.urandom(size), make_param()
    data = os.urandom(length)
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    expected = _reference_cipher(mech, value, param, data, encrypt=True)
    # single part
    assert key.encrypt(data, m(mech, param)) == expected
    assert key.decrypt(expected, m(mech, param)) == data
    # multi-part, in uneven pieces
    cuts = [0, 1, 17, 40, length]
    alice.call("encrypt_init", m(mech, param), key.handle)
    pieces = [alice.call("encrypt_update", data[a:b]) for a, b in itertools.pairwise(cuts)]
    assert b"".join(pieces) + alice.call("encrypt_final") == expected
    alice.call("decrypt_init", m(mech, param), key.handle)
    cuts[-1] = len(expected)
    pieces = [alice.call("decrypt_update", expected[a:b]) for a, b in itertools.pairwise(cuts)]
    assert b"".join(pieces) + alice.call("decrypt_final") == data
    # C_Encrypt through the session's operation state
    alice.call("encrypt_init", m(mech, param), key.handle)
    assert alice.call("encrypt", data) == expected


def test_aes_cbc_pad_exact_block_gets_a_full_padding_block(alice):
    value, iv = os.urandom(16), os.urandom(16)
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    out = key.encrypt(bytes(32), m(CKM.AES_CBC_PAD, iv))
    assert len(out) == 48
    assert out == _reference_cipher(CKM.AES_CBC_PAD, value, iv, bytes(32), encrypt=True)


def test_aes_ctr_counter_bits(alice):
    """A 16-bit counter starting at 0xfffe gives two blocks, as a 128-bit counter would, then stops."""
    value = os.urandom(16)
    cb = os.urandom(14) + b"\xff\xfe"
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    mech = m(CKM.AES_CTR, CtrParams(cb=cb, counter_bits=16))
    expected = _reference_cipher(CKM.AES_CTR, value, CtrParams(cb=cb), bytes(32), encrypt=True)
    assert key.encrypt(bytes(32), mech) == expected
    with raises_exactly(errors.DataLenRange, CKR.DATA_LEN_RANGE):
        key.encrypt(bytes(33), mech)


@pytest.mark.parametrize("size", AES_SIZES)
def test_aes_cmac(alice, size):
    value = os.urandom(size)
    key = secret_key(alice, value)  # secret keys sign and verify by default
    ref = cmac.CMAC(algorithms.AES(value))
    ref.update(MESSAGE)
    expected = ref.finalize()
    assert key.sign(MESSAGE, m(CKM.AES_CMAC)) == expected
    key.verify(MESSAGE, expected, m(CKM.AES_CMAC))
    assert key.sign(MESSAGE, m(CKM.AES_CMAC_GENERAL, 8)) == expected[:8]
    key.verify(MESSAGE, expected[:8], m(CKM.AES_CMAC_GENERAL, 8))
    # multi-part
    alice.call("sign_init", m(CKM.AES_CMAC), key.handle)
    alice.call("sign_update", MESSAGE[:33])
    alice.call("sign_update", MESSAGE[33:])
    assert alice.call("sign_final") == expected
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        key.verify(MESSAGE + b"!", expected, m(CKM.AES_CMAC))


@pytest.mark.parametrize("size", AES_SIZES)
def test_aes_key_wrap_rfc3394(alice, kek, kek_value, size):
    target_value = os.urandom(size)
    target = secret_key(alice, target_value, encrypt=True)
    wrapped = kek.wrap(target, m(CKM.AES_KEY_WRAP))
    assert wrapped == keywrap.aes_key_wrap(kek_value, target_value)
    assert keywrap.aes_key_unwrap(kek_value, wrapped) == target_value
    # cryptography wraps, the node unwraps
    theirs = keywrap.aes_key_wrap(kek_value, target_value)
    back = unwrap_secret(alice, m(CKM.AES_KEY_WRAP), kek, theirs, encrypt=True)
    assert back[CKA.VALUE_LEN] == size
    assert back[CKA.CHECK_VALUE] == aes_ecb(target_value, bytes(16))[:3]
    assert_aes_key(back, target_value)


def test_aes_key_wrap_rfc3394_zero_pads_short_secrets(alice, kek, kek_value):
    value = os.urandom(20)
    target = secret_key(alice, value, CKK.GENERIC_SECRET)
    wrapped = kek.wrap(target, m(CKM.AES_KEY_WRAP))
    assert keywrap.aes_key_unwrap(kek_value, wrapped) == value + bytes(4)
    back = unwrap_secret(alice, m(CKM.AES_KEY_WRAP), kek, wrapped, CKK.GENERIC_SECRET, value_len=20)
    assert back[CKA.VALUE_LEN] == 20
    assert_hmac_key(back, value)


@pytest.mark.parametrize("mech", [CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP])
@pytest.mark.parametrize("length", [1, 20, 32, 77])
def test_aes_key_wrap_rfc5649(alice, kek, kek_value, mech, length):
    value = os.urandom(length)
    target = secret_key(alice, value, CKK.GENERIC_SECRET)
    wrapped = kek.wrap(target, m(mech))
    assert wrapped == keywrap.aes_key_wrap_with_padding(kek_value, value)
    theirs = keywrap.aes_key_wrap_with_padding(kek_value, value)
    back = unwrap_secret(alice, m(mech), kek, theirs, CKK.GENERIC_SECRET)
    assert back[CKA.VALUE_LEN] == length
    assert_hmac_key(back, value)
    # the unwrapped copy wraps to the same bytes again
    assert kek.wrap(back, m(mech)) == wrapped


@pytest.mark.parametrize("mech", [CKM.AES_KEY_WRAP, CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP])
def test_aes_key_wrap_mechanisms_as_data_ciphers(alice, mech):
    value, data = os.urandom(32), os.urandom(40)
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    expected = (keywrap.aes_key_wrap(value, data) if mech == CKM.AES_KEY_WRAP
                else keywrap.aes_key_wrap_with_padding(value, data))
    assert key.encrypt(data, m(mech)) == expected
    assert key.decrypt(expected, m(mech)) == data


def test_aes_gcm_and_cbc_pad_wrapping(alice, kek, kek_value):
    value, iv12, iv16, aad = os.urandom(32), os.urandom(12), os.urandom(16), b"wrap-aad"
    target = secret_key(alice, value, encrypt=True)
    wrapped = kek.wrap(target, m(CKM.AES_GCM, GcmParams(iv=iv12, aad=aad)))
    assert AESGCM(kek_value).decrypt(iv12, wrapped, aad) == value
    wrapped = kek.wrap(target, m(CKM.AES_CBC_PAD, iv16))
    assert _reference_cipher(CKM.AES_CBC_PAD, kek_value, iv16, wrapped, encrypt=False) == value
    # and unwrapping what cryptography made
    theirs = AESGCM(kek_value).encrypt(iv12, value, aad)
    gcm = m(CKM.AES_GCM, GcmParams(iv=iv12, aad=aad))
    assert_aes_key(unwrap_secret(alice, gcm, kek, theirs, encrypt=True), value)
    theirs = _reference_cipher(CKM.AES_CBC_PAD, kek_value, iv16, value, encrypt=True)
    assert_aes_key(unwrap_secret(alice, m(CKM.AES_CBC_PAD, iv16), kek, theirs, encrypt=True), value)


# ------------------------------------------------------------------------------------------------------------
# RSA


def test_rsa_2048_generation(rsa_pair, kek, kek_value):
    pub, priv, public_key = rsa_pair
    attrs = pub.get(CKA.MODULUS_BITS, CKA.PUBLIC_EXPONENT, CKA.KEY_TYPE, CKA.LOCAL)
    assert attrs[CKA.MODULUS_BITS] == 2048 and public_key.key_size == 2048
    assert attrs[CKA.PUBLIC_EXPONENT] == b"\x01\x00\x01"
    assert attrs[CKA.KEY_TYPE] == CKK.RSA and attrs[CKA.LOCAL] is True
    assert priv[CKA.MODULUS] == pub[CKA.MODULUS]
    # the private half, exported under the KEK, is a valid key for the same modulus
    exported = serialization.load_der_private_key(
        keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(priv, m(CKM.AES_KEY_WRAP_PAD))), None)
    assert exported.public_key().public_numbers() == public_key.public_numbers()
    with raises_exactly(errors.AttributeSensitive, CKR.ATTRIBUTE_SENSITIVE):
        priv.get(CKA.PRIVATE_EXPONENT)


def test_rsa_3072_generation_and_signature(alice):
    pub, priv = alice.generate_key_pair(m(CKM.RSA_PKCS_KEY_PAIR_GEN),
                                        {CKA.MODULUS_BITS: 3072, CKA.VERIFY: True}, {CKA.SIGN: True},
                                        token=False)
    public_key = rsa_public_of(pub)
    assert public_key.key_size == 3072 and pub[CKA.MODULUS_BITS] == 3072
    mech = m(CKM.SHA384_RSA_PKCS_PSS, PssParams(CKM.SHA384, CKG.MGF1_SHA384, 48))
    signature = priv.sign(MESSAGE, mech)
    assert len(signature) == 384
    pss = rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA384()), 48)
    public_key.verify(signature, MESSAGE, pss, hashes.SHA384())
    signature = priv.sign(MESSAGE, m(CKM.SHA256_RSA_PKCS))
    public_key.verify(signature, MESSAGE, rsa_padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("name", list(HASHES))
def test_rsa_pkcs_over_digest_info(rsa_pair, name):
    pub, priv, public_key = rsa_pair
    _, _, algorithm, prefix = HASHES[name]
    digest_info = bytes.fromhex(prefix) + hashlib.new(algorithm.name, MESSAGE).digest()
    signature = priv.sign(digest_info, m(CKM.RSA_PKCS))
    assert len(signature) == 256
    public_key.verify(signature, MESSAGE, rsa_padding.PKCS1v15(), algorithm())
    pub.verify(digest_info, signature, m(CKM.RSA_PKCS))


@pytest.mark.parametrize("name", list(HASHES))
def test_rsa_pkcs_hashed(rsa_pair, known_rsa, name):
    pub, priv, public_key = rsa_pair
    mech = m(RSA_PKCS_HASHED[name])
    algorithm = HASHES[name][2]
    signature = priv.sign(MESSAGE, mech)
    public_key.verify(signature, MESSAGE, rsa_padding.PKCS1v15(), algorithm())
    pub.verify(MESSAGE, signature, mech)
    # PKCS#1 v1.5 is deterministic: the imported key gives exactly cryptography's signature
    _, known_priv, private_key = known_rsa
    assert known_priv.sign(MESSAGE, mech) == private_key.sign(MESSAGE, rsa_padding.PKCS1v15(), algorithm())


def test_rsa_pkcs_multi_part(rsa_pair):
    _, priv, public_key = rsa_pair
    session = priv.session
    session.call("sign_init", m(CKM.SHA256_RSA_PKCS), priv.handle)
    for i in range(0, len(MESSAGE), 10):
        session.call("sign_update", MESSAGE[i:i + 10])
    signature = session.call("sign_final")
    public_key.verify(signature, MESSAGE, rsa_padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("name", ["SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"])
def test_rsa_pss_raw(rsa_pair, name):
    pub, priv, public_key = rsa_pair
    digest_mech, mgf, algorithm, _ = HASHES[name]
    salt = algorithm.digest_size
    mech = m(CKM.RSA_PKCS_PSS, PssParams(digest_mech, mgf, salt))
    digest = hashlib.new(algorithm.name, MESSAGE).digest()
    signature = priv.sign(digest, mech)
    pss = rsa_padding.PSS(rsa_padding.MGF1(algorithm()), salt)
    public_key.verify(signature, digest, pss, Prehashed(algorithm()))
    pub.verify(digest, signature, mech)
    assert priv.sign(digest, mech) != signature  # randomised salt


@pytest.mark.parametrize("name", list(RSA_PSS_HASHED))
@pytest.mark.parametrize("salt", [0, 20, 32])
def test_rsa_pss_hashed(rsa_pair, known_rsa, name, salt):
    pub, priv, public_key = rsa_pair
    digest_mech, mgf, algorithm, _ = HASHES[name]
    mech = m(RSA_PSS_HASHED[name], PssParams(digest_mech, mgf, salt))
    signature = priv.sign(MESSAGE, mech)
    public_key.verify(signature, MESSAGE, rsa_padding.PSS(rsa_padding.MGF1(algorithm()), salt), algorithm())
    pub.verify(MESSAGE, signature, mech)
    # a signature made by cryptography verifies through the imported public key
    known_pub, _, private_key = known_rsa
    theirs = private_key.sign(MESSAGE, rsa_padding.PSS(rsa_padding.MGF1(algorithm()), salt), algorithm())
    known_pub.verify(MESSAGE, theirs, mech)


def test_rsa_pss_with_other_mgf_hash(rsa_pair):
    _, priv, public_key = rsa_pair
    signature = priv.sign(MESSAGE, m(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA1, 32)))
    pss = rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA1()), 32)
    public_key.verify(signature, MESSAGE, pss, hashes.SHA256())


def test_rsa_pkcs_encryption(rsa_pair, known_rsa):
    _, priv, public_key = rsa_pair
    secret = os.urandom(100)
    assert priv.decrypt(public_key.encrypt(secret, rsa_padding.PKCS1v15()), m(CKM.RSA_PKCS)) == secret
    known_pub, _, private_key = known_rsa
    ciphertext = known_pub.encrypt(secret, m(CKM.RSA_PKCS))
    assert len(ciphertext) == 256
    assert private_key.decrypt(ciphertext, rsa_padding.PKCS1v15()) == secret


def test_raw_rsa_x_509(known_rsa):
    """Raw RSA on a PKCS#1 v1.5 block made by hand: cryptography's padded RSA reads what the node made."""
    known_pub, known_priv, private_key = known_rsa
    secret = os.urandom(100)
    block = b"\x00\x02" + bytes(b or 1 for b in os.urandom(256 - 3 - len(secret))) + b"\x00" + secret
    ciphertext = known_pub.encrypt(block, m(CKM.RSA_X_509))
    assert private_key.decrypt(ciphertext, rsa_padding.PKCS1v15()) == secret
    assert known_priv.decrypt(ciphertext, m(CKM.RSA_X_509)) == block
    info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(MESSAGE).digest()
    signed = b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info
    signature = known_priv.sign(signed, m(CKM.RSA_X_509))
    private_key.public_key().verify(signature, MESSAGE, rsa_padding.PKCS1v15(), hashes.SHA256())
    known_pub.verify(signed, signature, m(CKM.RSA_X_509))
    with pytest.raises(errors.SignatureInvalid):
        known_pub.verify(signed[:-1] + b"\x00", signature, m(CKM.RSA_X_509))


OAEP_CASES = [(name, name, label) for name in HASHES for label in (b"", b"label")]
OAEP_CASES.append(("SHA-256", "SHA-1", b"mixed"))


@pytest.mark.parametrize(("name", "mgf_name", "label"), OAEP_CASES)
def test_rsa_oaep(rsa_pair, known_rsa, name, mgf_name, label):
    _, priv, public_key = rsa_pair
    digest_mech, _, algorithm, _ = HASHES[name]
    mgf, mgf_algorithm = HASHES[mgf_name][1], HASHES[mgf_name][2]
    params = OaepParams(digest_mech, mgf, CKZ.DATA_SPECIFIED, label)
    scheme = rsa_padding.OAEP(rsa_padding.MGF1(mgf_algorithm()), algorithm(), label or None)
    secret = os.urandom(256 - 2 * algorithm.digest_size - 2)  # the longest message that fits
    assert priv.decrypt(public_key.encrypt(secret, scheme), m(CKM.RSA_PKCS_OAEP, params)) == secret
    known_pub, known_priv, private_key = known_rsa
    ciphertext = known_pub.encrypt(secret, m(CKM.RSA_PKCS_OAEP, params))
    assert private_key.decrypt(ciphertext, scheme) == secret
    assert known_priv.decrypt(ciphertext, m(CKM.RSA_PKCS_OAEP, params)) == secret
    with raises_exactly(errors.DataLenRange, CKR.DATA_LEN_RANGE):
        known_pub.encrypt(secret + b"x", m(CKM.RSA_PKCS_OAEP, params))


def test_rsa_oaep_wrong_label_fails(rsa_pair):
    _, priv, public_key = rsa_pair
    scheme = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"right")
    ciphertext = public_key.encrypt(b"secret", scheme)
    with raises_exactly(errors.EncryptedDataInvalid, CKR.ENCRYPTED_DATA_INVALID):
        wrong = OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"wrong")
        priv.decrypt(ciphertext, m(CKM.RSA_PKCS_OAEP, wrong))


def test_rsa_oaep_and_pkcs_key_transport(alice, rsa_wrap_pair, known_rsa_wrap):
    pub, priv, public_key = rsa_wrap_pair
    value = os.urandom(32)
    oaep = OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"transport")
    scheme = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"transport")
    # cryptography wraps with the node's public key, the node unwraps with the private key
    theirs = public_key.encrypt(value, scheme)
    key = unwrap_secret(alice, m(CKM.RSA_PKCS_OAEP, oaep), priv, theirs, encrypt=True)
    assert_aes_key(key, value)
    key = unwrap_secret(alice, m(CKM.RSA_PKCS), priv, public_key.encrypt(value, rsa_padding.PKCS1v15()),
                        encrypt=True)
    assert_aes_key(key, value)
    # the node wraps with an imported public key, cryptography unwraps with its private key
    known_pub, _, private_key = known_rsa_wrap
    target = secret_key(alice, value, encrypt=True)
    assert private_key.decrypt(known_pub.wrap(target, m(CKM.RSA_PKCS_OAEP, oaep)), scheme) == value
    assert private_key.decrypt(known_pub.wrap(target, m(CKM.RSA_PKCS)), rsa_padding.PKCS1v15()) == value
    # and the node's own round trip with the generated pair
    wrapped = pub.wrap(target, m(CKM.RSA_PKCS_OAEP, oaep))
    assert_aes_key(unwrap_secret(alice, m(CKM.RSA_PKCS_OAEP, oaep), priv, wrapped, encrypt=True), value)


@pytest.mark.parametrize("aes_bits", [128, 192, 256])
def test_rsa_aes_key_wrap(alice, rsa_wrap_pair, known_rsa_wrap, aes_bits):
    pub, priv, public_key = rsa_wrap_pair
    oaep = OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"")
    mech = m(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(aes_bits, oaep))
    scheme = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    value = os.urandom(32)
    # cryptography builds the PKCS#11 3.0 §2.1.21 blob, the node unwraps it
    ephemeral = os.urandom(aes_bits // 8)
    theirs = public_key.encrypt(ephemeral, scheme) + keywrap.aes_key_wrap_with_padding(ephemeral, value)
    assert_aes_key(unwrap_secret(alice, mech, priv, theirs, encrypt=True), value)
    # the node wraps, cryptography takes the blob apart
    known_pub, _, private_key = known_rsa_wrap
    target = secret_key(alice, value, encrypt=True)
    wrapped = known_pub.wrap(target, mech)
    ephemeral = private_key.decrypt(wrapped[:256], scheme)
    assert len(ephemeral) == aes_bits // 8
    assert keywrap.aes_key_unwrap_with_padding(ephemeral, wrapped[256:]) == value
    # round trip inside the node
    assert_aes_key(unwrap_secret(alice, mech, priv, pub.wrap(target, mech), encrypt=True), value)


def test_rsa_aes_key_wrap_exports_a_private_key(alice, kek, kek_value, known_rsa_wrap):
    """An EC private key imported into the node leaves it under RSA_AES_KEY_WRAP and is the same key."""
    private_key = ec.generate_private_key(ec.SECP384R1())
    priv = import_private(alice, kek, kek_value, private_key, CKK.EC, sign=True)
    known_pub, _, rsa_key = known_rsa_wrap
    oaep = OaepParams(CKM.SHA_1, CKG.MGF1_SHA1, CKZ.DATA_SPECIFIED, b"")
    wrapped = known_pub.wrap(priv, m(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, oaep)))
    scheme = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    ephemeral = rsa_key.decrypt(wrapped[:256], scheme)
    exported = serialization.load_der_private_key(
        keywrap.aes_key_unwrap_with_padding(ephemeral, wrapped[256:]), None)
    assert exported.private_numbers() == private_key.private_numbers()


# ------------------------------------------------------------------------------------------------------------
# EC


@pytest.mark.parametrize("name", list(CURVES))
def test_ec_generation(ec_pairs, kek, kek_value, name):
    pub, priv, public_key = ec_pairs[name]
    oid, curve = CURVES[name]
    attrs = pub.get(CKA.EC_PARAMS, CKA.KEY_TYPE, CKA.EC_POINT)
    assert attrs[CKA.EC_PARAMS] == oid and attrs[CKA.KEY_TYPE] == CKK.EC
    field = (curve.key_size + 7) // 8
    assert len(der_octet_string(attrs[CKA.EC_POINT])) == 1 + 2 * field
    assert priv[CKA.EC_PARAMS] == oid
    exported = serialization.load_der_private_key(
        keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(priv, m(CKM.AES_KEY_WRAP_PAD))), None)
    assert exported.public_key().public_numbers() == public_key.public_numbers()


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256", "SHA-512"])
def test_ecdsa_raw(ec_pairs, name, hash_name):
    pub, priv, public_key = ec_pairs[name]
    algorithm = HASHES[hash_name][2]
    digest = hashlib.new(algorithm.name, MESSAGE).digest()
    signature = priv.sign(digest, m(CKM.ECDSA))
    assert len(signature) == 2 * ((public_key.curve.key_size + 7) // 8)
    public_key.verify(rs_to_der(signature), digest, ec.ECDSA(Prehashed(algorithm())))
    pub.verify(digest, signature, m(CKM.ECDSA))


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("hash_name", list(ECDSA_HASHED))
def test_ecdsa_hashed(ec_pairs, name, hash_name):
    pub, priv, public_key = ec_pairs[name]
    algorithm = HASHES[hash_name][2]
    mech = m(ECDSA_HASHED[hash_name])
    signature = priv.sign(MESSAGE, mech)
    public_key.verify(rs_to_der(signature), MESSAGE, ec.ECDSA(algorithm()))
    pub.verify(MESSAGE, signature, mech)


def test_ecdsa_multi_part(ec_pairs):
    pub, priv, public_key = ec_pairs["P-384"]
    session = priv.session
    session.call("sign_init", m(CKM.ECDSA_SHA384), priv.handle)
    session.call("sign_update", MESSAGE[:7])
    session.call("sign_update", MESSAGE[7:])
    signature = session.call("sign_final")
    public_key.verify(rs_to_der(signature), MESSAGE, ec.ECDSA(hashes.SHA384()))
    session.call("verify_init", m(CKM.ECDSA_SHA384), pub.handle)
    session.call("verify_update", MESSAGE[:50])
    session.call("verify_update", MESSAGE[50:])
    session.call("verify_final", signature)


ECDH_CASES = [(name, CKD.NULL) for name in CURVES] + [(name, CKD.SHA256_KDF) for name in CURVES] + [
    ("P-384", CKD.SHA1_KDF), ("P-384", CKD.SHA224_KDF), ("P-521", CKD.SHA384_KDF), ("P-256", CKD.SHA512_KDF)]
KDF_HASHES = {CKD.SHA1_KDF: hashes.SHA1, CKD.SHA224_KDF: hashes.SHA224, CKD.SHA256_KDF: hashes.SHA256,
              CKD.SHA384_KDF: hashes.SHA384, CKD.SHA512_KDF: hashes.SHA512}


@pytest.mark.parametrize(("name", "kdf"), ECDH_CASES)
@pytest.mark.parametrize("point_form", ["raw", "der"])
def test_ecdh1_derive(ec_pairs, name, kdf, point_form):
    _, priv, public_key = ec_pairs[name]
    curve = CURVES[name][1]
    peer = ec.generate_private_key(curve)
    point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    if point_form == "der":
        length = bytes([len(point)]) if len(point) < 0x80 else bytes([0x81, len(point)])
        point = b"\x04" + length + point
    shared = peer.exchange(ec.ECDH(), public_key)
    if kdf == CKD.NULL:
        derived = priv.derive(m(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.NULL, b"", point)),
                              {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}, sign=True)
        assert derived[CKA.VALUE_LEN] == len(shared) == (curve.key_size + 7) // 8
        assert_hmac_key(derived, shared)
    else:
        shared_info = b"strongroom-ecdh"
        expected = X963KDF(KDF_HASHES[kdf](), 32, shared_info).derive(shared)
        derived = priv.derive(m(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(kdf, shared_info, point)),
                              {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}, value_len=32, encrypt=True,
                              decrypt=True)
        assert derived[CKA.CHECK_VALUE] == aes_ecb(expected, bytes(16))[:3]
        sealed = AESGCM(expected).encrypt(b"\x01" * 12, MESSAGE, None)
        assert derived.decrypt(sealed, m(CKM.AES_GCM, GcmParams(iv=b"\x01" * 12))) == MESSAGE


# ------------------------------------------------------------------------------------------------------------
# Ed25519


def test_ed25519_generation_and_eddsa(alice, kek, kek_value):
    pub, priv = alice.generate_key_pair(m(CKM.EC_EDWARDS_KEY_PAIR_GEN),
                                        {CKA.EC_PARAMS: ED25519_OID, CKA.VERIFY: True}, {CKA.SIGN: True},
                                        token=False)
    attrs = pub.get(CKA.EC_PARAMS, CKA.EC_POINT, CKA.KEY_TYPE)
    assert attrs[CKA.EC_PARAMS] == ED25519_OID and attrs[CKA.KEY_TYPE] == CKK.EC_EDWARDS
    raw = der_octet_string(attrs[CKA.EC_POINT])
    assert len(raw) == 32
    public_key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    for data in (b"", MESSAGE, os.urandom(1000)):
        signature = priv.sign(data, m(CKM.EDDSA))
        assert len(signature) == 64
        public_key.verify(signature, data)
        pub.verify(data, signature, m(CKM.EDDSA))
    exported = serialization.load_der_private_key(
        keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(priv, m(CKM.AES_KEY_WRAP_KWP))), None)
    assert exported.public_key().public_bytes_raw() == raw
    # Ed25519 is deterministic: the exported key signs to the same bytes
    assert exported.sign(MESSAGE) == priv.sign(MESSAGE, m(CKM.EDDSA))


def test_ed25519_by_curve_name(alice):
    name = b"\x13\x0cedwards25519"  # PrintableString choice of CKA_EC_PARAMS
    pub, priv = alice.generate_key_pair(m(CKM.EC_EDWARDS_KEY_PAIR_GEN),
                                        {CKA.EC_PARAMS: name, CKA.VERIFY: True}, {CKA.SIGN: True},
                                        token=False)
    public_key = ed25519.Ed25519PublicKey.from_public_bytes(der_octet_string(pub[CKA.EC_POINT]))
    public_key.verify(priv.sign(MESSAGE, m(CKM.EDDSA)), MESSAGE)


# ------------------------------------------------------------------------------------------------------------
# HMAC, digests, generic secrets


@pytest.mark.parametrize("name", list(HMACS))
@pytest.mark.parametrize("key_len", [1, 32, 200])
def test_hmac(alice, name, key_len):
    value = os.urandom(key_len)
    key = secret_key(alice, value, CKK.GENERIC_SECRET)
    plain, general = HMACS[name]
    algorithm = HASHES[name][2]()
    expected = hmac_of(value, algorithm, MESSAGE)
    assert key.sign(MESSAGE, m(plain)) == expected
    key.verify(MESSAGE, expected, m(plain))
    assert key.sign(MESSAGE, m(general, 10)) == expected[:10]
    key.verify(MESSAGE, expected[:10], m(general, 10))
    alice.call("sign_init", m(plain), key.handle)
    alice.call("sign_update", MESSAGE[:3])
    alice.call("sign_update", MESSAGE[3:])
    assert alice.call("sign_final") == expected
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        key.verify(MESSAGE, bytes([expected[0] ^ 1]) + expected[1:], m(plain))


def test_generic_secret_generation(alice, kek, kek_value):
    key = alice.generate_key(m(CKM.GENERIC_SECRET_KEY_GEN), value_len=48, token=False)
    assert key.get(CKA.KEY_TYPE, CKA.VALUE_LEN) == {CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.VALUE_LEN: 48}
    value = keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(key, m(CKM.AES_KEY_WRAP_KWP)))
    assert len(value) == 48
    for name, (plain, _) in HMACS.items():
        assert key.sign(MESSAGE, m(plain)) == hmac_of(value, HASHES[name][2](), MESSAGE)



LEGACY_HMAC = {"SHA-1": (CKK.SHA_1_HMAC, CKM.SHA_1_KEY_GEN), "SHA-224": (CKK.SHA224_HMAC, CKM.SHA224_KEY_GEN),
               "SHA-256": (CKK.SHA256_HMAC, CKM.SHA256_KEY_GEN), "SHA-384": (CKK.SHA384_HMAC, CKM.SHA384_KEY_GEN),
               "SHA-512": (CKK.SHA512_HMAC, CKM.SHA512_KEY_GEN)}


@pytest.mark.parametrize("name", list(LEGACY_HMAC))
def test_legacy_hmac_key_types_are_made_every_way_and_serve_their_own_hash_only(alice, kek, kek_value, name):
    """``CKK_SHA256_HMAC`` and its siblings (PKCS#11 2.40, kept in 3.0): created, unwrapped, derived and generated
    (the SHA-n key generation mechanisms); each MACs with its hash's HMAC mechanisms, as Python's hmac does, and
    answers ``CKR_KEY_TYPE_INCONSISTENT`` to another hash's."""
    key_type, generation = LEGACY_HMAC[name]
    value = os.urandom(40)
    created = secret_key(alice, value, key_type)
    unwrapped = unwrap_secret(alice, m(CKM.AES_KEY_WRAP_KWP), kek, keywrap.aes_key_wrap_with_padding(kek_value, value),
                              key_type, sign=True)
    generated = alice.generate_key(m(generation), value_len=40, token=False)
    assert generated.get(CKA.KEY_TYPE, CKA.VALUE_LEN, CKA.KEY_GEN_MECHANISM) == {
        CKA.KEY_TYPE: key_type, CKA.VALUE_LEN: 40, CKA.KEY_GEN_MECHANISM: generation}
    generated_value = keywrap.aes_key_unwrap_with_padding(kek_value, kek.wrap(generated, m(CKM.AES_KEY_WRAP_KWP)))
    base = secret_key(alice, value, CKK.GENERIC_SECRET, derive=True)
    derived = base.derive(_sp800_108(CKM.SHA256_HMAC, _array(b"legacy"), _counter(8)),
                          {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: key_type}, value_len=40, sign=True)
    derived_value = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 40, 1, None, CounterLocation.AfterFixed, None,
                              None, b"legacy").derive(value)
    plain, general = HMACS[name]
    algorithm = HASHES[name][2]()
    for key, known in ((created, value), (unwrapped, value), (generated, generated_value), (derived, derived_value)):
        assert key[CKA.KEY_TYPE] == key_type
        expected = hmac_of(known, algorithm, MESSAGE)
        assert key.sign(MESSAGE, m(plain)) == expected
        key.verify(MESSAGE, expected, m(plain))
        assert key.sign(MESSAGE, m(general, 12)) == expected[:12]
    for other, (other_plain, other_general) in HMACS.items():
        if other == name:
            continue
        for mech in (m(other_plain), m(other_general, 12)):
            with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
                created.sign(MESSAGE, mech)
    with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
        created.sign(MESSAGE, m(CKM.AES_CMAC))
    kdf_base = secret_key(alice, value, key_type, derive=True)
    for other, (other_plain, _) in HMACS.items():  # as an SP 800-108 base: its own hash's PRF only
        mech = _sp800_108(other_plain, _array(b"legacy"), _counter(8))
        secret = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}
        if other == name:
            assert_hmac_key(kdf_base.derive(mech, secret, value_len=32), KBKDFHMAC(
                algorithm, Mode.CounterMode, 32, 1, None, CounterLocation.AfterFixed, None, None, b"legacy")
                .derive(value))
            continue
        with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
            kdf_base.derive(mech, secret, value_len=32)
    with raises_exactly(errors.TemplateInconsistent, CKR.TEMPLATE_INCONSISTENT):  # generic-secret generation
        alice.generate_key(m(CKM.GENERIC_SECRET_KEY_GEN), {CKA.KEY_TYPE: key_type}, value_len=40, token=False)


@pytest.mark.parametrize("key_type", [CKK.MD5_HMAC, CKK.SHA3_256_HMAC])
def test_hmac_key_types_without_a_mechanism_are_refused_with_the_reason(alice, key_type):
    with raises_exactly(errors.AttributeValueInvalid, CKR.ATTRIBUTE_VALUE_INVALID) as refused:
        secret_key(alice, os.urandom(32), key_type)
    assert refused.value.message == (f"CKA_KEY_TYPE CKK_{key_type.name}: Strongroom offers no HMAC mechanism for "
                                     "this hash; use CKK_GENERIC_SECRET or a SHA-1/SHA-2 HMAC key type")

@pytest.mark.parametrize("name", list(HASHES))
def test_digest(alice, name):
    mech, _, algorithm, _ = HASHES[name]
    for data in (b"", b"abc", os.urandom(100_000)):
        assert alice.digest(data, m(mech)) == hashlib.new(algorithm.name, data).digest()
    alice.call("digest_init", m(mech))
    alice.call("digest_update", b"a")
    alice.call("digest_update", b"bc")
    assert alice.call("digest_final") == hashlib.new(algorithm.name, b"abc").digest()


def test_digest_known_answers(alice):
    # FIPS 180-4 examples, "abc"
    assert alice.digest(b"abc", m(CKM.SHA256)).hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert alice.digest(b"abc", m(CKM.SHA_1)).hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"


# ------------------------------------------------------------------------------------------------------------
# SP 800-108 counter-mode KDF


def _sp800_108(prf: CKM, *data_params: PrfDataParam) -> Mechanism:
    return m(CKM.SP800_108_COUNTER_KDF, Sp800108Params(int(prf), list(data_params)))


def _counter(width: int) -> PrfDataParam:
    return PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(False, width))


def _array(value: bytes) -> PrfDataParam:
    return PrfDataParam(CK_SP800_108.BYTE_ARRAY, value)


def _dkm(width: int, method: int = CK_SP800_108_DKM_LENGTH.SUM_OF_KEYS) -> PrfDataParam:
    return PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(method, False, width))


def test_sp800_108_hmac_sha256_counter_first(alice):
    base_value, label, context = os.urandom(32), b"encryption key", b"tenant-42"
    base = secret_key(alice, base_value, CKK.GENERIC_SECRET, derive=True)
    mech = _sp800_108(CKM.SHA256_HMAC, _counter(32), _array(label), _array(b"\x00"), _array(context),
                      _dkm(32))
    derived = base.derive(mech, AES_TEMPLATE, value_len=32, encrypt=True)
    expected = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 32, 4, 4, CounterLocation.BeforeFixed, label,
                         context, None).derive(base_value)
    assert derived[CKA.CHECK_VALUE] == aes_ecb(expected, bytes(16))[:3]
    assert_aes_key(derived, expected)


def test_sp800_108_hmac_sha512_counter_last_multi_block(alice):
    base_value, fixed = os.urandom(64), b"fixed input data"
    base = secret_key(alice, base_value, CKK.GENERIC_SECRET, derive=True)
    mech = _sp800_108(CKM.SHA512_HMAC, _array(fixed), _counter(8))
    derived = base.derive(mech, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}, value_len=80)
    expected = KBKDFHMAC(hashes.SHA512(), Mode.CounterMode, 80, 1, None, CounterLocation.AfterFixed, None,
                         None, fixed).derive(base_value)
    assert derived[CKA.VALUE_LEN] == 80
    assert_hmac_key(derived, expected)


def test_sp800_108_hmac_sha1_counter_in_the_middle(alice):
    base_value, before, after = os.urandom(20), b"before", b"after"
    base = secret_key(alice, base_value, CKK.GENERIC_SECRET, derive=True)
    mech = _sp800_108(CKM.SHA_1_HMAC, _array(before), _counter(16), _array(after), _dkm(16))
    derived = base.derive(mech, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}, value_len=45)
    fixed = before + after + (45 * 8).to_bytes(2, "big")
    expected = KBKDFHMAC(hashes.SHA1(), Mode.CounterMode, 45, 2, None, CounterLocation.MiddleFixed, None,
                         None, fixed, break_location=len(before)).derive(base_value)
    assert_hmac_key(derived, expected)


def test_sp800_108_aes_cmac(alice):
    base_value, label, context = os.urandom(16), b"L", b"C"
    base = secret_key(alice, base_value, derive=True)
    mech = _sp800_108(CKM.AES_CMAC, _counter(16), _array(label), _array(b"\x00"), _array(context),
                      _dkm(16, CK_SP800_108_DKM_LENGTH.SUM_OF_SEGMENTS))
    derived = base.derive(mech, AES_TEMPLATE, value_len=24, encrypt=True)
    # SUM_OF_SEGMENTS: L counts whole PRF blocks, 2 × 16 bytes = 256 bits
    fixed = label + b"\x00" + context + (256).to_bytes(2, "big")
    expected = KBKDFCMAC(algorithms.AES, Mode.CounterMode, 24, 2, None, CounterLocation.BeforeFixed, None,
                         None, fixed).derive(base_value)
    assert_aes_key(derived, expected)


# ------------------------------------------------------------------------------------------------------------
# Importing keys


@pytest.mark.parametrize("kind", ["RSA", "P-256", "P-521", "secp256k1", "Ed25519"])
def test_private_key_import_by_unwrap(alice, kek, kek_value, kind):
    if kind == "RSA":
        private_key, key_type = rsa.generate_private_key(public_exponent=65537, key_size=2048), CKK.RSA
    elif kind == "Ed25519":
        private_key, key_type = ed25519.Ed25519PrivateKey.generate(), CKK.EC_EDWARDS
    else:
        private_key, key_type = ec.generate_private_key(CURVES[kind][1]), CKK.EC
    priv = import_private(alice, kek, kek_value, private_key, key_type, sign=True)
    attrs = priv.get(CKA.CLASS, CKA.KEY_TYPE, CKA.LOCAL)
    assert attrs == {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: key_type, CKA.LOCAL: False}
    public_key = private_key.public_key()
    if kind == "RSA":
        assert priv[CKA.MODULUS] == public_key.public_numbers().n.to_bytes(256, "big")
        signature = priv.sign(MESSAGE, m(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 32)))
        public_key.verify(signature, MESSAGE, rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA256()), 32),
                          hashes.SHA256())
    elif kind == "Ed25519":
        public_key.verify(priv.sign(MESSAGE, m(CKM.EDDSA)), MESSAGE)
    else:
        assert priv[CKA.EC_PARAMS] == CURVES[kind][0]
        signature = priv.sign(MESSAGE, m(CKM.ECDSA_SHA256))
        public_key.verify(rs_to_der(signature), MESSAGE, ec.ECDSA(hashes.SHA256()))


def test_private_key_import_by_rfc3394_with_zero_padding(alice, kek, kek_value):
    private_key = ec.generate_private_key(ec.SECP256R1())
    encoded = pkcs8(private_key)
    padded = encoded + bytes(-len(encoded) % 8)
    priv = alice.unwrap(m(CKM.AES_KEY_WRAP), kek, keywrap.aes_key_wrap(kek_value, padded),
                        {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.EC}, sign=True)
    signature = priv.sign(MESSAGE, m(CKM.ECDSA_SHA512))
    private_key.public_key().verify(rs_to_der(signature), MESSAGE, ec.ECDSA(hashes.SHA512()))


def test_private_key_import_of_the_wrong_type_is_refused(alice, kek, kek_value):
    wrapped = keywrap.aes_key_wrap_with_padding(kek_value, pkcs8(ec.generate_private_key(ec.SECP256R1())))
    with raises_exactly(errors.WrappedKeyInvalid, CKR.WRAPPED_KEY_INVALID):
        alice.unwrap(m(CKM.AES_KEY_WRAP_PAD), kek, wrapped,
                     {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.RSA}, sign=True)


def test_rsa_public_key_import(alice, known_rsa):
    _, _, private_key = known_rsa
    pub = import_rsa_public(alice, private_key.public_key(), verify=True)
    attrs = pub.get(CKA.MODULUS_BITS, CKA.MODULUS)
    assert attrs[CKA.MODULUS_BITS] == 2048
    assert int.from_bytes(attrs[CKA.MODULUS], "big") == private_key.public_key().public_numbers().n
    theirs = private_key.sign(MESSAGE, rsa_padding.PKCS1v15(), hashes.SHA384())
    pub.verify(MESSAGE, theirs, m(CKM.SHA384_RSA_PKCS))
    forged = private_key.sign(MESSAGE + b".", rsa_padding.PKCS1v15(), hashes.SHA384())
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        pub.verify(MESSAGE, forged, m(CKM.SHA384_RSA_PKCS))


@pytest.mark.parametrize("name", list(CURVES))
def test_ec_public_key_import(alice, name):
    oid, curve = CURVES[name]
    private_key = ec.generate_private_key(curve)
    point = private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
    length = bytes([len(point)]) if len(point) < 0x80 else bytes([0x81, len(point)])
    pub = alice.create_object({CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.EC, CKA.EC_PARAMS: oid,
                               CKA.EC_POINT: b"\x04" + length + point}, verify=True)
    size = (curve.key_size + 7) // 8
    signature = der_to_rs(private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA256())), size)
    pub.verify(MESSAGE, signature, m(CKM.ECDSA_SHA256))
    digest = hashlib.sha384(MESSAGE).digest()
    theirs = private_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    pub.verify(digest, der_to_rs(theirs, size), m(CKM.ECDSA))
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        pub.verify(MESSAGE + b"x", signature, m(CKM.ECDSA_SHA256))


def test_ed25519_public_key_import(alice):
    private_key = ed25519.Ed25519PrivateKey.generate()
    pub = alice.create_object({CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.EC_EDWARDS,
                               CKA.EC_PARAMS: ED25519_OID,
                               CKA.EC_POINT: b"\x04\x20" + private_key.public_key().public_bytes_raw()},
                              verify=True)
    pub.verify(MESSAGE, private_key.sign(MESSAGE), m(CKM.EDDSA))
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        pub.verify(MESSAGE, private_key.sign(b"other"), m(CKM.EDDSA))


def test_secret_key_template_with_cls_keyword(alice):
    """The SDK documents ``cls`` as the keyword for CKA_CLASS (``class`` is reserved in Python)."""
    value = os.urandom(16)
    key = alice.create_object(cls=CKO.SECRET_KEY, key_type=CKK.AES, value=value, encrypt=True, decrypt=True)
    assert key[CKA.CLASS] == CKO.SECRET_KEY
    assert_aes_key(key, value)
    assert key in alice.find(cls=CKO.SECRET_KEY, key_type=CKK.AES)


# ------------------------------------------------------------------------------------------------------------
# Random numbers, output buffers, error codes


def test_generate_random(alice):
    for length in (0, 1, 16, 1000, 65_536, 1024 * 1024):
        assert len(alice.random(length)) == length
    samples = {alice.random(32) for _ in range(20)}
    assert len(samples) == 20
    big = alice.random(1024 * 1024)
    assert len(set(big)) == 256  # every byte value appears in a MiB of random data
    with raises_exactly(errors.ArgumentsBad, CKR.ARGUMENTS_BAD):
        alice.random(1024 * 1024 + 1)


def test_buffer_too_small_round_trip_rsa(rsa_pair):
    _, priv, public_key = rsa_pair
    session = priv.session
    mech = m(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 32))
    session.call("sign_init", mech, priv.handle)
    assert session.call("sign", MESSAGE, query=True) == 256
    with raises_exactly(errors.BufferTooSmall, CKR.BUFFER_TOO_SMALL) as info:
        session.call("sign", MESSAGE, out_len=10)
    assert info.value.required == 256
    signature = session.call("sign", MESSAGE, out_len=256)
    assert len(signature) == 256
    pss = rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA256()), 32)
    public_key.verify(signature, MESSAGE, pss, hashes.SHA256())
    with raises_exactly(errors.OperationNotInitialized, CKR.OPERATION_NOT_INITIALIZED):
        session.call("sign", MESSAGE)


def test_buffer_too_small_round_trip_ecdsa_and_final(ec_pairs):
    _, priv, public_key = ec_pairs["P-521"]
    session = priv.session
    session.call("sign_init", m(CKM.ECDSA_SHA512), priv.handle)
    session.call("sign_update", MESSAGE)
    assert session.call("sign_final", query=True) == 132
    with raises_exactly(errors.BufferTooSmall, CKR.BUFFER_TOO_SMALL) as info:
        session.call("sign_final", out_len=131)
    assert info.value.required == 132
    first = session.call("sign_final", out_len=132)
    public_key.verify(rs_to_der(first), MESSAGE, ec.ECDSA(hashes.SHA512()))


def test_buffer_too_small_keeps_the_same_result(alice):
    """The retried call delivers the result computed once: one GCM IV, one ciphertext."""
    value = os.urandom(32)
    key = secret_key(alice, value, encrypt=True, decrypt=True)
    iv = alice.call("encrypt_init", m(CKM.AES_GCM, GcmParams()), key.handle)
    needed = alice.call("encrypt", MESSAGE, query=True)
    assert needed == len(MESSAGE) + 16
    with raises_exactly(errors.BufferTooSmall, CKR.BUFFER_TOO_SMALL) as info:
        alice.call("encrypt", MESSAGE, out_len=needed - 1)
    assert info.value.required == needed
    out = alice.call("encrypt", MESSAGE, out_len=needed)
    assert AESGCM(value).decrypt(iv, out, None) == MESSAGE


def test_buffer_too_small_on_wrap(alice, kek, kek_value):
    value = os.urandom(32)
    target = secret_key(alice, value, encrypt=True)
    assert alice.call("wrap_key", m(CKM.AES_KEY_WRAP_KWP), kek.handle, target.handle, query=True) == 40
    with raises_exactly(errors.BufferTooSmall, CKR.BUFFER_TOO_SMALL) as info:
        alice.call("wrap_key", m(CKM.AES_KEY_WRAP_KWP), kek.handle, target.handle, out_len=39)
    assert info.value.required == 40
    wrapped = alice.call("wrap_key", m(CKM.AES_KEY_WRAP_KWP), kek.handle, target.handle, out_len=40)
    assert keywrap.aes_key_unwrap_with_padding(kek_value, wrapped) == value


def test_error_codes_cross_the_wire(alice, rsa_pair, ec_pairs, kek):
    rsa_pub, rsa_priv, _ = rsa_pair
    ec_pub, ec_priv, _ = ec_pairs["P-256"]
    signature = ec_priv.sign(MESSAGE, m(CKM.ECDSA_SHA256))
    corrupted = signature[:-1] + bytes([signature[-1] ^ 0x01])
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID) as info:
        ec_pub.verify(MESSAGE, corrupted, m(CKM.ECDSA_SHA256))
    assert info.value.message  # the node's explanation travels too
    rsa_signature = rsa_priv.sign(MESSAGE, m(CKM.SHA256_RSA_PKCS))
    with raises_exactly(errors.SignatureInvalid, CKR.SIGNATURE_INVALID):
        rsa_pub.verify(MESSAGE, rsa_signature[:100] + bytes([rsa_signature[100] ^ 4]) + rsa_signature[101:],
                       m(CKM.SHA256_RSA_PKCS))
    with raises_exactly(errors.SignatureLenRange, CKR.SIGNATURE_LEN_RANGE):
        rsa_pub.verify(MESSAGE, rsa_signature[:-1], m(CKM.SHA256_RSA_PKCS))
    with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
        rsa_priv.sign(MESSAGE, m(CKM.ECDSA_SHA256))
    with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
        ec_priv.sign(MESSAGE, m(CKM.SHA256_RSA_PKCS))
    aes = secret_key(alice, os.urandom(16), encrypt=True, decrypt=True)
    with raises_exactly(errors.KeyTypeInconsistent, CKR.KEY_TYPE_INCONSISTENT):
        aes.sign(MESSAGE, m(CKM.SHA256_HMAC))
    with raises_exactly(errors.KeyFunctionNotPermitted, CKR.KEY_FUNCTION_NOT_PERMITTED):
        kek.encrypt(MESSAGE, m(CKM.AES_ECB))
    with raises_exactly(errors.MechanismInvalid, CKR.MECHANISM_INVALID):
        aes.sign(MESSAGE, m(CKM.AES_CBC, bytes(16)))
    with raises_exactly(errors.MechanismInvalid, CKR.MECHANISM_INVALID):
        aes.encrypt(MESSAGE, Mechanism(int(CKM.AES_CCM)))
    with raises_exactly(errors.MechanismParamInvalid, CKR.MECHANISM_PARAM_INVALID):
        aes.encrypt(MESSAGE, m(CKM.AES_GCM, GcmParams(iv=bytes(12), tag_bits=64)))
    with raises_exactly(errors.MechanismParamInvalid, CKR.MECHANISM_PARAM_INVALID):
        aes.encrypt(MESSAGE, m(CKM.AES_CBC, bytes(8)))
    with raises_exactly(errors.DataLenRange, CKR.DATA_LEN_RANGE):
        aes.encrypt(bytes(15), m(CKM.AES_ECB))
    sealed = aes.encrypt(MESSAGE)
    with raises_exactly(errors.EncryptedDataInvalid, CKR.ENCRYPTED_DATA_INVALID):
        aes.decrypt(sealed[:-1] + bytes([sealed[-1] ^ 0x80]))
    with raises_exactly(errors.AttributeSensitive, CKR.ATTRIBUTE_SENSITIVE):
        aes.get(CKA.VALUE)
    with raises_exactly(errors.OperationNotInitialized, CKR.OPERATION_NOT_INITIALIZED):
        alice.call("sign_final")


def test_unwrap_errors_cross_the_wire(alice, kek, kek_value):
    wrapped = keywrap.aes_key_wrap_with_padding(kek_value, os.urandom(32))
    with raises_exactly(errors.WrappedKeyInvalid, CKR.WRAPPED_KEY_INVALID):
        unwrap_secret(alice, m(CKM.AES_KEY_WRAP_PAD), kek, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with raises_exactly(errors.WrappedKeyLenRange, CKR.WRAPPED_KEY_LEN_RANGE):
        unwrap_secret(alice, m(CKM.AES_KEY_WRAP_PAD), kek, wrapped[:-3])
    with raises_exactly(errors.MechanismParamInvalid, CKR.MECHANISM_PARAM_INVALID):
        kek.wrap(secret_key(alice, os.urandom(16)), m(CKM.AES_GCM, GcmParams()))


def test_key_separation(alice, rsa_wrap_pair):
    """Keys are made with the usages asked for; the attacks are refused where they happen (all of them, through
    the SDK: tests/cluster/test_key_separation_sdk.py)."""
    both = secret_key(alice, os.urandom(32), wrap=True, decrypt=True)
    with raises_exactly(errors.KeyNotWrappable, CKR.KEY_NOT_WRAPPABLE):
        both.wrap(secret_key(alice, os.urandom(32)), m(CKM.AES_KEY_WRAP_PAD))
    unwrapper = secret_key(alice, os.urandom(32), unwrap=True, encrypt=True)
    with raises_exactly(errors.KeyFunctionNotPermitted, CKR.KEY_FUNCTION_NOT_PERMITTED):
        unwrap_secret(alice, m(CKM.AES_KEY_WRAP_PAD), unwrapper, unwrapper.encrypt(bytes(32), m(CKM.AES_KEY_WRAP_PAD)))
    _, priv, _ = rsa_wrap_pair
    with raises_exactly(errors.AttributeReadOnly, CKR.ATTRIBUTE_READ_ONLY):
        priv.set(decrypt=True)  # the public half wraps
    only_unwraps = secret_key(alice, os.urandom(32), unwrap=True)
    with raises_exactly(errors.TemplateInconsistent, CKR.TEMPLATE_INCONSISTENT):
        only_unwraps.set(encrypt=True)
    assert priv[CKA.DECRYPT] is False and only_unwraps[CKA.ENCRYPT] is False


# ------------------------------------------------------------------------------------------------------------
# Coverage of the mechanism table (keep this test last)


def _mechanisms_named_in_this_module() -> set[int]:
    """Every ``CKM.NAME`` this module's source names outside the coverage test (tests, their tables, fixtures
    and helpers): read from the source, so it does not depend on which tests ran in this process."""
    named = set()
    for node in ast.parse(Path(__file__).read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == "test_every_mechanism_was_exercised":
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "CKM":
                named.add(int(CKM[sub.attr]))
    return named


def test_every_mechanism_was_exercised(request):
    """Every mechanism of the catalogue is named by a test of this module, whichever tests ran here; and when
    every case of the module ran before this one in this process (``--dist loadfile`` keeps a module on one
    worker; pytest runs this test last), every one went to the node through :func:`m`."""
    named = _mechanisms_named_in_this_module()
    unnamed = sorted(CKM(mech).name for mech in IMPLEMENTED if int(mech) not in named)
    assert not unnamed, f"mechanisms no test names: {unnamed}"
    module = sys.modules[__name__]
    cases = [item for item in request.session.items
             if getattr(item, "module", None) is module and item is not request.node]
    every_test = {item.originalname for item in cases} | {request.node.originalname} == {
        name for name in vars(module) if name.startswith("test_")}
    if every_test and {item.nodeid for item in cases} <= RAN:
        missing = sorted(CKM(mech).name for mech in IMPLEMENTED if int(mech) not in EXERCISED)
        assert not missing, f"mechanisms never exercised: {missing}"
