"""The mechanism table agrees with PKCS#11's units and with what the operations actually accept."""

from __future__ import annotations

import pytest

from strongroom.crypto import (
    decrypt_init,
    derive,
    digest_init,
    encrypt_init,
    generate_key_pair,
    generate_secret,
    sign_init,
    unwrap,
    verify_init,
    wrap,
)
from strongroom.errors import MechanismInvalid, PKCS11Error
from strongroom.mechanism_catalogue import FIPS, IMPLEMENTED, MECHANISMS, NON_FIPS, catalogue, info
from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKF, CKK, CKM

REQUIRED = {
    CKM.AES_KEY_GEN, CKM.AES_GCM, CKM.AES_CBC, CKM.AES_CBC_PAD, CKM.AES_CTR, CKM.AES_ECB, CKM.AES_CMAC,
    CKM.AES_CMAC_GENERAL, CKM.AES_KEY_WRAP, CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP,
    CKM.RSA_PKCS_KEY_PAIR_GEN, CKM.RSA_PKCS, CKM.RSA_PKCS_PSS, CKM.SHA1_RSA_PKCS, CKM.SHA224_RSA_PKCS,
    CKM.SHA256_RSA_PKCS, CKM.SHA384_RSA_PKCS, CKM.SHA512_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS,
    CKM.SHA224_RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS, CKM.SHA384_RSA_PKCS_PSS, CKM.SHA512_RSA_PKCS_PSS,
    CKM.RSA_PKCS_OAEP, CKM.RSA_AES_KEY_WRAP, CKM.EC_KEY_PAIR_GEN, CKM.ECDSA, CKM.ECDSA_SHA1,
    CKM.ECDSA_SHA224, CKM.ECDSA_SHA256, CKM.ECDSA_SHA384, CKM.ECDSA_SHA512, CKM.ECDH1_DERIVE,
    CKM.EC_EDWARDS_KEY_PAIR_GEN, CKM.EDDSA, CKM.GENERIC_SECRET_KEY_GEN, CKM.SHA_1_HMAC, CKM.SHA224_HMAC,
    CKM.SHA256_HMAC, CKM.SHA384_HMAC, CKM.SHA512_HMAC, CKM.SHA_1_HMAC_GENERAL, CKM.SHA224_HMAC_GENERAL,
    CKM.SHA256_HMAC_GENERAL, CKM.SHA384_HMAC_GENERAL, CKM.SHA512_HMAC_GENERAL, CKM.SHA_1, CKM.SHA224,
    CKM.SHA256, CKM.SHA384, CKM.SHA512, CKM.SP800_108_COUNTER_KDF, CKM.SHA_1_KEY_GEN, CKM.SHA224_KEY_GEN,
    CKM.SHA256_KEY_GEN, CKM.SHA384_KEY_GEN, CKM.SHA512_KEY_GEN,
}


def test_table_covers_exactly_the_implemented_mechanisms() -> None:
    assert set(MECHANISMS) == REQUIRED
    assert set(IMPLEMENTED) == REQUIRED | {CKM.RSA_X_509}
    assert catalogue(FIPS) is MECHANISMS and catalogue(NON_FIPS) is IMPLEMENTED
    for mechanism, row in IMPLEMENTED.items():
        assert row.mechanism == mechanism
        assert row.min_key_size <= row.max_key_size


@pytest.mark.parametrize("mechanism", [0x7FFF_FFFF, CKM.AES_CCM, CKM.SP800_108_FEEDBACK_KDF])
def test_unknown_mechanism_is_invalid(mechanism: int) -> None:
    for mode in (FIPS, NON_FIPS):
        with pytest.raises(MechanismInvalid):
            info(mechanism, mode)


def test_fips_table_differs_from_the_legacy_one_only_where_the_rules_say() -> None:
    """NIST SP 800-131A Rev. 2: no raw RSA, SHA-1 signatures verify only, RSA generated from 2048 bits."""
    with pytest.raises(MechanismInvalid, match="not supported in a FIPS cluster"):
        info(CKM.RSA_X_509, FIPS)
    assert info(CKM.RSA_X_509, NON_FIPS).flags == CKF.ENCRYPT | CKF.DECRYPT | CKF.SIGN | CKF.VERIFY
    differing = {m for m in MECHANISMS if MECHANISMS[m] != IMPLEMENTED[m]}
    assert differing == {CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1, CKM.RSA_PKCS_KEY_PAIR_GEN}
    for mechanism in (CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1):
        assert MECHANISMS[mechanism].flags == IMPLEMENTED[mechanism].flags & ~CKF.SIGN
        assert MECHANISMS[mechanism].flags & CKF.VERIFY
    assert (MECHANISMS[CKM.RSA_PKCS_KEY_PAIR_GEN].min_key_size, IMPLEMENTED[CKM.RSA_PKCS_KEY_PAIR_GEN].min_key_size) \
        == (2048, 1024)
    with pytest.raises(ValueError, match="FIPS or NON_FIPS"):
        catalogue("fips")


@pytest.mark.parametrize(
    ("mechanism", "low", "high"),
    [
        (CKM.AES_GCM, 16, 32),  # bytes
        (CKM.AES_KEY_GEN, 16, 32),  # bytes
        (CKM.RSA_PKCS_KEY_PAIR_GEN, 2048, 4096),  # bits
        (CKM.SHA256_RSA_PKCS_PSS, 1024, 16384),  # bits
        (CKM.ECDSA, 224, 521),  # bits of the field
        (CKM.EDDSA, 255, 255),  # bits of the field
        (CKM.GENERIC_SECRET_KEY_GEN, 8, 6400),  # bits
        (CKM.SHA256_HMAC, 1, 800),  # bytes
        (CKM.SHA256_KEY_GEN, 1, 800),  # bytes
        (CKM.SHA256, 0, 0),
    ],
)
def test_key_sizes_use_each_mechanisms_unit(mechanism: CKM, low: int, high: int) -> None:
    row = info(mechanism, FIPS)
    assert (row.min_key_size, row.max_key_size) == (low, high)


def test_single_part_mechanisms() -> None:
    single = {m for m, row in MECHANISMS.items() if row.single_part}
    assert single == {
        CKM.RSA_PKCS, CKM.RSA_PKCS_PSS, CKM.RSA_PKCS_OAEP, CKM.RSA_AES_KEY_WRAP, CKM.ECDSA, CKM.EDDSA,
        CKM.AES_KEY_WRAP, CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP,
    }


def test_key_types() -> None:
    assert info(CKM.SHA384_HMAC).key_types == {CKK.GENERIC_SECRET, CKK.SHA384_HMAC}
    assert info(CKM.EDDSA).key_types == {CKK.EC_EDWARDS}
    assert info(CKM.AES_CMAC_GENERAL).key_types == {CKK.AES}
    assert info(CKM.SHA256).key_types == frozenset()


def _accepts(call, mechanism: CKM) -> bool:
    """Whether the operation recognised the mechanism (any error but MechanismInvalid counts as yes)."""
    try:
        call(mechanism)
    except MechanismInvalid:
        return False
    except PKCS11Error:
        return True
    return True


_FUNCTIONS = {
    CKF.ENCRYPT: lambda m: encrypt_init(Mechanism(m), None),
    CKF.DECRYPT: lambda m: decrypt_init(Mechanism(m), None),
    CKF.SIGN: lambda m: sign_init(Mechanism(m), None),
    CKF.VERIFY: lambda m: verify_init(Mechanism(m), None),
    CKF.DIGEST: lambda m: digest_init(Mechanism(m, b"x")),
    CKF.WRAP: lambda m: wrap(Mechanism(m), None, b"k" * 16),
    CKF.UNWRAP: lambda m: unwrap(Mechanism(m), None, b"k" * 24),
    CKF.DERIVE: lambda m: derive(Mechanism(m), None, 16),
    CKF.GENERATE: lambda m: generate_secret(m, 0),
    CKF.GENERATE_KEY_PAIR: lambda m: generate_key_pair(m, modulus_bits=1, ec_params=b""),
}


@pytest.mark.parametrize("flag", list(_FUNCTIONS), ids=lambda f: f.name)
def test_flags_match_what_the_operations_accept(flag: CKF) -> None:
    call = _FUNCTIONS[flag]
    for mechanism, row in IMPLEMENTED.items():
        assert _accepts(call, mechanism) == bool(row.flags & flag), mechanism.name
