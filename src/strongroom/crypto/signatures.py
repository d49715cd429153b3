"""Signing, MACing and verification (``C_SignInit`` … ``C_VerifyFinal``).

RSA PKCS#1 v1.5 and PSS (RFC 8017 §8), ECDSA with raw ``r‖s`` signatures (FIPS 186-5; PKCS#11 3.0
"EC Signatures"), pure Ed25519 (RFC 8032 §5.1), HMAC (RFC 2104, FIPS 198-1) and AES-CMAC (NIST SP 800-38B).
Mechanisms named after a hash hash incrementally; the raw, single-part ones (``RSA_PKCS``,
``RSA_PKCS_PSS``, ``ECDSA``, ``EDDSA``) collect their input and work in ``final``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac, constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import algorithms

from ..errors import (
    DataInvalid,
    DataLenRange,
    MechanismInvalid,
    MechanismParamInvalid,
    SignatureInvalid,
    SignatureLenRange,
)
from ..mechanism_params import Mechanism, PssParams
from ..mechanism_rules import check as check_parameter
from ..vocab import CKM
from . import keycheck, raw_rsa
from .digests import hash_for, hash_of_size, mgf_hash, param_hash, split_digest_info

ED25519_SIGNATURE_BYTES = 64
AES_CMAC_BYTES = 16
PKCS1_V15_OVERHEAD = 11  # RFC 8017 §9.2 step 3: tLen <= emLen - 11
_MISMATCH = "the signature does not verify"


class _Accumulator(Protocol):
    def update(self, data: bytes) -> None: ...

    def finalize(self) -> bytes: ...


class _Buffer:
    """Collects the input of single-part mechanisms for final()."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def finalize(self) -> bytes:
        return b"".join(self._parts)


class SignOperation:
    """One signature or MAC in progress.

    Attributes:
        signature_len: the length in bytes :meth:`final` returns.
    """

    def __init__(self, accumulator: _Accumulator, signature_len: int, sign: Callable[[bytes], bytes]) -> None:
        self._accumulator = accumulator
        self._sign = sign
        self.signature_len: int = signature_len

    def update(self, data: bytes) -> None:
        """Absorb ``data`` (``C_SignUpdate``; single-part mechanisms collect it)."""
        self._accumulator.update(data)

    def final(self) -> bytes:
        """Return the signature or MAC (``C_SignFinal``, or the end of ``C_Sign``); call once.

        Raises:
            DataLenRange: (``CKR_DATA_LEN_RANGE``) raw input of the wrong length for the mechanism and key.
            DataInvalid: (``CKR_DATA_INVALID``) ``RSA_PKCS`` input that is no supported DigestInfo.
        """
        return self._sign(self._accumulator.finalize())


class VerifyOperation:
    """One verification in progress.

    Attributes:
        signature_len: the length in bytes of the signatures this key and mechanism produce.
    """

    def __init__(
        self,
        accumulator: _Accumulator,
        signature_len: int,
        verify: Callable[[bytes, bytes], None],
        length_ok: Callable[[int], bool] | None = None,
    ) -> None:
        self._accumulator = accumulator
        self._verify = verify
        self._length_ok = length_ok or (lambda size: size == signature_len)
        self.signature_len: int = signature_len

    def update(self, data: bytes) -> None:
        """Absorb ``data`` (``C_VerifyUpdate``; single-part mechanisms collect it)."""
        self._accumulator.update(data)

    def final(self, signature: bytes) -> None:
        """Check ``signature`` against everything absorbed (``C_VerifyFinal`` or the end of ``C_Verify``).

        Raises:
            SignatureLenRange: (``CKR_SIGNATURE_LEN_RANGE``) a signature of a length the scheme never has.
            SignatureInvalid: (``CKR_SIGNATURE_INVALID``) the signature does not verify.
            DataLenRange: (``CKR_DATA_LEN_RANGE``) raw input of the wrong length for the mechanism and key.
        """
        if not self._length_ok(len(signature)):
            raise SignatureLenRange(f"signature of {len(signature)} bytes has the wrong length")
        self._verify(self._accumulator.finalize(), signature)


def _rsa_bytes(key_size: int) -> int:
    return (key_size + 7) // 8


def _hash_or_buffer(algorithm: hashes.HashAlgorithm | None) -> _Accumulator:
    return _Buffer() if algorithm is None else hashes.Hash(algorithm)


# RSA PKCS#1 v1.5 (RFC 8017 §8.2). RSA_PKCS takes the DigestInfo itself; the hashed mechanisms build it.

def _pkcs1_hash(mech: Mechanism) -> hashes.HashAlgorithm | None:
    return None if mech.mechanism == CKM.RSA_PKCS else hash_for(mech.mechanism)


def _check_pkcs1_raw(value: bytes, size: int) -> None:
    if len(value) > size - PKCS1_V15_OVERHEAD:
        raise DataLenRange(f"at most {size - PKCS1_V15_OVERHEAD} bytes can be signed with this key")


def _rsa_pkcs1_sign(mech: Mechanism, key: object) -> SignOperation:
    algorithm = _pkcs1_hash(mech)
    private = keycheck.rsa_private(key, mech.mechanism)
    size = _rsa_bytes(private.key_size)
    scheme = rsa_padding.PKCS1v15()

    def sign(value: bytes) -> bytes:
        if algorithm is not None:
            return private.sign(value, scheme, Prehashed(algorithm))
        _check_pkcs1_raw(value, size)
        # cryptography signs PKCS#1 v1.5 only over a DigestInfo it builds itself, so raw input must be exactly
        # such a DigestInfo of a supported hash, which cryptography then re-creates byte for byte.
        parsed = split_digest_info(value)
        if parsed is None:
            raise DataInvalid("RSA_PKCS signing needs a DER DigestInfo of SHA-1 or SHA-2")
        digest_algorithm, digest = parsed
        return private.sign(digest, scheme, Prehashed(digest_algorithm))

    return SignOperation(_hash_or_buffer(algorithm), size, sign)


def _rsa_pkcs1_verify(mech: Mechanism, key: object) -> VerifyOperation:
    algorithm = _pkcs1_hash(mech)
    public = keycheck.rsa_public(key, mech.mechanism)
    size = _rsa_bytes(public.key_size)
    scheme = rsa_padding.PKCS1v15()

    def verify(value: bytes, signature: bytes) -> None:
        if algorithm is None:
            _check_pkcs1_raw(value, size)
        try:
            if algorithm is not None:
                public.verify(signature, value, scheme, Prehashed(algorithm))
                return
            recovered = public.recover_data_from_signature(signature, scheme, None)
        except InvalidSignature as exc:
            raise SignatureInvalid(_MISMATCH) from exc
        if not constant_time.bytes_eq(recovered, value):
            raise SignatureInvalid(_MISMATCH)

    return VerifyOperation(_hash_or_buffer(algorithm), size, verify)


# RSA PSS (RFC 8017 §8.1). RSA_PKCS_PSS takes the hash itself; the hashed mechanisms compute it.

@dataclass(frozen=True)
class _Pss:
    algorithm: hashes.HashAlgorithm
    raw: bool
    padding: rsa_padding.PSS

    def accumulator(self) -> _Accumulator:
        return _hash_or_buffer(None if self.raw else self.algorithm)

    def check(self, value: bytes) -> None:
        if len(value) != self.algorithm.digest_size:
            raise DataLenRange(f"RSA_PKCS_PSS input must be a {self.algorithm.digest_size}-byte hash")


def _pss(mech: Mechanism, key_size: int) -> _Pss:
    params = mech.parameter
    if not isinstance(params, PssParams):
        raise MechanismParamInvalid("RSA-PSS needs PssParams")
    algorithm = param_hash(params.hash_alg)
    raw = mech.mechanism == CKM.RSA_PKCS_PSS
    if not raw and hash_for(mech.mechanism).name != algorithm.name:
        raise MechanismParamInvalid("the PSS hash must be the mechanism's hash")
    em_len = (key_size - 1 + 7) // 8  # RFC 8017 §9.1.1: emLen = ceil((modBits - 1) / 8)
    if not 0 <= params.salt_len <= em_len - algorithm.digest_size - 2:
        raise MechanismParamInvalid("the PSS salt is too long for this key and hash")
    scheme = rsa_padding.PSS(mgf=rsa_padding.MGF1(mgf_hash(params.mgf)), salt_length=params.salt_len)
    return _Pss(algorithm, raw, scheme)


def _rsa_pss_sign(mech: Mechanism, key: object) -> SignOperation:
    private = keycheck.rsa_private(key, mech.mechanism)
    pss = _pss(mech, private.key_size)

    def sign(value: bytes) -> bytes:
        pss.check(value)
        return private.sign(value, pss.padding, Prehashed(pss.algorithm))

    return SignOperation(pss.accumulator(), _rsa_bytes(private.key_size), sign)


def _rsa_pss_verify(mech: Mechanism, key: object) -> VerifyOperation:
    public = keycheck.rsa_public(key, mech.mechanism)
    pss = _pss(mech, public.key_size)

    def verify(value: bytes, signature: bytes) -> None:
        pss.check(value)
        try:
            public.verify(signature, value, pss.padding, Prehashed(pss.algorithm))
        except InvalidSignature as exc:
            raise SignatureInvalid(_MISMATCH) from exc

    return VerifyOperation(pss.accumulator(), _rsa_bytes(public.key_size), verify)


# ECDSA with PKCS#11's raw r‖s encoding. ECDSA takes the hash itself; the hashed mechanisms compute it.

def _ecdsa_hash(mech: Mechanism) -> hashes.HashAlgorithm | None:
    return None if mech.mechanism == CKM.ECDSA else hash_for(mech.mechanism)


# The hash length whose bits do not exceed the group order's, by order bit length: raw input up to this long keeps
# its integer value when left-padded to it; longer input keeps its leftmost order-length bits (FIPS 186-5 §6.4.1).
_RAW_ECDSA_WIDTH: dict[int, hashes.HashAlgorithm] = {224: hashes.SHA224(), 256: hashes.SHA256(),
                                                      384: hashes.SHA384(), 521: hashes.SHA512()}


def _ecdsa_input(algorithm: hashes.HashAlgorithm | None, value: bytes,
                 curve: ec.EllipticCurve) -> tuple[bytes, ec.ECDSA]:
    """The value and scheme ``cryptography`` signs or verifies for ``CKM_ECDSA*``.

    ``CKM_ECDSA`` takes the hash itself, of any length (PKCS#11 3.0 §2.3.6; ANSI X9.62): shorter than the
    order, it is taken as an integer; longer, its leftmost bits are. ``cryptography`` wants a hash of a known
    length and truncates longer ones itself, so shorter input is left-padded with zero bytes (same integer) and
    longer input cut to the order's length in whole bytes.

    Raises:
        DataLenRange: ``CKR_DATA_LEN_RANGE`` for empty input, or (P-521) input longer than 64 bytes that is not a
            standard hash length.
    """
    if algorithm is not None:
        return value, ec.ECDSA(Prehashed(algorithm))
    if not value:
        raise DataLenRange("ECDSA input is empty")
    width = _RAW_ECDSA_WIDTH.get(curve.key_size)
    if width is not None and len(value) <= width.digest_size:
        return value.rjust(width.digest_size, b"\x00"), ec.ECDSA(Prehashed(width))
    if width is not None and curve.key_size % 8 == 0:
        return value[:width.digest_size], ec.ECDSA(Prehashed(width))
    chosen = hash_of_size(len(value))
    if chosen is None:
        raise DataLenRange("ECDSA input for this curve must be at most 64 bytes or a standard hash length")
    return value, ec.ECDSA(Prehashed(chosen))


def _order_bytes(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def _ecdsa_sign(mech: Mechanism, key: object) -> SignOperation:
    algorithm = _ecdsa_hash(mech)
    private = keycheck.ec_private(key)
    half = _order_bytes(private.curve)

    def sign(value: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(*_ecdsa_input(algorithm, value, private.curve)))
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")

    return SignOperation(_hash_or_buffer(algorithm), 2 * half, sign)


def _ecdsa_verify(mech: Mechanism, key: object) -> VerifyOperation:
    algorithm = _ecdsa_hash(mech)
    public = keycheck.ec_public(key)
    half = _order_bytes(public.curve)

    def verify(value: bytes, signature: bytes) -> None:
        middle = len(signature) // 2
        r = int.from_bytes(signature[:middle], "big")
        s = int.from_bytes(signature[middle:], "big")
        try:
            public.verify(encode_dss_signature(r, s), *_ecdsa_input(algorithm, value, public.curve))
        except InvalidSignature as exc:
            raise SignatureInvalid(_MISMATCH) from exc

    # PKCS#11 lets verifiers pass r and s padded to a common length shorter than nLen.
    def length_ok(size: int) -> bool:
        return 0 < size <= 2 * half and size % 2 == 0

    return VerifyOperation(_hash_or_buffer(algorithm), 2 * half, verify, length_ok)


# Pure Ed25519 (RFC 8032 §5.1); CK_EDDSA_PARAMS (Ed25519ph/ctx) is not supported.

def _eddsa_sign(mech: Mechanism, key: object) -> SignOperation:
    return SignOperation(_Buffer(), ED25519_SIGNATURE_BYTES, keycheck.ed25519_private(key).sign)


def _eddsa_verify(mech: Mechanism, key: object) -> VerifyOperation:
    public = keycheck.ed25519_public(key)

    def verify(value: bytes, signature: bytes) -> None:
        try:
            public.verify(signature, value)
        except InvalidSignature as exc:
            raise SignatureInvalid(_MISMATCH) from exc

    return VerifyOperation(_Buffer(), ED25519_SIGNATURE_BYTES, verify)


# HMAC and AES-CMAC; the *_GENERAL forms truncate to the requested length (CK_MAC_GENERAL_PARAMS).

_GENERAL = {
    CKM.SHA_1_HMAC_GENERAL,
    CKM.SHA224_HMAC_GENERAL,
    CKM.SHA256_HMAC_GENERAL,
    CKM.SHA384_HMAC_GENERAL,
    CKM.SHA512_HMAC_GENERAL,
    CKM.AES_CMAC_GENERAL,
}


def _mac(mech: Mechanism, key: object) -> tuple[_Accumulator, int]:
    if mech.mechanism in (CKM.AES_CMAC, CKM.AES_CMAC_GENERAL):
        accumulator: _Accumulator = cmac.CMAC(algorithms.AES(keycheck.aes_key(key)))
        full = AES_CMAC_BYTES
    else:
        algorithm = hash_for(mech.mechanism)
        accumulator = hmac.HMAC(keycheck.secret_key(key, mech.mechanism), algorithm)
        full = algorithm.digest_size
    if mech.mechanism not in _GENERAL:
        return accumulator, full
    length = mech.parameter
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= full:
        raise MechanismParamInvalid(f"the MAC length must be 1..{full} bytes")
    return accumulator, length


def _mac_sign(mech: Mechanism, key: object) -> SignOperation:
    accumulator, length = _mac(mech, key)
    return SignOperation(accumulator, length, lambda mac: mac[:length])


def _mac_verify(mech: Mechanism, key: object) -> VerifyOperation:
    accumulator, length = _mac(mech, key)

    def verify(mac: bytes, signature: bytes) -> None:
        if not constant_time.bytes_eq(mac[:length], signature):
            raise SignatureInvalid("the MAC does not verify")

    return VerifyOperation(accumulator, length, verify)


def _raw_sign(mech: Mechanism, key: object) -> SignOperation:
    private = keycheck.rsa_private(key, mech.mechanism)
    return SignOperation(_Buffer(), raw_rsa.block_len(private),
                         lambda value: raw_rsa.private_operation(private, value, ciphertext=False))


def _raw_verify(mech: Mechanism, key: object) -> VerifyOperation:
    public = keycheck.rsa_public(key, mech.mechanism)
    return VerifyOperation(_Buffer(), raw_rsa.block_len(public), lambda value, sig: raw_rsa.verify(public, value, sig))


_Builders = tuple[
    Callable[[Mechanism, object], SignOperation], Callable[[Mechanism, object], VerifyOperation]
]
_RSA_PKCS1: _Builders = (_rsa_pkcs1_sign, _rsa_pkcs1_verify)
_RSA_PSS: _Builders = (_rsa_pss_sign, _rsa_pss_verify)
_ECDSA: _Builders = (_ecdsa_sign, _ecdsa_verify)
_MAC: _Builders = (_mac_sign, _mac_verify)

_BUILDERS: dict[int, _Builders] = {
    **dict.fromkeys(
        (CKM.RSA_PKCS, CKM.SHA1_RSA_PKCS, CKM.SHA224_RSA_PKCS, CKM.SHA256_RSA_PKCS, CKM.SHA384_RSA_PKCS,
         CKM.SHA512_RSA_PKCS),
        _RSA_PKCS1,
    ),
    **dict.fromkeys(
        (CKM.RSA_PKCS_PSS, CKM.SHA1_RSA_PKCS_PSS, CKM.SHA224_RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS,
         CKM.SHA384_RSA_PKCS_PSS, CKM.SHA512_RSA_PKCS_PSS),
        _RSA_PSS,
    ),
    **dict.fromkeys(
        (CKM.ECDSA, CKM.ECDSA_SHA1, CKM.ECDSA_SHA224, CKM.ECDSA_SHA256, CKM.ECDSA_SHA384, CKM.ECDSA_SHA512),
        _ECDSA,
    ),
    CKM.EDDSA: (_eddsa_sign, _eddsa_verify),
    CKM.RSA_X_509: (_raw_sign, _raw_verify),
    **dict.fromkeys(
        (CKM.SHA_1_HMAC, CKM.SHA224_HMAC, CKM.SHA256_HMAC, CKM.SHA384_HMAC, CKM.SHA512_HMAC, CKM.AES_CMAC,
         *_GENERAL),
        _MAC,
    ),
}


def _builders(mech: Mechanism) -> _Builders:
    builders = _BUILDERS.get(mech.mechanism)
    if builders is None:
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} does not sign")
    check_parameter(mech)  # the table of parameter rules every door shares; key-bound checks follow
    return builders


def sign_init(mech: Mechanism, key: object) -> SignOperation:
    """Start a signature or MAC (``C_SignInit``).

    Args:
        mech: one of

            - ``RSA_PKCS`` (input: a DER DigestInfo of SHA-1/SHA-2), ``SHA1/224/256/384/512_RSA_PKCS``;
            - ``RSA_PKCS_PSS`` (input: a hash of ``PssParams.hash_alg``'s length), ``SHA*_RSA_PKCS_PSS``,
              all with :class:`PssParams` (hash must match a hashed mechanism's; salt length in bytes);
            - ``ECDSA`` (input: a 20/28/32/48/64-byte hash), ``ECDSA_SHA1/224/256/384/512``: signature
              ``r‖s``, each zero-padded to the curve order's byte length;
            - ``EDDSA`` (pure Ed25519, no parameter), 64-byte signatures;
            - ``SHA*_HMAC``, ``AES_CMAC``, and their ``*_GENERAL`` forms with an ``int`` MAC length in bytes.
        key: ``RSAPrivateKey``, ``EllipticCurvePrivateKey``, ``Ed25519PrivateKey`` or secret key ``bytes``.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) not a signing mechanism.
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) wrong or inconsistent parameter.
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) a key of the wrong kind.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) a key of an unsupported size.
    """
    return _builders(mech)[0](mech, key)


def verify_init(mech: Mechanism, key: object) -> VerifyOperation:
    """Start a verification (``C_VerifyInit``); mechanisms and errors as :func:`sign_init`.

    Keys: ``RSAPublicKey``, ``EllipticCurvePublicKey``, ``Ed25519PublicKey`` or secret key ``bytes``.
    ``RSA_PKCS`` verification compares the recovered encoded message with the input, so any input up to
    ``k - 11`` bytes verifies, not only DigestInfos. ECDSA accepts ``r‖s`` of any even length up to twice
    the order's byte length, as PKCS#11 allows.
    """
    return _builders(mech)[1](mech, key)
