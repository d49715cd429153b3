"""The mechanisms Strongroom implements, as ``C_GetMechanismInfo`` reports them (PKCS#11 3.0).

Key sizes are in the unit the PKCS#11 3.0 section of each mechanism defines:

- bits: RSA modulus ("RSA"), EC and Edwards field size ("Elliptic Curve"), generic secret key
  generation ("Generic secret key"), SP 800-108 base key ("SP800-108 Key Derivation");
- bytes: AES, AES key wrap and AES-CMAC ("AES", "AES Key Wrap", "AES CMAC"), HMAC keys ("General-length
  SHA-* HMAC" and the SHA-* HMAC sections);
- 0 for digests, which take no key.

A cluster runs in one of two modes, fixed when it is created (the service's ``CreateCluster`` ``Mode``):
``FIPS`` (the default) offers only what FIPS 140-3 approves; ``NON_FIPS`` adds the legacy sizes and
mechanisms that applications and their tests still use. :func:`catalogue` gives each mode's table and
:func:`check_mode` the rules a table cannot state (docs/pkcs11.md, "FIPS and non-FIPS clusters", gives the
source of each rule):

- RSA keys are generated with at least 2048 bits in ``FIPS`` mode, 1024 in ``NON_FIPS`` (NIST SP 800-131A
  Rev. 2 §3, Table 2: below 2048 bits "disallowed" for signature generation; FIPS 186-5 §5.1).
- An RSA key below 2048 bits signs, encrypts, decrypts, wraps or unwraps nothing in ``FIPS`` mode; it still
  verifies (SP 800-131A Rev. 2 §3 "legacy use" of signature verification; §6, Table 5, key transport).
- Signature generation with SHA-1 (``CKM_SHA1_RSA_PKCS``, ``CKM_SHA1_RSA_PKCS_PSS``, ``CKM_ECDSA_SHA1``) is
  refused in ``FIPS`` mode; verification stays (SP 800-131A Rev. 2 §9, Table 8; SP 800-140C Rev. 2 lists
  SHA-1 only for "legacy" verification). HMAC with SHA-1 stays approved (§10, Table 9).
- ``CKM_RSA_X_509`` (raw RSA, no padding) is no approved scheme (SP 800-140C lists PKCS#1 v1.5, PSS and
  OAEP under FIPS 186-5 and SP 800-56B only): ``NON_FIPS`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import KeySizeRange, MechanismInvalid
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
RSA_LEGACY_GENERATE_BITS = (1024, 4096)
RSA_APPROVED_BITS = 2048  # the smallest modulus FIPS mode uses for anything but verification
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
HMAC_KEY_GENERATION = {
    CKM.SHA_1_KEY_GEN: CKK.SHA_1_HMAC,
    CKM.SHA224_KEY_GEN: CKK.SHA224_HMAC,
    CKM.SHA256_KEY_GEN: CKK.SHA256_HMAC,
    CKM.SHA384_KEY_GEN: CKK.SHA384_HMAC,
    CKM.SHA512_KEY_GEN: CKK.SHA512_HMAC,
}
"""The SHA-n key generation mechanisms (PKCS#11 2.40/3.0) and the legacy HMAC key type each makes."""
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

    add(CKM.RSA_PKCS_KEY_PAIR_GEN, _RSA, RSA_LEGACY_GENERATE_BITS, CKF.GENERATE_KEY_PAIR)
    add(CKM.RSA_PKCS, _RSA, RSA_BITS, _CIPHER | _SIGN | _WRAP, single=True)
    add(CKM.RSA_X_509, _RSA, RSA_BITS, _CIPHER | _SIGN, single=True)
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
    for mech, key_type in HMAC_KEY_GENERATION.items():
        add(mech, frozenset({key_type}), HMAC_BYTES, CKF.GENERATE)
    for mech, plain in _HMAC_GENERAL.items():
        add(mech, frozenset({CKK.GENERIC_SECRET, _HMAC_KEYS[plain]}), HMAC_BYTES, _SIGN)
    for mech in (CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512):
        add(mech, _NO_KEY, (0, 0), CKF.DIGEST)

    add(CKM.SP800_108_COUNTER_KDF, frozenset({CKK.GENERIC_SECRET, CKK.AES, *_HMAC_KEYS.values()}), bits,
        CKF.DERIVE)
    return {row.mechanism: row for row in rows}


FIPS = "FIPS"
NON_FIPS = "NON_FIPS"
MODES = (FIPS, NON_FIPS)
"""The cluster modes, as the service's ``CreateCluster`` ``Mode`` names them."""

SHA1_SIGNATURES = frozenset({CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1})
LEGACY_ONLY = frozenset({CKM.RSA_X_509})


def _fips(rows: dict[CKM, MechanismInfo]) -> dict[CKM, MechanismInfo]:
    """The ``FIPS`` table: no legacy-only mechanism, SHA-1 signatures verify only, RSA generated from 2048 bits."""
    table = {}
    for mech, row in rows.items():
        if mech in LEGACY_ONLY:
            continue
        if mech in SHA1_SIGNATURES:
            row = replace(row, flags=row.flags & ~CKF.SIGN)
        if mech == CKM.RSA_PKCS_KEY_PAIR_GEN:
            row = replace(row, min_key_size=RSA_GENERATE_BITS[0])
        table[mech] = row
    return table


IMPLEMENTED: dict[CKM, MechanismInfo] = _table()
"""Every mechanism Strongroom implements, keyed by type (the ``NON_FIPS`` table)."""

MECHANISMS: dict[CKM, MechanismInfo] = _fips(IMPLEMENTED)
"""The mechanisms of a ``FIPS`` cluster (the default mode), keyed by type."""

_CATALOGUES = {FIPS: MECHANISMS, NON_FIPS: IMPLEMENTED}


def catalogue(mode: str) -> dict[CKM, MechanismInfo]:
    """The mechanisms a cluster of ``mode`` (``FIPS`` or ``NON_FIPS``) offers, keyed by type.

    Raises:
        ValueError: an unknown mode.
    """
    try:
        return _CATALOGUES[mode]
    except KeyError:
        raise ValueError(f"the mode is FIPS or NON_FIPS, not {mode!r}") from None


def info(mechanism: int, mode: str = NON_FIPS) -> MechanismInfo:
    """``C_GetMechanismInfo`` for one mechanism.

    Args:
        mechanism: a ``CKM`` value.
        mode: the cluster's mode; by default every mechanism implemented (what the ``crypto`` layer serves).

    Returns:
        The :class:`MechanismInfo` of a supported mechanism.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) Strongroom does not implement it, or not in ``mode``.
    """
    try:
        return catalogue(mode)[CKM(mechanism)]
    except (ValueError, KeyError) as exc:
        suffix = " in a FIPS cluster (NON_FIPS only)" if mode == FIPS and mechanism in IMPLEMENTED else ""
        raise MechanismInvalid(f"mechanism 0x{mechanism:x} is not supported{suffix}") from exc


def check_mode(mode: str, row: MechanismInfo, function: CKF, rsa_bits: int | None) -> None:
    """The mode's rule on key sizes (the table gives the mechanisms and the functions they serve).

    Args:
        mode: ``FIPS`` or ``NON_FIPS``.
        row: the mechanism's row in the mode's table.
        function: the ``CKF`` function bit asked for (``CKF.SIGN``, ``CKF.ENCRYPT`` …).
        rsa_bits: the RSA key's modulus size in bits (``None`` for other keys).

    Raises:
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an RSA key below 2048 bits used in a ``FIPS`` cluster for anything
            but verification (NIST SP 800-131A Rev. 2 §3 and §6).
    """
    if mode == FIPS and rsa_bits is not None and rsa_bits < RSA_APPROVED_BITS and function != CKF.VERIFY:
        raise KeySizeRange(f"{row.mechanism.name} with a {rsa_bits}-bit RSA key: a FIPS cluster uses RSA keys of "
                           f"at least {RSA_APPROVED_BITS} bits for anything but verification (NON_FIPS clusters "
                           "allow them)")
