"""Key derivation (``C_DeriveKey``): ECDH and the NIST SP 800-108 counter-mode KDF.

``ECDH1_DERIVE`` (PKCS#11 3.0 "Elliptic Curve Diffie-Hellman key derivation"; ANSI X9.63, NIST SP 800-56A
§5.7.1.2) with the raw shared secret or the ANSI X9.63 KDF. ``SP800_108_COUNTER_KDF`` (PKCS#11 3.0
"SP800-108 Key Derivation"; NIST SP 800-108r1 §4.1) with an HMAC or AES-CMAC PRF, built on
``cryptography``'s KBKDF.
"""

from __future__ import annotations

from functools import partial

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from ..errors import AttributeValueInvalid, KeySizeRange, MechanismInvalid, MechanismParamInvalid
from ..mechanism_params import CounterFormat, DkmLengthFormat, Ecdh1DeriveParams, Mechanism, Sp800108Params
from ..mechanism_rules import COUNTER_WIDTHS
from ..mechanism_rules import check as check_parameter
from ..vocab import CK_SP800_108, CK_SP800_108_DKM_LENGTH, CKD, CKM
from . import keycheck
from .digests import hash_for, kdf_hash
from .keys import public_key_from_point

_HMAC_PRFS = (CKM.SHA_1_HMAC, CKM.SHA224_HMAC, CKM.SHA256_HMAC, CKM.SHA384_HMAC, CKM.SHA512_HMAC)
_CMAC_BLOCK = 16


def derive(mech: Mechanism, base_key: object, value_len: int) -> bytes:
    """Derive a secret key value.

    Args:
        mech: ``ECDH1_DERIVE`` with :class:`Ecdh1DeriveParams`, or ``SP800_108_COUNTER_KDF`` with
            :class:`Sp800108Params`.
        base_key: an ``EllipticCurvePrivateKey`` (ECDH) or secret key ``bytes`` (SP 800-108: any generic
            secret for HMAC PRFs, an AES key for ``AES_CMAC``).
        value_len: bytes to derive (the new key's ``CKA_VALUE_LEN``), at least 1. For ``ECDH1_DERIVE``
            with ``CKD.NULL`` 0 means the whole shared secret.

    Returns:
        ``value_len`` bytes (or the whole shared secret, see above).

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) another mechanism.
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) bad parameters, including an invalid peer
            point and unsupported SP 800-108 encodings (little-endian or odd-width counters).
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) a base key of the wrong kind.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) a base key of unsupported size, or ``value_len`` out of range.
    """
    if mech.mechanism not in (CKM.ECDH1_DERIVE, CKM.SP800_108_COUNTER_KDF):
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} does not derive keys")
    check_parameter(mech)  # the table of parameter rules every door shares; key-bound checks follow
    if mech.mechanism == CKM.ECDH1_DERIVE:
        return _ecdh(mech, base_key, value_len)
    return _counter_kdf(mech, base_key, value_len)


def ecdh_kdf(kdf: int, shared_secret: bytes, shared_data: bytes, value_len: int) -> bytes:
    """Turn an ECDH shared secret Z into key material (the ``kdf`` field of ``CK_ECDH1_DERIVE_PARAMS``).

    Args:
        kdf: ``CKD.NULL``: Z itself, truncated to ``value_len`` by removing leading bytes as PKCS#11 3.0
            specifies (0 keeps all of Z); ``CKD.SHA1/224/256/384/512_KDF``: the ANSI X9.63 KDF (SEC 1 §3.6.1)
            over Z and ``shared_data``.
        shared_secret: Z, the x-coordinate of the shared point, field-size bytes.
        shared_data: the X9.63 SharedInfo; must be empty with ``CKD.NULL``.
        value_len: output length in bytes.

    Raises:
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) an unsupported KDF, or shared data with
            ``CKD.NULL``.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) ``value_len`` longer than Z with ``CKD.NULL``, or below 1
            with a KDF.
    """
    if kdf == CKD.NULL:
        if shared_data:
            raise MechanismParamInvalid("CKD_NULL takes no shared data")
        if value_len > len(shared_secret):
            raise KeySizeRange(f"the shared secret has only {len(shared_secret)} bytes")
        return shared_secret[len(shared_secret) - value_len :] if value_len else shared_secret
    algorithm = kdf_hash(kdf)
    if value_len < 1:
        raise KeySizeRange("the derived key needs a length")
    kdf_function = X963KDF(algorithm=algorithm, length=value_len, sharedinfo=shared_data or None)
    return kdf_function.derive(shared_secret)


def _ecdh(mech: Mechanism, base_key: object, value_len: int) -> bytes:
    params = mech.parameter
    if not isinstance(params, Ecdh1DeriveParams):
        raise MechanismParamInvalid("ECDH1_DERIVE needs Ecdh1DeriveParams")
    private = keycheck.ec_private(base_key)
    try:
        peer = public_key_from_point(private.curve, params.public_data)
    except AttributeValueInvalid as exc:
        raise MechanismParamInvalid("the peer's public data is not a point on the key's curve") from exc
    return ecdh_kdf(params.kdf, private.exchange(ec.ECDH(), peer), params.shared_data, value_len)


def _counter_kdf(mech: Mechanism, base_key: object, value_len: int) -> bytes:
    params = mech.parameter
    if not isinstance(params, Sp800108Params):
        raise MechanismParamInvalid("SP800_108_COUNTER_KDF needs Sp800108Params")
    if value_len < 1:
        raise KeySizeRange("the derived key needs a length")
    # the KBKDF class bound to its PRF; the rest of the arguments are the same for both
    new_kdf: partial[KBKDFCMAC] | partial[KBKDFHMAC]
    if params.prf_type == CKM.AES_CMAC:
        key = keycheck.aes_key(base_key)
        new_kdf, block = partial(KBKDFCMAC, algorithms.AES), _CMAC_BLOCK
    elif params.prf_type in _HMAC_PRFS:
        key = keycheck.secret_key(base_key, params.prf_type)
        algorithm = hash_for(params.prf_type)
        new_kdf, block = partial(KBKDFHMAC, algorithm), algorithm.digest_size
    else:
        raise MechanismParamInvalid("the PRF must be SHA-1/SHA-2 HMAC or AES-CMAC")

    # PKCS#11 lays the PRF input out as the data parameters in order. Everything but the counter is
    # cryptography's "fixed" input; the counter's position picks the location (and the break offset).
    fixed = b""
    counter: CounterFormat | None = None
    counter_at = 0
    dkm_seen = False
    for item in params.data_params:
        if item.kind == CK_SP800_108.ITERATION_VARIABLE:
            if counter is not None or not isinstance(item.value, CounterFormat):
                raise MechanismParamInvalid("exactly one iteration variable with a CounterFormat is required")
            if item.value.little_endian or item.value.width_bits not in COUNTER_WIDTHS:
                raise MechanismParamInvalid("the counter must be big-endian, 8, 16, 24 or 32 bits")
            counter, counter_at = item.value, len(fixed)
        elif item.kind == CK_SP800_108.DKM_LENGTH:
            if dkm_seen or not isinstance(item.value, DkmLengthFormat):
                raise MechanismParamInvalid("at most one DKM length with a DkmLengthFormat is allowed")
            dkm_seen = True
            fixed += _dkm_length(item.value, value_len, block)
        elif item.kind == CK_SP800_108.BYTE_ARRAY:
            if not isinstance(item.value, bytes) or not item.value:
                raise MechanismParamInvalid("byte arrays must be non-empty bytes")
            fixed += item.value
        else:
            raise MechanismParamInvalid(f"data parameter type 0x{item.kind:x} is not valid in counter mode")
    if counter is None:
        raise MechanismParamInvalid("exactly one iteration variable with a CounterFormat is required")

    if counter_at == 0:
        location, break_at = CounterLocation.BeforeFixed, None
    elif counter_at == len(fixed):
        location, break_at = CounterLocation.AfterFixed, None
    else:
        location, break_at = CounterLocation.MiddleFixed, counter_at
    rlen = counter.width_bits // 8  # bytes
    try:
        kdf = new_kdf(
            Mode.CounterMode, value_len, rlen, None, location, None, None, fixed, break_location=break_at
        )
        return kdf.derive(key)
    except ValueError as exc:
        # e.g. more output blocks than the counter width can number
        raise MechanismParamInvalid(str(exc)) from exc


def _dkm_length(fmt: DkmLengthFormat, value_len: int, block: int) -> bytes:
    if fmt.width_bits % 8 or not 8 <= fmt.width_bits <= 64:
        raise MechanismParamInvalid("the DKM length must be 8..64 bits in whole bytes")
    if fmt.method == CK_SP800_108_DKM_LENGTH.SUM_OF_KEYS:
        bits = value_len * 8
    elif fmt.method == CK_SP800_108_DKM_LENGTH.SUM_OF_SEGMENTS:
        bits = -(-value_len // block) * block * 8
    else:
        raise MechanismParamInvalid("unknown DKM length method")
    if bits >= 1 << fmt.width_bits:
        raise MechanismParamInvalid("the DKM length does not fit its width")
    return bits.to_bytes(fmt.width_bits // 8, "little" if fmt.little_endian else "big")
