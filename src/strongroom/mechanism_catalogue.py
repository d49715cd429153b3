"""The mechanisms Strongroom implements, as ``C_GetMechanismInfo`` reports them (PKCS#11 3.0).

Key sizes are in the unit the PKCS#11 3.0 section of each mechanism defines:

- bits: RSA modulus ("RSA"), EC and Edwards field size ("Elliptic Curve"), generic secret key
  generation ("Generic secret key"), SP 800-108 base key ("SP800-108 Key Derivation");
- bytes: AES, AES key wrap and AES-CMAC ("AES", "AES Key Wrap", "AES CMAC"), HMAC keys ("General-length
  SHA-* HMAC" and the SHA-* HMAC sections);
- 0 for digests, which take no key.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MechanismInvalid
from .vocab import CKF, CKK, CKM


@dataclass(frozen=True)
class MechanismInfo:
    """``CK_MECHANISM_INFO`` plus what the node needs to police calls.

    Attributes:
        mechanism: the mechanism type.
        key_types: key types the mechanism accepts (empty for digests).
        min_key_size: smallest supported key, in the unit of this mechanism (see the module docstring).
        max_key_size: largest supported key, same unit.
        flags: ``CKF`` bits: which functions the mechanism serves, and EC capabilities.
        single_part: PKCS#11 allows only single-part use (``C_Encrypt``/``C_Sign`` …, no ``*Update``).
    """

    mechanism: CKM
    key_types: frozenset[CKK]
    min_key_size: int
    max_key_size: int
    flags: CKF
    single_part: bool = False


_CIPHER = CKF.ENCRYPT | CKF.DECRYPT
_SIGN = CKF.SIGN | CKF.VERIFY
_WRAP = CKF.WRAP | CKF.UNWRAP
_EC = CKF.EC_F_P | CKF.EC_OID | CKF.EC_CURVENAME | CKF.EC_UNCOMPRESS

_AES = frozenset({CKK.AES})
_RSA = frozenset({CKK.RSA})
_EC_KEYS = frozenset({CKK.EC})
_EDWARDS = frozenset({CKK.EC_EDWARDS})
_NO_KEY: frozenset[CKK] = frozenset()

# Key-size ranges, each in its mechanism's unit.
AES_BYTES = (16, 32)
RSA_BITS = (1024, 16384)
RSA_GENERATE_BITS = (2048, 4096)
EC_BITS = (224, 521)
EDWARDS_BITS = (255, 255)
GENERIC_SECRET_BYTES = (1, 800)
HMAC_BYTES = GENERIC_SECRET_BYTES

_HMAC_KEYS = {
    CKM.SHA_1_HMAC: CKK.SHA_1_HMAC,
    CKM.SHA224_HMAC: CKK.SHA224_HMAC,
    CKM.SHA256_HMAC: CKK.SHA256_HMAC,
    CKM.SHA384_HMAC: CKK.SHA384_HMAC,
    CKM.SHA512_HMAC: CKK.SHA512_HMAC,
}
_HMAC_GENERAL = {
    CKM.SHA_1_HMAC_GENERAL: CKM.SHA_1_HMAC,
    CKM.SHA224_HMAC_GENERAL: CKM.SHA224_HMAC,
    CKM.SHA256_HMAC_GENERAL: CKM.SHA256_HMAC,
    CKM.SHA384_HMAC_GENERAL: CKM.SHA384_HMAC,
    CKM.SHA512_HMAC_GENERAL: CKM.SHA512_HMAC,
}


def _table() -> dict[CKM, MechanismInfo]:
    rows: list[MechanismInfo] = []

    def add(
        mech: CKM, keys: frozenset[CKK], sizes: tuple[int, int], flags: CKF, single: bool = False
    ) -> None:
        rows.append(MechanismInfo(mech, keys, sizes[0], sizes[1], flags, single))

    add(CKM.AES_KEY_GEN, _AES, AES_BYTES, CKF.GENERATE)
    for mech in (CKM.AES_ECB, CKM.AES_CBC, CKM.AES_CTR):
        add(mech, _AES, AES_BYTES, _CIPHER)
    for mech in (CKM.AES_CBC_PAD, CKM.AES_GCM):
        add(mech, _AES, AES_BYTES, _CIPHER | _WRAP)
    for mech in (CKM.AES_KEY_WRAP, CKM.AES_KEY_WRAP_PAD, CKM.AES_KEY_WRAP_KWP):
        add(mech, _AES, AES_BYTES, _CIPHER | _WRAP, single=True)
    for mech in (CKM.AES_CMAC, CKM.AES_CMAC_GENERAL):
        add(mech, _AES, AES_BYTES, _SIGN)

    add(CKM.RSA_PKCS_KEY_PAIR_GEN, _RSA, RSA_GENERATE_BITS, CKF.GENERATE_KEY_PAIR)
    add(CKM.RSA_PKCS, _RSA, RSA_BITS, _CIPHER | _SIGN | _WRAP, single=True)
    add(CKM.RSA_PKCS_OAEP, _RSA, RSA_BITS, _CIPHER | _WRAP, single=True)
    add(CKM.RSA_PKCS_PSS, _RSA, RSA_BITS, _SIGN, single=True)
    add(CKM.RSA_AES_KEY_WRAP, _RSA, RSA_BITS, _WRAP, single=True)
    for mech in (CKM.SHA1_RSA_PKCS, CKM.SHA224_RSA_PKCS, CKM.SHA256_RSA_PKCS, CKM.SHA384_RSA_PKCS,
                 CKM.SHA512_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.SHA224_RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS,
                 CKM.SHA384_RSA_PKCS_PSS, CKM.SHA512_RSA_PKCS_PSS):
        add(mech, _RSA, RSA_BITS, _SIGN)

    add(CKM.EC_KEY_PAIR_GEN, _EC_KEYS, EC_BITS, CKF.GENERATE_KEY_PAIR | _EC)
    add(CKM.ECDSA, _EC_KEYS, EC_BITS, _SIGN | _EC, single=True)
    for mech in (CKM.ECDSA_SHA1, CKM.ECDSA_SHA224, CKM.ECDSA_SHA256, CKM.ECDSA_SHA384, CKM.ECDSA_SHA512):
        add(mech, _EC_KEYS, EC_BITS, _SIGN | _EC)
    add(CKM.ECDH1_DERIVE, _EC_KEYS, EC_BITS, CKF.DERIVE | _EC)
    add(CKM.EC_EDWARDS_KEY_PAIR_GEN, _EDWARDS, EDWARDS_BITS,
        CKF.GENERATE_KEY_PAIR | CKF.EC_F_P | CKF.EC_OID | CKF.EC_CURVENAME)
    add(CKM.EDDSA, _EDWARDS, EDWARDS_BITS, _SIGN | CKF.EC_F_P | CKF.EC_OID | CKF.EC_CURVENAME, single=True)

    bits = (GENERIC_SECRET_BYTES[0] * 8, GENERIC_SECRET_BYTES[1] * 8)
    add(CKM.GENERIC_SECRET_KEY_GEN, frozenset({CKK.GENERIC_SECRET}), bits, CKF.GENERATE)
    for mech, key_type in _HMAC_KEYS.items():
        add(mech, frozenset({CKK.GENERIC_SECRET, key_type}), HMAC_BYTES, _SIGN)
    for mech, plain in _HMAC_GENERAL.items():
        add(mech, frozenset({CKK.GENERIC_SECRET, _HMAC_KEYS[plain]}), HMAC_BYTES, _SIGN)
    for mech in (CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512):
        add(mech, _NO_KEY, (0, 0), CKF.DIGEST)

    add(CKM.SP800_108_COUNTER_KDF, frozenset({CKK.GENERIC_SECRET, CKK.AES, *_HMAC_KEYS.values()}), bits,
        CKF.DERIVE)
    return {row.mechanism: row for row in rows}


MECHANISMS: dict[CKM, MechanismInfo] = _table()
"""Every mechanism Strongroom implements, keyed by type."""


def info(mechanism: int) -> MechanismInfo:
    """``C_GetMechanismInfo`` for one mechanism.

    Args:
        mechanism: a ``CKM`` value.

    Returns:
        The :class:`MechanismInfo` of a supported mechanism.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) Strongroom does not implement it.
    """
    try:
        return MECHANISMS[CKM(mechanism)]
    except (ValueError, KeyError) as exc:
        raise MechanismInvalid(f"mechanism 0x{mechanism:x} is not supported") from exc
