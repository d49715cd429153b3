"""What each wrapping mechanism may wrap (src/strongroom/objects/wrap_mechanisms.py), through the SDK against a
real node: every row with a secret key and a private key, each answer exact, every wrap that succeeds opened by
``cryptography``; and the catalogue's ``CKF_WRAP`` / ``CKF_UNWRAP`` flags naming exactly the table's mechanisms."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom import errors
from strongroom.client import Key, Session
from strongroom.mechanism_catalogue import IMPLEMENTED
from strongroom.mechanism_params import GcmParams, Mechanism, OaepParams, RsaAesKeyWrapParams
from strongroom.objects.wrap_mechanisms import WRAPPABLE
from strongroom.vocab import CKA, CKF, CKG, CKK, CKM, CKO, CKR, CKZ

P256 = bytes.fromhex("06082a8648ce3d030107")
IV = bytes(range(16))
OAEP = OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"")
OAEP_SCHEME = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
RSA_MECHANISMS = {CKM.RSA_PKCS: Mechanism(CKM.RSA_PKCS), CKM.RSA_PKCS_OAEP: Mechanism(CKM.RSA_PKCS_OAEP, OAEP),
                  CKM.RSA_AES_KEY_WRAP: Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, OAEP))}
AES_MECHANISMS = {CKM.AES_KEY_WRAP: Mechanism(CKM.AES_KEY_WRAP), CKM.AES_KEY_WRAP_PAD: Mechanism(CKM.AES_KEY_WRAP_PAD),
                  CKM.AES_KEY_WRAP_KWP: Mechanism(CKM.AES_KEY_WRAP_KWP),
                  CKM.AES_CBC_PAD: Mechanism(CKM.AES_CBC_PAD, IV),
                  CKM.AES_GCM: Mechanism(CKM.AES_GCM, GcmParams(IV[:12], b"", 128))}


def _pkcs8(private_key: object) -> bytes:
    return private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def _aes_open(mech: CKM, kek: bytes, blob: bytes) -> bytes:
    """Open an AES-wrapped blob with ``cryptography`` alone."""
    if mech == CKM.AES_KEY_WRAP:
        return keywrap.aes_key_unwrap(kek, blob)
    if mech in (CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP):
        return keywrap.aes_key_unwrap_with_padding(kek, blob)
    if mech == CKM.AES_GCM:
        return AESGCM(kek).decrypt(IV[:12], blob, None)
    decryptor = Cipher(algorithms.AES(kek), modes.CBC(IV)).decryptor()
    padded = decryptor.update(blob) + decryptor.finalize()
    return padded[:-padded[-1]]


@pytest.fixture(scope="module")
def kek_value() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def kek(alice: Session, kek_value: bytes) -> Key:
    return alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: kek_value},
                               wrap=True, unwrap=True, token=False)


@pytest.fixture(scope="module")
def transport(alice: Session):
    """An RSA-2048 key of ``cryptography``'s, its public half imported to wrap, its private half imported
    (RFC 5649 under a key of known value) to unwrap."""
    private_key = rsa.generate_private_key(65537, 2048)
    numbers = private_key.public_key().public_numbers()
    public = alice.create_object({CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA,
                                  CKA.MODULUS: numbers.n.to_bytes(256, "big"),
                                  CKA.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big")}, wrap=True, token=False)
    value = os.urandom(32)
    loader = alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: value},
                                 unwrap=True, token=False)
    private = alice.unwrap(Mechanism(CKM.AES_KEY_WRAP_PAD), loader,
                           keywrap.aes_key_wrap_with_padding(value, _pkcs8(private_key)),
                           {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.RSA}, unwrap=True, token=False)
    return public, private, private_key


def _secret(alice: Session, value: bytes) -> Key:
    return alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: value},
                               sensitive=False, extractable=True, encrypt=True, token=False)


def _ec_private(alice: Session) -> Key:
    _, private = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                         {CKA.SIGN: True, CKA.EXTRACTABLE: True}, token=False)
    return private


def _ed25519_private(alice: Session) -> Key:
    _, private = alice.generate_key_pair(CKM.EC_EDWARDS_KEY_PAIR_GEN,
                                         {CKA.EC_PARAMS: bytes.fromhex("06032b6570"), CKA.VERIFY: True},
                                         {CKA.SIGN: True, CKA.EXTRACTABLE: True}, token=False)
    return private


def test_the_catalogue_flags_wrap_and_unwrap_on_exactly_the_tables_mechanisms():
    flagged = {mech for mech, row in IMPLEMENTED.items() if row.flags & (CKF.WRAP | CKF.UNWRAP)}
    assert flagged == set(WRAPPABLE)
    assert all(IMPLEMENTED[mech].flags & CKF.WRAP and IMPLEMENTED[mech].flags & CKF.UNWRAP for mech in WRAPPABLE)
    assert set(WRAPPABLE) == set(RSA_MECHANISMS) | set(AES_MECHANISMS)


@pytest.mark.parametrize("mech", list(RSA_MECHANISMS), ids=lambda m: m.name)
def test_rsa_mechanisms_wrap_secret_keys_and_only_rsa_aes_a_private_key(alice, transport, mech):
    public, _, private_key = transport
    value = os.urandom(32)
    blob = public.wrap(_secret(alice, value), RSA_MECHANISMS[mech])
    if mech == CKM.RSA_PKCS:
        assert private_key.decrypt(blob, rsa_padding.PKCS1v15()) == value
    elif mech == CKM.RSA_PKCS_OAEP:
        assert private_key.decrypt(blob, OAEP_SCHEME) == value
    else:
        aes_key = private_key.decrypt(blob[:256], OAEP_SCHEME)
        assert keywrap.aes_key_unwrap_with_padding(aes_key, blob[256:]) == value
    target = _ec_private(alice)
    if mech == CKM.RSA_AES_KEY_WRAP:
        blob = public.wrap(target, RSA_MECHANISMS[mech])
        aes_key = private_key.decrypt(blob[:256], OAEP_SCHEME)
        opened = serialization.load_der_private_key(keywrap.aes_key_unwrap_with_padding(aes_key, blob[256:]), None)
        assert isinstance(opened, ec.EllipticCurvePrivateKey)
        return
    with pytest.raises(errors.KeyNotWrappable) as refused:
        public.wrap(target, RSA_MECHANISMS[mech])
    assert refused.value.ckr == CKR.KEY_NOT_WRAPPABLE
    assert "wraps only secret keys" in refused.value.message


@pytest.mark.parametrize("mech", [CKM.RSA_PKCS, CKM.RSA_PKCS_OAEP], ids=lambda m: m.name)
def test_rsa_pkcs_and_oaep_do_not_unwrap_into_a_private_key(alice, transport, mech):
    public_key = transport[2].public_key()
    encoded = _pkcs8(ec.generate_private_key(ec.SECP256R1()))  # 138 bytes: fits one RSA-2048 block
    padding = rsa_padding.PKCS1v15() if mech == CKM.RSA_PKCS else OAEP_SCHEME
    with pytest.raises(errors.TemplateInconsistent) as refused:
        alice.unwrap(RSA_MECHANISMS[mech], transport[1], public_key.encrypt(encoded, padding),
                     {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.EC}, sign=True, token=False)
    assert refused.value.ckr == CKR.TEMPLATE_INCONSISTENT
    assert refused.value.message == (f"CKM_{mech.name} unwraps only secret keys (PKCS#11 3.0 current mechanisms), "
                                     "not a CKO_PRIVATE_KEY")


@pytest.mark.parametrize("mech", list(AES_MECHANISMS), ids=lambda m: m.name)
def test_aes_mechanisms_wrap_secret_and_private_keys(alice, kek, kek_value, mech):
    value = os.urandom(24)
    opened = _aes_open(mech, kek_value, kek.wrap(_secret(alice, value), AES_MECHANISMS[mech]))
    assert opened == value
    target = _ed25519_private(alice)  # PKCS#8 of 48 bytes: a multiple of 8, so RFC 3394 carries it too
    opened_key = serialization.load_der_private_key(_aes_open(mech, kek_value, kek.wrap(target, AES_MECHANISMS[mech])),
                                                    None)
    assert isinstance(opened_key, ed25519.Ed25519PrivateKey)
    target = _ec_private(alice)
    if mech != CKM.AES_KEY_WRAP:
        opened_key = serialization.load_der_private_key(
            _aes_open(mech, kek_value, kek.wrap(target, AES_MECHANISMS[mech])), None)
        assert isinstance(opened_key, ec.EllipticCurvePrivateKey)
        return
    with pytest.raises(errors.KeyNotWrappable) as refused:  # P-256 PKCS#8: not a multiple of 8 bytes
        kek.wrap(target, AES_MECHANISMS[mech])
    assert refused.value.ckr == CKR.KEY_NOT_WRAPPABLE
    assert "use CKM_AES_KEY_WRAP_KWP" in refused.value.message
