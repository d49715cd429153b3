"""Key wrapping and unwrapping (``C_WrapKey`` / ``C_UnwrapKey``).

The wrapped material is a secret key's value or a private key's unencrypted PKCS#8 DER (PKCS#11 3.0
"Wrapping/unwrapping private keys"); telling the two apart and building the key object is the caller's
job. Every mechanism except ``RSA_AES_KEY_WRAP`` is the single-part cipher of :mod:`.ciphers`; this module
adds the wrap-specific rules and translates error codes to the ones ``C_WrapKey``/``C_UnwrapKey`` return.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    MechanismParamInvalid,
    UnwrappingKeySizeRange,
    UnwrappingKeyTypeInconsistent,
    WrappedKeyInvalid,
    WrappedKeyLenRange,
    WrappingKeySizeRange,
    WrappingKeyTypeInconsistent,
)
from ..mechanism_params import GcmParams, Mechanism, RsaAesKeyWrapParams
from ..mechanism_rules import check as check_parameter
from ..vocab import CKM
from . import keycheck
from .ciphers import KEY_WRAP_SEMIBLOCK, CipherOperation, decrypt_init, encrypt_init
from .random import random_bytes

_CIPHER_WRAPS = {
    CKM.AES_KEY_WRAP,
    CKM.AES_KEY_WRAP_PAD,
    CKM.AES_KEY_WRAP_KWP,
    CKM.AES_GCM,
    CKM.AES_CBC_PAD,
    CKM.RSA_PKCS,
    CKM.RSA_PKCS_OAEP,
}


@contextmanager
def _key_errors(*, wrapping: bool) -> Iterator[None]:
    """Report problems with the (un)wrapping key under the wrapping-key codes."""
    try:
        yield
    except KeyTypeInconsistent as exc:
        kind = WrappingKeyTypeInconsistent if wrapping else UnwrappingKeyTypeInconsistent
        raise kind(exc.message) from exc
    except KeySizeRange as exc:
        size = WrappingKeySizeRange if wrapping else UnwrappingKeySizeRange
        raise size(exc.message) from exc


@contextmanager
def _material_errors() -> Iterator[None]:
    """Report problems with the data under the codes for the wrapped key."""
    try:
        yield
    except DataLenRange as exc:
        raise KeySizeRange(exc.message) from exc
    except EncryptedDataLenRange as exc:
        raise WrappedKeyLenRange(exc.message) from exc
    except EncryptedDataInvalid as exc:
        raise WrappedKeyInvalid(exc.message) from exc


def _cipher(mech: Mechanism, key: object, *, wrapping: bool) -> CipherOperation:
    with _key_errors(wrapping=wrapping):
        return encrypt_init(mech, key) if wrapping else decrypt_init(mech, key)


def wrap(mech: Mechanism, wrapping_key: object, key_material: bytes) -> bytes:
    """Encrypt key material under a wrapping key (``C_WrapKey``).

    Args:
        mech: one of

            - ``AES_KEY_WRAP`` (RFC 3394): material not a multiple of 8 bytes is zero-padded to one, and to
              at least 16 bytes, as PKCS#11 3.0 "AES Key Wrap" specifies; unwrapping returns the padding.
            - ``AES_KEY_WRAP_KWP`` and ``AES_KEY_WRAP_PAD``: both RFC 5649 (the deprecated ``_PAD`` as
              SoftHSMv2 and nShield implement it), any length.
            - ``AES_GCM`` with :class:`GcmParams` carrying a 12-byte IV: output ciphertext‖tag. An empty
              IV is refused, since ``C_WrapKey`` has no way to return a generated one.
            - ``AES_CBC_PAD`` with a 16-byte IV.
            - ``RSA_PKCS``, ``RSA_PKCS_OAEP`` (:class:`OaepParams`): material up to the padding's limit.
            - ``RSA_AES_KEY_WRAP`` (:class:`RsaAesKeyWrapParams`; PKCS#11 3.0 §2.1.21): a fresh AES key of
              ``aes_key_bits``, OAEP-encrypted under the RSA key, followed by the RFC 5649 wrap of the
              material under that AES key.
        wrapping_key: AES key ``bytes`` or an ``RSAPublicKey``.
        key_material: a secret key's value, or a private key's PKCS#8 DER.

    Returns:
        The wrapped key.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) not a wrapping mechanism.
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) bad parameter, or ``AES_GCM`` without IV.
        WrappingKeyTypeInconsistent: (``CKR_WRAPPING_KEY_TYPE_INCONSISTENT``) a key of the wrong kind.
        WrappingKeySizeRange: (``CKR_WRAPPING_KEY_SIZE_RANGE``) a wrapping key of an unsupported size.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) material too long (RSA) or empty.
        DeviceError: (``CKR_DEVICE_ERROR``) the RNG failed while making the ``RSA_AES_KEY_WRAP`` key.
    """
    if not key_material:
        raise KeySizeRange("cannot wrap an empty key")
    if mech.mechanism == CKM.RSA_AES_KEY_WRAP:
        return _rsa_aes_wrap(mech, wrapping_key, key_material)
    if mech.mechanism not in _CIPHER_WRAPS:
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} does not wrap keys")
    if mech.mechanism == CKM.AES_GCM and isinstance(mech.parameter, GcmParams) and not mech.parameter.iv:
        raise MechanismParamInvalid("wrapping with AES-GCM needs a caller-chosen 12-byte IV")
    if mech.mechanism == CKM.AES_KEY_WRAP:
        key_material = _zero_pad(key_material)
    operation = _cipher(mech, wrapping_key, wrapping=True)
    with _material_errors():
        return operation.oneshot(key_material)


def unwrap(mech: Mechanism, unwrapping_key: object, wrapped: bytes) -> bytes:
    """Decrypt a wrapped key (``C_UnwrapKey``); mechanisms and parameters as :func:`wrap`.

    Args:
        unwrapping_key: AES key ``bytes`` or an ``RSAPrivateKey``.
        wrapped: the output of a wrap.

    Returns:
        The key material: a secret value (``AES_KEY_WRAP`` keeps its zero padding; the caller truncates to
        ``CKA_VALUE_LEN``) or PKCS#8 DER (see :func:`.keys.private_key_from_der`).

    Raises:
        MechanismInvalid, MechanismParamInvalid: as :func:`wrap` (an empty GCM IV is refused too).
        UnwrappingKeyTypeInconsistent: (``CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT``) a key of the wrong kind.
        UnwrappingKeySizeRange: (``CKR_UNWRAPPING_KEY_SIZE_RANGE``) an unwrapping key of unsupported size.
        WrappedKeyLenRange: (``CKR_WRAPPED_KEY_LEN_RANGE``) wrapped data of an impossible length.
        WrappedKeyInvalid: (``CKR_WRAPPED_KEY_INVALID``) integrity check, padding or GCM tag failed. RSA
            PKCS#1 v1.5 uses implicit rejection and returns pseudo-random material instead.
    """
    if mech.mechanism == CKM.RSA_AES_KEY_WRAP:
        return _rsa_aes_unwrap(mech, unwrapping_key, wrapped)
    if mech.mechanism not in _CIPHER_WRAPS:
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} does not unwrap keys")
    operation = _cipher(mech, unwrapping_key, wrapping=False)
    with _material_errors():
        return operation.oneshot(wrapped)


def _zero_pad(material: bytes) -> bytes:
    size = max(2 * KEY_WRAP_SEMIBLOCK, -(-len(material) // KEY_WRAP_SEMIBLOCK) * KEY_WRAP_SEMIBLOCK)
    return material.ljust(size, b"\0")


def _rsa_aes_params(mech: Mechanism) -> RsaAesKeyWrapParams:
    check_parameter(mech)  # the table of parameter rules every door shares
    params = mech.parameter
    if not isinstance(params, RsaAesKeyWrapParams):
        raise MechanismParamInvalid("RSA_AES_KEY_WRAP needs RsaAesKeyWrapParams")
    return params


def _rsa_aes_wrap(mech: Mechanism, wrapping_key: object, key_material: bytes) -> bytes:
    params = _rsa_aes_params(mech)
    with _key_errors(wrapping=True):
        keycheck.rsa_public(wrapping_key, CKM.RSA_AES_KEY_WRAP)
    oaep = _cipher(Mechanism(CKM.RSA_PKCS_OAEP, params.oaep), wrapping_key, wrapping=True)
    aes_key = random_bytes(params.aes_key_bits // 8)
    try:
        wrapped_aes = oaep.oneshot(aes_key)
    except DataLenRange as exc:
        raise WrappingKeySizeRange("the RSA key is too small for this OAEP hash and AES key") from exc
    operation = encrypt_init(Mechanism(CKM.AES_KEY_WRAP_KWP), aes_key)
    with _material_errors():
        return wrapped_aes + operation.oneshot(key_material)


def _rsa_aes_unwrap(mech: Mechanism, unwrapping_key: object, wrapped: bytes) -> bytes:
    params = _rsa_aes_params(mech)
    with _key_errors(wrapping=False):
        private = keycheck.rsa_private(unwrapping_key, CKM.RSA_AES_KEY_WRAP)
    size = (private.key_size + 7) // 8
    if len(wrapped) <= size:
        raise WrappedKeyLenRange("the wrapped data is too short for RSA_AES_KEY_WRAP")
    oaep = _cipher(Mechanism(CKM.RSA_PKCS_OAEP, params.oaep), private, wrapping=False)
    with _material_errors():
        aes_key = oaep.oneshot(wrapped[:size])
        if len(aes_key) * 8 != params.aes_key_bits:
            raise WrappedKeyInvalid("the wrapped AES key has the wrong length")
        return decrypt_init(Mechanism(CKM.AES_KEY_WRAP_KWP), aes_key).oneshot(wrapped[size:])
