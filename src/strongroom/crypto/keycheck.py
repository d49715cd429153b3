"""Checks that the key handed to an operation is of the kind and size its mechanism accepts.

Each check returns the key narrowed to its type. Wrong kind raises ``KeyTypeInconsistent``
(``CKR_KEY_TYPE_INCONSISTENT``), wrong size ``KeySizeRange`` (``CKR_KEY_SIZE_RANGE``): the codes the
PKCS#11 3.0 ``C_*Init`` functions return. Wrapping translates both to its own codes.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import KeySizeRange, KeyTypeInconsistent
from ..mechanism_catalogue import info


def aes_key(key: object) -> bytes:
    """An AES key: ``bytes`` of 16, 24 or 32 bytes (FIPS 197)."""
    if not isinstance(key, (bytes, bytearray)):
        raise KeyTypeInconsistent("an AES key is required")
    if len(key) not in (16, 24, 32):
        raise KeySizeRange(f"AES keys are 16, 24 or 32 bytes, not {len(key)}")
    return bytes(key)


def secret_key(key: object, mechanism: int) -> bytes:
    """A generic secret key (``bytes``) within the byte range ``mechanism`` reports."""
    if not isinstance(key, (bytes, bytearray)):
        raise KeyTypeInconsistent("a secret key is required")
    limits = info(mechanism)
    if not limits.min_key_size <= len(key) <= limits.max_key_size:
        raise KeySizeRange(
            f"secret keys for this mechanism are {limits.min_key_size}..{limits.max_key_size} bytes"
        )
    return bytes(key)


def _rsa_size(bits: int, mechanism: int) -> None:
    limits = info(mechanism)
    if not limits.min_key_size <= bits <= limits.max_key_size:
        raise KeySizeRange(f"RSA moduli are {limits.min_key_size}..{limits.max_key_size} bits, not {bits}")


def rsa_private(key: object, mechanism: int) -> rsa.RSAPrivateKey:
    """An RSA private key whose modulus size (bits) ``mechanism`` supports."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyTypeInconsistent("an RSA private key is required")
    _rsa_size(key.key_size, mechanism)
    return key


def rsa_public(key: object, mechanism: int) -> rsa.RSAPublicKey:
    """An RSA public key whose modulus size (bits) ``mechanism`` supports."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyTypeInconsistent("an RSA public key is required")
    _rsa_size(key.key_size, mechanism)
    return key


def ec_private(key: object) -> ec.EllipticCurvePrivateKey:
    """A short-Weierstrass EC private key (curves are checked when keys are created or imported)."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyTypeInconsistent("an EC private key is required")
    return key


def ec_public(key: object) -> ec.EllipticCurvePublicKey:
    """A short-Weierstrass EC public key."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyTypeInconsistent("an EC public key is required")
    return key


def ed25519_private(key: object) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 private key."""
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyTypeInconsistent("an Ed25519 private key is required")
    return key


def ed25519_public(key: object) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key."""
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyTypeInconsistent("an Ed25519 public key is required")
    return key
