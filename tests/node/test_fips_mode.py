"""The cluster's mode (FIPS or NON_FIPS), fixed in the founding change: what each mode refuses, with which code,
and what the mechanism list shows. Signatures made here are checked with cryptography's own RSA."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

from strongroom.errors import ArgumentsBad, KeySizeRange, MechanismInvalid
from strongroom.mechanism_params import Mechanism
from strongroom.node import HSM, Application
from strongroom.vocab import CKA, CKF, CKK, CKM, CKO, CKR, CKU

from .conftest import ALICE_PW, FAST, initial_password, login
from .keys import rsa


def _cluster(tmp_path, mode: str | None) -> HSM:
    extra = {} if mode is None else {"mode": mode}
    node = HSM.initialize(tmp_path / (mode or "default"), cluster_id="cluster-test0000001", settings=FAST, **extra)
    admin = login(node, CKU.SO, f"admin:{initial_password(node)}")
    admin.app.activate(admin.s, "admin-pass-1")
    admin.app.create_user(admin.s, "alice", ALICE_PW, "crypto-user")
    admin.app.close_all_sessions()
    return node


@pytest.fixture
def fips(tmp_path):
    node = _cluster(tmp_path, None)  # the default
    yield node
    node.close()


@pytest.fixture
def non_fips(tmp_path):
    node = _cluster(tmp_path, "NON_FIPS")
    yield node
    node.close()


def _read_public(who, handle: int) -> RSAPublicNumbers:
    (ok_n, modulus), (ok_e, exponent) = who.app.get_attribute_value(who.s, handle, [CKA.MODULUS, CKA.PUBLIC_EXPONENT])
    assert ok_n == ok_e == CKR.OK
    return RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big"))


def _sign(who, mech: int, key: int, data: bytes) -> bytes:
    who.app.sign_init(who.s, Mechanism(mech), key)
    return who.app.sign(who.s, data)


def test_the_mode_is_in_the_node_information_and_unknown_modes_are_refused(fips, non_fips, tmp_path):
    assert fips.info()["mode"] == "FIPS" and non_fips.info()["mode"] == "NON_FIPS"
    with pytest.raises(ArgumentsBad, match="the cluster mode is FIPS or NON_FIPS, not 'fips'"):
        HSM.initialize(tmp_path / "other", settings=FAST, mode="fips")
    assert not (tmp_path / "other").exists()


def test_a_fips_cluster_refuses_what_fips_140_3_does_not_approve(fips):
    alice = login(fips, CKU.USER, f"alice:{ALICE_PW}")
    with pytest.raises(KeySizeRange, match=r"2048\.\.4096"):
        rsa(alice, bits=1024)
    pub, priv = rsa(alice)
    for mech in (CKM.SHA1_RSA_PKCS, CKM.RSA_X_509):
        with pytest.raises(MechanismInvalid) as refused:
            alice.app.sign_init(alice.s, Mechanism(mech), priv)
        assert refused.value.ckr == CKR.MECHANISM_INVALID
        assert "in a FIPS cluster (NON_FIPS only)" in refused.value.message
    with pytest.raises(MechanismInvalid):
        alice.app.encrypt_init(alice.s, Mechanism(CKM.RSA_X_509), pub)
    # SP 800-131A legacy use: SHA-1 signatures and RSA-1024 keys still verify
    private = rsa_keys.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - legacy on purpose
    numbers = private.public_key().public_numbers()
    small = alice.app.create_object(alice.s, {
        CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA, CKA.TOKEN: False, CKA.VERIFY: True, CKA.ENCRYPT: True,
        CKA.MODULUS: numbers.n.to_bytes(128, "big"), CKA.PUBLIC_EXPONENT: b"\x01\x00\x01"})
    signature = private.sign(b"legacy", padding.PKCS1v15(), hashes.SHA1())
    alice.app.verify_init(alice.s, Mechanism(CKM.SHA1_RSA_PKCS), small)
    alice.app.verify(alice.s, b"legacy", signature)
    with pytest.raises(KeySizeRange, match="1024-bit RSA key: a FIPS cluster uses RSA keys of at least 2048 bits"):
        alice.app.encrypt_init(alice.s, Mechanism(CKM.RSA_PKCS), small)
    assert _sign(alice, CKM.SHA256_RSA_PKCS, priv, b"approved")


def test_a_non_fips_cluster_offers_the_legacy_sizes_and_mechanisms(non_fips):
    alice = login(non_fips, CKU.USER, f"alice:{ALICE_PW}")
    pub, priv = rsa(alice, bits=1024)
    public = _read_public(alice, pub).public_key()
    assert public.key_size == 1024
    signature = _sign(alice, CKM.SHA1_RSA_PKCS, priv, b"legacy")
    public.verify(signature, b"legacy", padding.PKCS1v15(), hashes.SHA1())
    raw = _sign(alice, CKM.RSA_X_509, priv, b"Hello world")
    assert pow(int.from_bytes(raw, "big"), 65537, public.public_numbers().n) == int.from_bytes(b"Hello world", "big")
    alice.app.verify_init(alice.s, Mechanism(CKM.RSA_X_509), pub)
    alice.app.verify(alice.s, b"Hello world", raw)
    alice.app.encrypt_init(alice.s, Mechanism(CKM.RSA_X_509), pub)
    sealed = alice.app.encrypt(alice.s, b"Hello world!")
    alice.app.decrypt_init(alice.s, Mechanism(CKM.RSA_X_509), priv)
    assert alice.app.decrypt(alice.s, sealed) == bytes(128 - 12) + b"Hello world!"


def test_the_mechanism_list_is_the_modes(fips, non_fips):
    def listed(node: HSM) -> dict[int, list[int]]:
        return {row[0]: row for row in Application(node).mechanism_list()}

    strict, legacy = listed(fips), listed(non_fips)
    assert CKM.RSA_X_509 not in strict
    assert legacy[CKM.RSA_X_509] == [CKM.RSA_X_509, 1024, 16384, int(CKF.ENCRYPT | CKF.DECRYPT | CKF.SIGN | CKF.VERIFY)]
    assert strict[CKM.RSA_PKCS_KEY_PAIR_GEN][1:3] == [2048, 4096]
    assert legacy[CKM.RSA_PKCS_KEY_PAIR_GEN][1:3] == [1024, 4096]
    for mech in (CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1):
        assert strict[mech][3] & CKF.VERIFY and not strict[mech][3] & CKF.SIGN
        assert legacy[mech][3] & CKF.SIGN
    assert set(legacy) - set(strict) == {CKM.RSA_X_509}


def test_an_imported_1024_bit_private_key_signs_nothing_in_a_fips_cluster(fips):
    from cryptography.hazmat.primitives import keywrap, serialization

    alice = login(fips, CKU.USER, f"alice:{ALICE_PW}")
    kek_value = bytes(range(32))
    kek = alice.app.create_object(alice.s, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: kek_value,
                                            CKA.UNWRAP: True, CKA.TOKEN: False})
    private = rsa_keys.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused on purpose
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    imported = alice.app.unwrap_key(alice.s, Mechanism(CKM.AES_KEY_WRAP_PAD), kek,
                                    keywrap.aes_key_wrap_with_padding(kek_value, pkcs8),
                                    {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.RSA, CKA.SIGN: True,
                                     CKA.DECRYPT: True, CKA.TOKEN: False})
    for mech, start in ((CKM.SHA256_RSA_PKCS, alice.app.sign_init), (CKM.RSA_PKCS_OAEP, alice.app.decrypt_init)):
        with pytest.raises(KeySizeRange) as refused:
            start(alice.s, Mechanism(mech), imported)
        assert refused.value.ckr == CKR.KEY_SIZE_RANGE
