"""What each wrapping mechanism may wrap and unwrap: the standard's mechanism table, one row per mechanism that
``C_GetMechanismInfo`` reports with ``CKF_WRAP`` / ``CKF_UNWRAP`` (PKCS#11 3.0 "Current Mechanisms").

=========================  ======================  ================================================================
mechanism                  wraps and unwraps       source
=========================  ======================  ================================================================
``CKM_RSA_PKCS``           secret keys             §2.1.6 "PKCS #1 v1.5 RSA": "can wrap and unwrap any secret key"
``CKM_RSA_PKCS_OAEP``      secret keys             §2.1.8 "PKCS #1 RSA OAEP": "can wrap and unwrap any secret key"
``CKM_RSA_AES_KEY_WRAP``   secret, private keys    §2.1.21 "RSA AES KEY WRAP": any key (PKCS#8 for private keys)
``CKM_AES_KEY_WRAP``       secret, private keys    §2.14.3 "AES Key Wrap" (RFC 3394, no padding): the input is a
                                                   multiple of 8 bytes. A secret key's value is zero-padded to one
                                                   (its ``CKA_VALUE_LEN`` gives the length back at unwrap); a
                                                   private key's PKCS#8 encoding is not (trailing zeros would make
                                                   it no PKCS#8 any token reads): it must be a multiple of 8 bytes
``CKM_AES_KEY_WRAP_PAD``   secret, private keys    §2.14.3 (RFC 5649 with padding), any length
``CKM_AES_KEY_WRAP_KWP``   secret, private keys    §2.14.3 (RFC 5649), any length
``CKM_AES_CBC_PAD``        secret, private keys    §2.14.2 "AES-CBC with PKCS padding": "can wrap and unwrap any
                                                   secret key", and private keys as PKCS#8 (§2.14 "Wrapping/
                                                   unwrapping private keys")
``CKM_AES_GCM``            secret, private keys    §2.14.5 (as ``CKM_AES_CBC_PAD``, with a caller-chosen IV)
=========================  ======================  ================================================================

A key the row does not name answers ``CKR_KEY_NOT_WRAPPABLE`` at ``C_WrapKey`` (as SoftHSM2 answers for an EC
private key under ``CKM_RSA_PKCS_OAEP``), and an unwrap template asking for a class the row does not name answers
``CKR_TEMPLATE_INCONSISTENT`` at ``C_UnwrapKey``, before anything is decrypted. Public keys are never wrapped
(§5.18: ``C_WrapKey`` wraps private and secret keys).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import KeyNotWrappable, MechanismInvalid, TemplateInconsistent
from ..vocab import CKM, CKO

_SECRET = frozenset({CKO.SECRET_KEY})
_ANY_KEY = frozenset({CKO.SECRET_KEY, CKO.PRIVATE_KEY})

WRAPPABLE: Mapping[int, frozenset[CKO]] = {
    CKM.RSA_PKCS: _SECRET,
    CKM.RSA_PKCS_OAEP: _SECRET,
    CKM.RSA_AES_KEY_WRAP: _ANY_KEY,
    CKM.AES_KEY_WRAP: _ANY_KEY,
    CKM.AES_KEY_WRAP_PAD: _ANY_KEY,
    CKM.AES_KEY_WRAP_KWP: _ANY_KEY,
    CKM.AES_CBC_PAD: _ANY_KEY,
    CKM.AES_GCM: _ANY_KEY,
}
"""The classes of key each wrapping mechanism carries; its keys are exactly the mechanisms the catalogue gives
``CKF_WRAP`` and ``CKF_UNWRAP``."""

KEY_WRAP_BLOCK = 8
"""RFC 3394's semiblock, in bytes: what a private key's encoding is a multiple of for ``CKM_AES_KEY_WRAP``."""


def _classes(mechanism: int, what: str) -> frozenset[CKO]:
    classes = WRAPPABLE.get(mechanism)
    if classes is None:
        raise MechanismInvalid(f"mechanism 0x{mechanism:x} does not {what} keys")
    return classes


def _name(mechanism: int) -> str:
    return f"CKM_{CKM(mechanism).name}"


def check_wrap(mechanism: int, target_class: CKO, encoding_len: int) -> None:
    """Check ``mechanism`` may wrap a key of ``target_class`` whose wrapped encoding (a secret key's value, a
    private key's PKCS#8 DER) is ``encoding_len`` bytes (``C_WrapKey``, PKCS#11 3.0 §5.18; the table above).

    Raises:
        KeyNotWrappable: ``CKR_KEY_NOT_WRAPPABLE`` for a class the mechanism does not wrap, or a private key
            whose encoding is not a multiple of 8 bytes under ``CKM_AES_KEY_WRAP``.
        MechanismInvalid: ``CKR_MECHANISM_INVALID`` for a mechanism that wraps nothing.
    """
    classes = _classes(mechanism, "wrap")
    if target_class not in classes:
        raise KeyNotWrappable(f"{_name(mechanism)} wraps only secret keys (PKCS#11 3.0 current mechanisms); "
                              "wrap a private key with CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD or "
                              "CKM_RSA_AES_KEY_WRAP" if classes == _SECRET else
                              f"{_name(mechanism)} does not wrap a CKO_{target_class.name}")
    if mechanism == CKM.AES_KEY_WRAP and target_class is CKO.PRIVATE_KEY and encoding_len % KEY_WRAP_BLOCK:
        raise KeyNotWrappable(f"CKM_AES_KEY_WRAP (RFC 3394, no padding) wraps a multiple of 8 bytes and this "
                              f"private key's PKCS#8 encoding is {encoding_len}: use CKM_AES_KEY_WRAP_KWP")


def check_unwrap(mechanism: int, new_class: CKO) -> None:
    """Check ``mechanism`` may unwrap into a key of ``new_class`` (``C_UnwrapKey``, PKCS#11 3.0 §5.18; the table
    above), before anything is decrypted.

    Raises:
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for a class the mechanism does not carry.
        MechanismInvalid: ``CKR_MECHANISM_INVALID`` for a mechanism that unwraps nothing.
    """
    classes = _classes(mechanism, "unwrap")
    if new_class not in classes:
        carried = "secret keys" if classes == _SECRET else "secret and private keys"
        raise TemplateInconsistent(f"{_name(mechanism)} unwraps only {carried} (PKCS#11 3.0 current "
                                   f"mechanisms), not a CKO_{new_class.name}")
