"""The parameter-consistency table walked row by row through the SDK against a real node process
(tests/mechanism_param_rows.py): each inconsistent parameter raises exactly ``MechanismParamInvalid``
(``CKR_MECHANISM_PARAM_INVALID``) with the node's message; each consistent one works, GCM checked by
``cryptography``. A consistent RSA-PSS parameter signs and verifies; an inconsistent one is refused by the
signing call."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom import errors
from strongroom.mechanism_params import GcmParams, Mechanism, PssParams
from strongroom.vocab import CKA, CKG, CKK, CKM, CKO, CKR

from ..mechanism_param_rows import GOOD, ROWS

DERIVED = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE_LEN: 32}
DATA = b"sixteen byte blk" * 2


@pytest.fixture(scope="module")
def node(non_fips_node):
    """A NON_FIPS cluster, where every PSS mechanism signs (a FIPS one refuses SHA-1 signatures first)."""
    return non_fips_node


@pytest.fixture(scope="module")
def aes_value() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def operations(alice, aes_value) -> dict[str, Callable[[Mechanism], Any]]:
    cipher = alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: aes_value},
                                 encrypt=True, decrypt=True, token=False)
    mac = alice.generate_key(CKM.AES_KEY_GEN, value_len=32, sign=True, verify=True, token=False)
    secret = alice.generate_key(CKM.GENERIC_SECRET_KEY_GEN, value_len=32, sign=True, verify=True, token=False)
    kdf = alice.generate_key(CKM.GENERIC_SECRET_KEY_GEN, value_len=32, derive=True, token=False)
    rsa_pub, rsa_priv = alice.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN,
                                                {CKA.MODULUS_BITS: 2048, CKA.VERIFY: True, CKA.ENCRYPT: True},
                                                {CKA.SIGN: True, CKA.DECRYPT: True}, token=False)
    wrap_pub, _ = alice.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 2048, CKA.WRAP: True},
                                          {CKA.UNWRAP: True}, token=False)
    target = alice.generate_key(CKM.AES_KEY_GEN, value_len=32, extractable=True, token=False)
    _, ec_priv = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")},
                                         {CKA.DERIVE: True}, token=False)

    def verify(mech: Mechanism) -> Any:
        signature = rsa_priv.sign(DATA, mech)
        return rsa_pub.verify(DATA, signature, mech)

    return {
        "cipher": lambda mech: cipher.encrypt(DATA, mech),
        "mac": lambda mech: mac.sign(DATA, mech),
        "hmac": lambda mech: secret.sign(DATA, mech),
        "rsa_verify": verify,
        "rsa_encrypt": lambda mech: rsa_pub.encrypt(DATA, mech),
        "rsa_wrap": lambda mech: wrap_pub.wrap(target, mech),
        "ec_derive": lambda mech: ec_priv.derive(mech, DERIVED, token=False),
        "kdf_derive": lambda mech: kdf.derive(mech, DERIVED, token=False),
        "generate": lambda mech: alice.generate_key(mech, value_len=32, token=False),
        "digest": lambda mech: alice.digest(DATA, mech),
    }


@pytest.mark.parametrize(("mech", "operation", "fragment"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_each_inconsistent_parameter_is_refused_through_the_sdk(operations, mech, operation, fragment):
    with pytest.raises(errors.StrongroomError) as info:
        operations[operation](mech)
    assert type(info.value) is errors.MechanismParamInvalid, f"{type(info.value).__name__}: {info.value}"
    assert info.value.ckr == CKR.MECHANISM_PARAM_INVALID
    assert fragment in str(info.value)


@pytest.mark.parametrize(("mech", "operation"), [row[1:] for row in GOOD], ids=[row[0] for row in GOOD])
def test_each_consistent_parameter_works_through_the_sdk(operations, aes_value, mech, operation):
    out = operations[operation](mech)
    if isinstance(mech.parameter, GcmParams):
        sealed = AESGCM(aes_value).encrypt(mech.parameter.iv, DATA, mech.parameter.aad)
        assert out == sealed[:len(sealed) - 16 + mech.parameter.tag_bits // 8]


def test_a_non_fips_cluster_takes_a_pss_salt_longer_than_the_hash(operations):
    # FIPS 186-5 §5.4 (g) binds FIPS clusters only; RFC 8017 §9.1.1 allows up to emLen - hLen - 2 bytes
    operations["rsa_verify"](Mechanism(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 64)))
    with pytest.raises(errors.MechanismParamInvalid, match="the PSS salt is too long for this key and hash"):
        operations["rsa_verify"](Mechanism(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 223)))
