"""Key generation, curves, serialisation and the public attributes of key objects.

Secret keys are ``bytes``; private and public keys are ``cryptography`` objects (RSA, short-Weierstrass EC,
Ed25519). Private keys travel as unencrypted PKCS#8 DER (RFC 5958; the encoding PKCS#11 3.0 wraps, per
"Wrapping/unwrapping private keys"), public keys as SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import overload

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import (
    AttributeValueInvalid,
    CurveNotSupported,
    DomainParamsInvalid,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    TemplateIncomplete,
    WrappedKeyInvalid,
)
from ..mechanism_catalogue import GENERIC_SECRET_BYTES, HMAC_KEY_GENERATION, RSA_BITS, RSA_GENERATE_BITS
from ..vocab import CKA, CKK, CKM
from . import der
from .random import random_bytes

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class EdwardsCurve:
    """The twisted Edwards curve of Ed25519 (RFC 8032 §5.1), which ``cryptography`` has no curve class for.

    Attributes:
        name: ``"ed25519"``.
        key_size: field size in bits, 255 (the unit PKCS#11 reports for Edwards keys).
    """

    name: str = "ed25519"
    key_size: int = 255


ED25519 = EdwardsCurve()

Curve = ec.EllipticCurve | EdwardsCurve

# (DER OID, accepted curveName PrintableStrings, curve). OIDs: SEC 2 §A.2, RFC 5480 §2.1.1.1, RFC 8410 §3.
_CURVES: tuple[tuple[bytes, tuple[str, ...], Curve], ...] = (
    (bytes.fromhex("06052b81040021"), ("secp224r1",), ec.SECP224R1()),
    (bytes.fromhex("06082a8648ce3d030107"), ("secp256r1", "prime256v1"), ec.SECP256R1()),
    (bytes.fromhex("06052b81040022"), ("secp384r1",), ec.SECP384R1()),
    (bytes.fromhex("06052b81040023"), ("secp521r1",), ec.SECP521R1()),
    (bytes.fromhex("06052b8104000a"), ("secp256k1",), ec.SECP256K1()),
    (bytes.fromhex("06032b6570"), ("edwards25519",), ED25519),
)
_BY_OID = {oid: curve for oid, _, curve in _CURVES}
_BY_NAME = {name: curve for _, names, curve in _CURVES for name in names}
_OID_BY_CURVE = {curve.name: oid for oid, _, curve in _CURVES}

_BY_ANY_NAME = {**{curve.name: curve for _, _, curve in _CURVES}, **_BY_NAME}

ED25519_KEY_BYTES = 32


_SECRET_KEY_GENERATION = frozenset({CKM.GENERIC_SECRET_KEY_GEN, *HMAC_KEY_GENERATION})

def curve_by_name(name: str) -> Curve:
    """A supported curve by name.

    Args:
        name: its SEC 2 / RFC 8410 name as ``cryptography`` spells it (``"secp256r1"``, ``"ed25519"``) or a
            curveName that ``CKA_EC_PARAMS`` may carry (``"prime256v1"``, ``"edwards25519"``).

    Raises:
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) a curve Strongroom lacks.
    """
    curve = _BY_ANY_NAME.get(name)
    if curve is None:
        raise CurveNotSupported(f"the curve {name[:40]!r} is not supported")
    return curve


def ec_params_for_name(name: str) -> bytes:
    """``CKA_EC_PARAMS`` (the DER OID, as :func:`ec_params_for` gives it) of the curve ``name`` names.

    Raises:
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) see :func:`curve_by_name`.
    """
    return _OID_BY_CURVE[curve_by_name(name).name]


def curve_from_ec_params(ec_params: bytes) -> Curve:
    """Resolve ``CKA_EC_PARAMS``: DER of an ANSI X9.62 Parameters CHOICE (PKCS#11 3.0 "Elliptic Curve").

    Args:
        ec_params: DER of a named-curve OBJECT IDENTIFIER (the oId choice) or of a PrintableString curve
            name such as ``"edwards25519"`` or ``"secp256r1"`` (the curveName choice).

    Returns:
        A ``cryptography`` curve (P-224, P-256, P-384, P-521, secp256k1) or :data:`ED25519`.

    Raises:
        DomainParamsInvalid: (``CKR_DOMAIN_PARAMS_INVALID``) not DER, or the ecParameters / implicitlyCA
            choice, which Strongroom does not accept.
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) a well-formed name of a curve Strongroom lacks.
    """
    try:
        tag, content, end = der.read(ec_params)
    except ValueError as exc:
        raise DomainParamsInvalid("CKA_EC_PARAMS is not DER") from exc
    if end != len(ec_params):
        raise DomainParamsInvalid("CKA_EC_PARAMS has trailing bytes")
    if tag == der.OBJECT_IDENTIFIER:
        curve = _BY_OID.get(ec_params)
    elif tag == der.PRINTABLE_STRING:
        curve = _BY_NAME.get(content.decode("ascii", errors="replace"))
    else:
        raise DomainParamsInvalid("only the oId and curveName forms of CKA_EC_PARAMS are supported")
    if curve is None:
        raise CurveNotSupported("the curve is not supported")
    return curve


def _curve_of(key: object) -> Curve:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return key.curve
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ED25519
    raise KeyTypeInconsistent("an EC or Ed25519 key is required")


def ec_params_for(key: PrivateKey | PublicKey) -> bytes:
    """``CKA_EC_PARAMS`` of an EC or Ed25519 key: the DER OID of its curve.

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) not an EC or Ed25519 key.
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) an EC key on a curve Strongroom lacks.
    """
    oid = _OID_BY_CURVE.get(_curve_of(key).name)
    if oid is None:
        raise CurveNotSupported("the key's curve is not supported")
    return oid


def generate_secret(mechanism: int, value_len: int) -> bytes:
    """Generate a secret key value (``C_GenerateKey``) from the continuously tested RNG.

    Args:
        mechanism: ``CKM.AES_KEY_GEN`` (PKCS#11 3.0 "AES key generation"),
            ``CKM.GENERIC_SECRET_KEY_GEN`` ("Generic secret key generation") or ``CKM.SHA_1_KEY_GEN`` …
            ``CKM.SHA512_KEY_GEN`` (the SHA-n key generation of the legacy HMAC key types, as long as a generic
            secret).
        value_len: ``CKA_VALUE_LEN`` in bytes: 16, 24 or 32 for AES; 1..800 for a generic secret.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) another mechanism.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) a length outside those ranges.
        DeviceError: (``CKR_DEVICE_ERROR``) the RNG failed its continuous test.
    """
    if mechanism == CKM.AES_KEY_GEN:
        if value_len not in (16, 24, 32):
            raise KeySizeRange(f"AES keys are 16, 24 or 32 bytes, not {value_len}")
    elif mechanism in _SECRET_KEY_GENERATION:
        low, high = GENERIC_SECRET_BYTES
        if not low <= value_len <= high:
            raise KeySizeRange(f"generic secrets are {low}..{high} bytes, not {value_len}")
    else:
        raise MechanismInvalid(f"mechanism 0x{mechanism:x} does not generate secret keys")
    return random_bytes(value_len)


def generate_key_pair(
    mechanism: int,
    *,
    modulus_bits: int | None = None,
    public_exponent: int = 65537,
    ec_params: bytes | None = None,
    rsa_bits: tuple[int, int] = RSA_GENERATE_BITS,
) -> PrivateKey:
    """Generate a key pair (``C_GenerateKeyPair``); the public key is ``result.public_key()``.

    Args:
        mechanism: ``CKM.RSA_PKCS_KEY_PAIR_GEN`` (PKCS#11 3.0 "PKCS #1 RSA key pair generation"),
            ``CKM.EC_KEY_PAIR_GEN`` ("Elliptic curve key pair generation") or
            ``CKM.EC_EDWARDS_KEY_PAIR_GEN`` ("Edwards Elliptic curve key pair generation").
        modulus_bits: RSA ``CKA_MODULUS_BITS``: within ``rsa_bits`` in steps of 256.
        public_exponent: RSA ``CKA_PUBLIC_EXPONENT``; only 65537, the one exponent ``cryptography``
            generates keys for besides the legacy 3.
        ec_params: ``CKA_EC_PARAMS`` (see :func:`curve_from_ec_params`); a short-Weierstrass curve for
            ``EC_KEY_PAIR_GEN``, Ed25519 for ``EC_EDWARDS_KEY_PAIR_GEN``.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) not a key-pair generation mechanism.
        TemplateIncomplete: (``CKR_TEMPLATE_INCOMPLETE``) ``modulus_bits`` or ``ec_params`` missing.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an unsupported RSA modulus size.
        AttributeValueInvalid: (``CKR_ATTRIBUTE_VALUE_INVALID``) a public exponent other than 65537.
        DomainParamsInvalid, CurveNotSupported: as :func:`curve_from_ec_params`, or a curve of the other
            family than the mechanism generates.
        rsa_bits: the smallest and largest RSA modulus, in bits (2048..4096; a NON_FIPS cluster from 1024).
    """
    if mechanism == CKM.RSA_PKCS_KEY_PAIR_GEN:
        if modulus_bits is None:
            raise TemplateIncomplete("CKA_MODULUS_BITS is required")
        low, high = rsa_bits
        if not low <= modulus_bits <= high or modulus_bits % 256:
            raise KeySizeRange(f"RSA keys are generated with {low}..{high} bits in steps of 256")
        if public_exponent != 65537:
            raise AttributeValueInvalid("only the public exponent 65537 is supported")
        return rsa.generate_private_key(public_exponent=public_exponent, key_size=modulus_bits)
    if mechanism in (CKM.EC_KEY_PAIR_GEN, CKM.EC_EDWARDS_KEY_PAIR_GEN):
        if ec_params is None:
            raise TemplateIncomplete("CKA_EC_PARAMS is required")
        curve = curve_from_ec_params(ec_params)
        edwards = mechanism == CKM.EC_EDWARDS_KEY_PAIR_GEN
        if edwards != isinstance(curve, EdwardsCurve):
            raise CurveNotSupported("the curve does not belong to this key-pair generation mechanism")
        if isinstance(curve, EdwardsCurve):
            return ed25519.Ed25519PrivateKey.generate()
        return ec.generate_private_key(curve)
    raise MechanismInvalid(f"mechanism 0x{mechanism:x} does not generate key pairs")


def _check_supported(key: PrivateKey | PublicKey) -> None:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
            raise KeySizeRange(f"RSA moduli are {RSA_BITS[0]}..{RSA_BITS[1]} bits, not {key.key_size}")
    elif isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        ec_params_for(key)


def private_key_to_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PrivateKeyInfo DER of a private key (the form wrapping mechanisms encrypt).

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) not an RSA, EC or Ed25519 private key.
    """
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise KeyTypeInconsistent("an RSA, EC or Ed25519 private key is required")
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_der(data: bytes) -> PrivateKey:
    """Parse an unencrypted PKCS#8 PrivateKeyInfo, typically the output of an unwrap.

    Zero bytes after the DER value are ignored: ``CKM_AES_KEY_WRAP`` zero-pads its input to 8-byte blocks
    (PKCS#11 3.0 "AES Key Wrap"), and unwrapping hands the padding back.

    Args:
        data: DER bytes, optionally followed by zero padding.

    Returns:
        The private key (RSA, EC on a supported curve, or Ed25519).

    Raises:
        WrappedKeyInvalid: (``CKR_WRAPPED_KEY_INVALID``) not a PKCS#8 private key, encrypted, or of a key
            type Strongroom does not hold.
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) an EC key on an unsupported curve.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an RSA modulus outside 1024..16384 bits.
    """
    try:
        _, _, end = der.read(data)
    except ValueError as exc:
        raise WrappedKeyInvalid("the private key is not DER") from exc
    if any(data[end:]):
        raise WrappedKeyInvalid("the private key has trailing bytes")
    try:
        key = serialization.load_der_private_key(data[:end], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise WrappedKeyInvalid("the private key is not an unencrypted PKCS#8 key") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise WrappedKeyInvalid("the private key's type is not supported")
    _check_supported(key)
    return key


def public_key_to_der(key: PrivateKey | PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER of a public key, or of a private key's public half (``CKA_PUBLIC_KEY_INFO``).

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) not an RSA, EC or Ed25519 key.
    """
    public = _public_half(key)
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_der(data: bytes) -> PublicKey:
    """Parse SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7).

    Raises:
        AttributeValueInvalid: (``CKR_ATTRIBUTE_VALUE_INVALID``) not an SPKI of an RSA, EC or Ed25519 key.
        CurveNotSupported: (``CKR_CURVE_NOT_SUPPORTED``) an EC key on an unsupported curve.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an RSA modulus outside 1024..16384 bits.
    """
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AttributeValueInvalid("not a SubjectPublicKeyInfo") from exc
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise AttributeValueInvalid("the public key's type is not supported")
    _check_supported(key)
    return key


def _public_half(key: object) -> PublicKey:
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        return key.public_key()
    if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        return key
    raise KeyTypeInconsistent("an RSA, EC or Ed25519 key is required")


def _unsigned(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def public_attributes(key: PrivateKey | PublicKey) -> dict[CKA, object]:
    """The public-key attributes of a key object (PKCS#11 3.0 RSA, EC and Edwards public key objects).

    Args:
        key: a public key, or a private key (its public half is described).

    Returns:
        RSA: ``{MODULUS: bytes, MODULUS_BITS: int, PUBLIC_EXPONENT: bytes}``, big-endian and minimal.
        EC: ``{EC_PARAMS: DER OID, EC_POINT: DER OCTET STRING of the uncompressed point 04‖X‖Y}``.
        Ed25519: ``{EC_PARAMS: DER OID 1.3.101.112, EC_POINT: DER OCTET STRING of the 32-byte key}``.

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) not an RSA, EC or Ed25519 key.
    """
    public = _public_half(key)
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {
            CKA.MODULUS: _unsigned(numbers.n),
            CKA.MODULUS_BITS: public.key_size,
            CKA.PUBLIC_EXPONENT: _unsigned(numbers.e),
        }
    if isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        point = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {CKA.EC_PARAMS: ec_params_for(public), CKA.EC_POINT: der.encode(der.OCTET_STRING, point)}


@overload
def public_key_from_point(curve: EdwardsCurve, point: bytes) -> ed25519.Ed25519PublicKey: ...
@overload
def public_key_from_point(curve: ec.EllipticCurve, point: bytes) -> ec.EllipticCurvePublicKey: ...
@overload
def public_key_from_point(curve: Curve, point: bytes) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey: ...


def public_key_from_point(curve: Curve, point: bytes) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    """A public key from an encoded point, as ``CKA_EC_POINT`` or ECDH public data carry it.

    Args:
        curve: the key's curve (from :func:`curve_from_ec_params`).
        point: for EC, the raw X9.62 point (``04‖X‖Y`` uncompressed or ``02/03‖X`` compressed) or a DER
            OCTET STRING of it; for Ed25519, the 32-byte key or a DER OCTET STRING of it. The raw forms
            are recognised by their exact length, which a DER wrapping never has.

    Raises:
        AttributeValueInvalid: (``CKR_ATTRIBUTE_VALUE_INVALID``) not a valid point on the curve.
    """
    if isinstance(curve, EdwardsCurve):
        raw_sizes: tuple[int, ...] = (ED25519_KEY_BYTES,)
    else:
        field = (curve.key_size + 7) // 8
        raw_sizes = (1 + field, 1 + 2 * field)
    raw = point
    if len(point) not in raw_sizes:
        try:
            raw = der.decode(der.OCTET_STRING, point)
        except ValueError as exc:
            raise AttributeValueInvalid("the EC point is neither raw nor a DER OCTET STRING") from exc
    try:
        if isinstance(curve, EdwardsCurve):
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)
    except ValueError as exc:
        raise AttributeValueInvalid("the EC point is not on the curve") from exc


def _required(attrs: Mapping[CKA, object], attribute: CKA) -> object:
    if attribute not in attrs:
        raise TemplateIncomplete(f"{attribute.name} is required")
    return attrs[attribute]


def _byte_attribute(attrs: Mapping[CKA, object], attribute: CKA) -> bytes:
    value = _required(attrs, attribute)
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise AttributeValueInvalid(f"{attribute.name} must be a non-empty byte string")
    return bytes(value)


def public_key_from_attributes(key_type: CKK, attrs: Mapping[CKA, object]) -> PublicKey:
    """Build a public key from ``C_CreateObject`` attributes (the inverse of :func:`public_attributes`).

    Args:
        key_type: ``CKK.RSA``, ``CKK.EC`` or ``CKK.EC_EDWARDS``.
        attrs: RSA: ``MODULUS`` and ``PUBLIC_EXPONENT`` as big-endian bytes. EC/Edwards: ``EC_PARAMS`` and
            ``EC_POINT`` (see :func:`public_key_from_point` for the point forms accepted).

    Raises:
        TemplateIncomplete: (``CKR_TEMPLATE_INCOMPLETE``) a required attribute is missing.
        AttributeValueInvalid: (``CKR_ATTRIBUTE_VALUE_INVALID``) a malformed value, an invalid RSA key or
            point, or an unsupported key type.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an RSA modulus outside 1024..16384 bits.
        DomainParamsInvalid, CurveNotSupported: as :func:`curve_from_ec_params`, or a curve of the other
            family than ``key_type``.
    """
    if key_type == CKK.RSA:
        n = int.from_bytes(_byte_attribute(attrs, CKA.MODULUS), "big")
        e = int.from_bytes(_byte_attribute(attrs, CKA.PUBLIC_EXPONENT), "big")
        try:
            key: PublicKey = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise AttributeValueInvalid("not a valid RSA public key") from exc
        _check_supported(key)
        return key
    if key_type in (CKK.EC, CKK.EC_EDWARDS):
        curve = curve_from_ec_params(_byte_attribute(attrs, CKA.EC_PARAMS))
        if (key_type == CKK.EC_EDWARDS) != isinstance(curve, EdwardsCurve):
            raise CurveNotSupported("the curve does not belong to this key type")
        return public_key_from_point(curve, _byte_attribute(attrs, CKA.EC_POINT))
    raise AttributeValueInvalid(f"public keys of type {key_type!r} are not supported")


def check_value(key_type: CKK, value: bytes) -> bytes:
    """``CKA_CHECK_VALUE`` of a secret key: 3 bytes that identify it without revealing it.

    Args:
        key_type: ``CKK.AES`` (PKCS#11 3.0 "AES secret key objects": first 3 bytes of the AES-ECB
            encryption of a zero block) or ``CKK.GENERIC_SECRET`` ("Generic secret key objects": first
            3 bytes of SHA-1 of the value).
        value: the key value.

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) another key type.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) an AES value not 16, 24 or 32 bytes.
    """
    if key_type == CKK.AES:
        if len(value) not in (16, 24, 32):
            raise KeySizeRange(f"AES keys are 16, 24 or 32 bytes, not {len(value)}")
        encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()  # noqa: S305 - one block, the KCV
        return (encryptor.update(bytes(16)) + encryptor.finalize())[:3]
    if key_type == CKK.GENERIC_SECRET:
        digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - the standard's KCV of a generic secret
        digest.update(value)
        return digest.finalize()[:3]
    raise KeyTypeInconsistent(f"no check value is defined for key type {key_type!r}")
