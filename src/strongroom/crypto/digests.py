"""Message digests (PKCS#11 3.0 SHA-1 and SHA-2 digest mechanisms; FIPS 180-4) and the one table of hashes.

Every mechanism, MGF and KDF that names a hash is listed here once; the other crypto modules ask this
module for the ``cryptography`` hash object instead of keeping tables of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes

from ..errors import MechanismInvalid, MechanismParamInvalid
from ..mechanism_params import Mechanism
from ..mechanism_rules import check as check_parameter
from ..vocab import CKD, CKG, CKM

# The supported hash classes; each carries its ``digest_size`` (bytes) as a class attribute.
_HashClass: TypeAlias = type[hashes.SHA1 | hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512]


@dataclass(frozen=True)
class _Hash:
    algorithm: _HashClass
    digest: CKM
    mgf: CKG
    kdf: CKD
    # DER DigestInfo up to the digest octets, with NULL parameters (RFC 8017 §9.2 note 1).
    digest_info_prefix: bytes
    # Mechanisms built on this hash other than the plain digest.
    users: tuple[CKM, ...]


_HASHES: tuple[_Hash, ...] = (
    _Hash(
        hashes.SHA1, CKM.SHA_1, CKG.MGF1_SHA1, CKD.SHA1_KDF,
        bytes.fromhex("3021300906052b0e03021a05000414"),
        (CKM.SHA_1_HMAC, CKM.SHA_1_HMAC_GENERAL, CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1),
    ),
    _Hash(
        hashes.SHA224, CKM.SHA224, CKG.MGF1_SHA224, CKD.SHA224_KDF,
        bytes.fromhex("302d300d06096086480165030402040500041c"),
        (CKM.SHA224_HMAC, CKM.SHA224_HMAC_GENERAL, CKM.SHA224_RSA_PKCS, CKM.SHA224_RSA_PKCS_PSS,
         CKM.ECDSA_SHA224),
    ),
    _Hash(
        hashes.SHA256, CKM.SHA256, CKG.MGF1_SHA256, CKD.SHA256_KDF,
        bytes.fromhex("3031300d060960864801650304020105000420"),
        (CKM.SHA256_HMAC, CKM.SHA256_HMAC_GENERAL, CKM.SHA256_RSA_PKCS, CKM.SHA256_RSA_PKCS_PSS,
         CKM.ECDSA_SHA256),
    ),
    _Hash(
        hashes.SHA384, CKM.SHA384, CKG.MGF1_SHA384, CKD.SHA384_KDF,
        bytes.fromhex("3041300d060960864801650304020205000430"),
        (CKM.SHA384_HMAC, CKM.SHA384_HMAC_GENERAL, CKM.SHA384_RSA_PKCS, CKM.SHA384_RSA_PKCS_PSS,
         CKM.ECDSA_SHA384),
    ),
    _Hash(
        hashes.SHA512, CKM.SHA512, CKG.MGF1_SHA512, CKD.SHA512_KDF,
        bytes.fromhex("3051300d060960864801650304020305000440"),
        (CKM.SHA512_HMAC, CKM.SHA512_HMAC_GENERAL, CKM.SHA512_RSA_PKCS, CKM.SHA512_RSA_PKCS_PSS,
         CKM.ECDSA_SHA512),
    ),
)

# Keyed by the enum members, looked up by plain ints too (an IntEnum member hashes and compares as its value).
_BY_DIGEST: dict[int, _Hash] = {h.digest: h for h in _HASHES}
_BY_MECHANISM: dict[int, _Hash] = {m: h for h in _HASHES for m in (h.digest, *h.users)}
_BY_MGF: dict[int, _Hash] = {h.mgf: h for h in _HASHES}
_BY_KDF: dict[int, _Hash] = {h.kdf: h for h in _HASHES}
_BY_SIZE: dict[int, _Hash] = {h.algorithm.digest_size: h for h in _HASHES}


def hash_for(mechanism: int) -> hashes.HashAlgorithm:
    """The hash a mechanism is built on.

    Args:
        mechanism: a digest (``CKM.SHA256``) or a mechanism named after its hash (``CKM.SHA256_HMAC``,
            ``CKM.SHA256_RSA_PKCS``, ``CKM.ECDSA_SHA256``, …).

    Returns:
        A fresh ``cryptography`` hash object.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) the mechanism names no supported hash.
    """
    entry = _BY_MECHANISM.get(mechanism)
    if entry is None:
        raise MechanismInvalid(f"mechanism 0x{mechanism:x} names no supported hash")
    return entry.algorithm()


def param_hash(mechanism: int) -> hashes.HashAlgorithm:
    """The hash a mechanism parameter names (``hashAlg`` of OAEP and PSS parameters, the SP 800-108 PRF).

    Args:
        mechanism: one of ``CKM.SHA_1``, ``CKM.SHA224``, ``CKM.SHA256``, ``CKM.SHA384``, ``CKM.SHA512``.

    Raises:
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) any other value.
    """
    entry = _BY_DIGEST.get(mechanism)
    if entry is None:
        raise MechanismParamInvalid(f"0x{mechanism:x} is not a supported hash")
    return entry.algorithm()


def mgf_hash(mgf: int) -> hashes.HashAlgorithm:
    """The hash of an MGF1 mask generation function (``CKG.MGF1_*``; RFC 8017 §B.2.1).

    Raises:
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) an unknown MGF.
    """
    entry = _BY_MGF.get(mgf)
    if entry is None:
        raise MechanismParamInvalid(f"MGF 0x{mgf:x} is not supported")
    return entry.algorithm()


def kdf_hash(kdf: int) -> hashes.HashAlgorithm:
    """The hash of an ANSI X9.63 key derivation function (``CKD.SHA*_KDF``; SEC 1 §3.6.1).

    Raises:
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) ``CKD.NULL`` or an unsupported KDF.
    """
    entry = _BY_KDF.get(kdf)
    if entry is None:
        raise MechanismParamInvalid(f"KDF 0x{kdf:x} is not supported")
    return entry.algorithm()


def hash_of_size(size: int) -> hashes.HashAlgorithm | None:
    """The supported hash whose output is ``size`` bytes (20, 28, 32, 48 or 64), or ``None``.

    Used where PKCS#11 hands over a bare hash value (``CKM_ECDSA``) and ``cryptography`` needs to be told
    which hash produced it.
    """
    entry = _BY_SIZE.get(size)
    return entry.algorithm() if entry is not None else None


def split_digest_info(data: bytes) -> tuple[hashes.HashAlgorithm, bytes] | None:
    """Recognise a DER DigestInfo (RFC 8017 §9.2) of a supported hash.

    Args:
        data: candidate DigestInfo bytes.

    Returns:
        ``(hash, digest)`` when ``data`` is exactly the DER DigestInfo, with NULL parameters, of one of the
        supported hashes; ``None`` otherwise.
    """
    for entry in _HASHES:
        prefix = entry.digest_info_prefix
        if len(data) == len(prefix) + entry.algorithm.digest_size and data.startswith(prefix):
            return entry.algorithm(), data[len(prefix):]
    return None


class DigestOperation:
    """One digest operation (``C_DigestInit`` … ``C_DigestFinal``), hashing incrementally.

    Attributes:
        digest_len: the digest length in bytes.
    """

    def __init__(self, algorithm: hashes.HashAlgorithm) -> None:
        self._hash = hashes.Hash(algorithm)
        self.digest_len: int = algorithm.digest_size

    def update(self, data: bytes) -> None:
        """Absorb ``data`` (``C_DigestUpdate``, also ``C_DigestKey`` with a secret key's value)."""
        self._hash.update(data)

    def final(self) -> bytes:
        """Return the digest, ``digest_len`` bytes; the operation is finished afterwards."""
        return self._hash.finalize()


def digest_init(mech: Mechanism) -> DigestOperation:
    """Start a digest (``C_DigestInit``).

    Args:
        mech: ``CKM.SHA_1``, ``CKM.SHA224``, ``CKM.SHA256``, ``CKM.SHA384`` or ``CKM.SHA512``; no parameter.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) not a supported digest mechanism.
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) a parameter was given.
    """
    entry = _BY_DIGEST.get(mech.mechanism)
    if entry is None:
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} is not a digest")
    check_parameter(mech)  # digests take none
    return DigestOperation(entry.algorithm())
