"""Attribute types, their value kinds, and which attributes each object class carries.

Values inside Strongroom are typed Python values: ``bool`` for ``CK_BBOOL``, ``int`` for ``CK_ULONG``,
``bytes`` for byte arrays and big integers, ``str`` for RFC 2279 strings (``CKA_LABEL``, ``CKA_APPLICATION``,
``CKA_URL``), ``str`` ``YYYYMMDD`` or ``""`` for ``CK_DATE``, ``dict[CKA, value]`` for attribute arrays
(``CKA_WRAP_TEMPLATE``…) and ``list[int]`` for ``CKA_ALLOWED_MECHANISMS``. The class tables follow
PKCS#11 3.0 §4.4–§4.10.
"""

from __future__ import annotations

from typing import Any

from ..attribute_kinds import KINDS, Kind
from ..errors import AttributeTypeInvalid, AttributeValueInvalid
from ..vocab import CKA, CKC, CKK, CKO

Attributes = dict[CKA, Any]


MAX_LABEL_CHARS = 127
MAX_TEMPLATE_DEPTH = 1
MAX_VALUE_BYTES = 64 * 1024

# Attributes every object has (§4.4) and the class-specific additions (§4.5–§4.10).
_STORAGE = {CKA.CLASS, CKA.TOKEN, CKA.PRIVATE, CKA.MODIFIABLE, CKA.LABEL, CKA.COPYABLE, CKA.DESTROYABLE,
            CKA.UNIQUE_ID}
_DATA = {CKA.APPLICATION, CKA.OBJECT_ID, CKA.VALUE}
_CERTIFICATE = {CKA.CERTIFICATE_TYPE, CKA.TRUSTED, CKA.CERTIFICATE_CATEGORY, CKA.CHECK_VALUE, CKA.START_DATE,
                CKA.END_DATE, CKA.PUBLIC_KEY_INFO, CKA.SUBJECT, CKA.ID, CKA.ISSUER, CKA.SERIAL_NUMBER, CKA.VALUE,
                CKA.URL, CKA.HASH_OF_SUBJECT_PUBLIC_KEY, CKA.HASH_OF_ISSUER_PUBLIC_KEY,
                CKA.JAVA_MIDP_SECURITY_DOMAIN, CKA.NAME_HASH_ALGORITHM}
_KEY = {CKA.KEY_TYPE, CKA.ID, CKA.START_DATE, CKA.END_DATE, CKA.DERIVE, CKA.LOCAL, CKA.KEY_GEN_MECHANISM,
        CKA.ALLOWED_MECHANISMS}
_PUBLIC = {CKA.SUBJECT, CKA.ENCRYPT, CKA.VERIFY, CKA.VERIFY_RECOVER, CKA.WRAP, CKA.TRUSTED, CKA.WRAP_TEMPLATE,
           CKA.PUBLIC_KEY_INFO}
_PRIVATE = {CKA.SUBJECT, CKA.SENSITIVE, CKA.DECRYPT, CKA.SIGN, CKA.SIGN_RECOVER, CKA.UNWRAP, CKA.EXTRACTABLE,
            CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE, CKA.WRAP_WITH_TRUSTED, CKA.UNWRAP_TEMPLATE,
            CKA.ALWAYS_AUTHENTICATE, CKA.PUBLIC_KEY_INFO, CKA.DERIVE_TEMPLATE}
_SECRET = {CKA.SENSITIVE, CKA.ENCRYPT, CKA.DECRYPT, CKA.SIGN, CKA.VERIFY, CKA.WRAP, CKA.UNWRAP, CKA.EXTRACTABLE,
           CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE, CKA.CHECK_VALUE, CKA.WRAP_WITH_TRUSTED, CKA.TRUSTED,
           CKA.WRAP_TEMPLATE, CKA.UNWRAP_TEMPLATE, CKA.DERIVE_TEMPLATE, CKA.VALUE, CKA.VALUE_LEN}
_RSA_PUBLIC = {CKA.MODULUS, CKA.MODULUS_BITS, CKA.PUBLIC_EXPONENT}
RSA_PRIVATE_COMPONENTS = frozenset({CKA.PRIVATE_EXPONENT, CKA.PRIME_1, CKA.PRIME_2, CKA.EXPONENT_1,
                                    CKA.EXPONENT_2, CKA.COEFFICIENT})
_RSA_PRIVATE = {CKA.MODULUS, CKA.PUBLIC_EXPONENT} | RSA_PRIVATE_COMPONENTS
_EC_PUBLIC = {CKA.EC_PARAMS, CKA.EC_POINT}
_EC_PRIVATE = {CKA.EC_PARAMS, CKA.VALUE}

KEY_CLASSES = frozenset({CKO.PUBLIC_KEY, CKO.PRIVATE_KEY, CKO.SECRET_KEY})
HMAC_KEY_TYPES = frozenset({CKK.SHA_1_HMAC, CKK.SHA224_HMAC, CKK.SHA256_HMAC, CKK.SHA384_HMAC, CKK.SHA512_HMAC})
"""The legacy HMAC key types (PKCS#11 2.40, kept in 3.0): a generic secret bound to one hash, usable only with
that hash's HMAC mechanisms (``CKK_SHA256_HMAC`` with ``CKM_SHA256_HMAC`` and ``CKM_SHA256_HMAC_GENERAL``)."""
UNSERVED_HMAC_KEY_TYPES = frozenset({CKK.MD5_HMAC, CKK.SHA3_224_HMAC, CKK.SHA3_256_HMAC, CKK.SHA3_384_HMAC,
                                     CKK.SHA3_512_HMAC})
"""HMAC key types whose mechanisms Strongroom does not offer (MD5, SHA-3): refused, as a key nothing could use."""
SECRET_KEY_TYPES = frozenset({CKK.AES, CKK.GENERIC_SECRET}) | HMAC_KEY_TYPES
ASYMMETRIC_KEY_TYPES = frozenset({CKK.RSA, CKK.EC, CKK.EC_EDWARDS})


def valid_attributes(cls: CKO, key_type: CKK | None = None) -> frozenset[CKA]:
    """Return the attribute types an object of this class (and key type) may carry.

    Raises:
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` for a class or key type Strongroom does not hold.
    """
    if cls is CKO.DATA:
        return frozenset(_STORAGE | _DATA)
    if cls is CKO.CERTIFICATE:
        return frozenset(_STORAGE | _CERTIFICATE)
    if cls not in KEY_CLASSES:
        raise AttributeValueInvalid(f"CKA_CLASS {cls!r} is not an object class Strongroom stores")
    if cls is CKO.SECRET_KEY:
        if key_type in UNSERVED_HMAC_KEY_TYPES:
            raise AttributeValueInvalid(f"CKA_KEY_TYPE CKK_{CKK(key_type).name}: Strongroom offers no HMAC mechanism "
                                        "for this hash; use CKK_GENERIC_SECRET or a SHA-1/SHA-2 HMAC key type")
        if key_type not in SECRET_KEY_TYPES:
            raise AttributeValueInvalid(f"CKA_KEY_TYPE {key_type!r} is not a secret key type Strongroom holds")
        return frozenset(_STORAGE | _KEY | _SECRET)
    if key_type not in ASYMMETRIC_KEY_TYPES:
        raise AttributeValueInvalid(f"CKA_KEY_TYPE {key_type!r} is not an asymmetric key type Strongroom holds")
    if cls is CKO.PUBLIC_KEY:
        extra = _RSA_PUBLIC if key_type is CKK.RSA else _EC_PUBLIC
        return frozenset(_STORAGE | _KEY | _PUBLIC | extra)
    extra = _RSA_PRIVATE if key_type is CKK.RSA else _EC_PRIVATE
    return frozenset(_STORAGE | _KEY | _PRIVATE | extra)


def as_text(value: Any) -> str:
    """A value as Unicode text: ``str`` that encodes as UTF-8, or UTF-8 bytes decoded.

    Raises:
        ValueError: with the reason; callers turn it into their own ``CKR_*`` error.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("must be UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def attribute_type(value: int) -> CKA:
    """Return the ``CKA`` for a raw attribute type, or raise ``CKR_ATTRIBUTE_TYPE_INVALID``."""
    try:
        cka = CKA(value)
    except ValueError:
        raise AttributeTypeInvalid(f"attribute type 0x{value:x} is not one Strongroom knows") from None
    if cka not in KINDS:
        raise AttributeTypeInvalid(f"attribute type {cka.name} is not one Strongroom knows")
    return cka


def normalize(cka: CKA, value: Any, depth: int = 0) -> Any:
    """Check a value against its attribute's kind and return it in canonical form.

    ``bytes`` given for a string attribute is decoded as UTF-8; an ``int`` of 0/1 is accepted for booleans.

    Raises:
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` naming the attribute and the constraint.
    """
    kind = KINDS[cka]
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise AttributeValueInvalid(f"CKA_{cka.name} must be a boolean")
    if kind is Kind.ULONG:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise AttributeValueInvalid(f"CKA_{cka.name} must be an unsigned 64-bit integer")
        return value
    if kind is Kind.BYTES:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise AttributeValueInvalid(f"CKA_{cka.name} must be a byte string")
        if len(value) > MAX_VALUE_BYTES:
            raise AttributeValueInvalid(f"CKA_{cka.name} is at most {MAX_VALUE_BYTES} bytes, got {len(value)}")
        return bytes(value)
    if kind is Kind.STRING:
        try:
            value = as_text(value)
        except ValueError as exc:
            raise AttributeValueInvalid(f"CKA_{cka.name} {exc}") from None
        if len(value) > MAX_VALUE_BYTES:
            raise AttributeValueInvalid(f"CKA_{cka.name} is at most {MAX_VALUE_BYTES} characters")
        if cka is CKA.LABEL and len(value) > MAX_LABEL_CHARS:
            raise AttributeValueInvalid(f"CKA_LABEL is at most {MAX_LABEL_CHARS} characters, got {len(value)}")
        return value
    if kind is Kind.DATE:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("ascii", "replace")
        if not isinstance(value, str) or not (value == "" or (len(value) == 8 and value.isdigit())):
            raise AttributeValueInvalid(f"CKA_{cka.name} must be YYYYMMDD or empty")
        return value
    if kind is Kind.TEMPLATE:
        if depth >= MAX_TEMPLATE_DEPTH or not isinstance(value, dict):
            raise AttributeValueInvalid(f"CKA_{cka.name} must be an attribute template holding no templates")
        return normalize_template(value, depth + 1)
    if not isinstance(value, (list, tuple)) or len(value) > 1024 or not all(
            isinstance(m, int) and not isinstance(m, bool) and 0 <= m < 2**64 for m in value):
        raise AttributeValueInvalid("CKA_ALLOWED_MECHANISMS must be a list of at most 1024 mechanism types")
    return [int(m) for m in value]


def normalize_template(template: dict[int, Any] | None, depth: int = 0) -> Attributes:
    """Return a template with ``CKA`` keys and canonical values (see :func:`normalize`).

    Raises:
        AttributeTypeInvalid: ``CKR_ATTRIBUTE_TYPE_INVALID`` for an unknown attribute type.
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` for a value of the wrong kind.
    """
    out: Attributes = {}
    if template is not None and not isinstance(template, dict):
        raise AttributeValueInvalid("an attribute template must be a mapping of attribute types to values")
    for key, value in (template or {}).items():
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**64:
            raise AttributeTypeInvalid(f"attribute type {key!r:.40} is not a CK_ATTRIBUTE_TYPE")
        cka = attribute_type(key)
        out[cka] = normalize(cka, value, depth)
    if CKA.CLASS in out:
        try:
            out[CKA.CLASS] = CKO(out[CKA.CLASS])
        except ValueError:
            raise AttributeValueInvalid(f"CKA_CLASS 0x{out[CKA.CLASS]:x} is not an object class") from None
    if CKA.KEY_TYPE in out:
        try:
            out[CKA.KEY_TYPE] = CKK(out[CKA.KEY_TYPE])
        except ValueError:
            raise AttributeValueInvalid(f"CKA_KEY_TYPE 0x{out[CKA.KEY_TYPE]:x} is not a key type") from None
    if CKA.CERTIFICATE_TYPE in out:
        try:
            out[CKA.CERTIFICATE_TYPE] = CKC(out[CKA.CERTIFICATE_TYPE])
        except ValueError:
            raise AttributeValueInvalid("CKA_CERTIFICATE_TYPE is not a certificate type") from None
    return out


def matches(attrs: Attributes, template: Attributes) -> bool:
    """Whether every attribute of ``template`` is present in ``attrs`` with an equal value (C_FindObjects)."""
    for cka, want in template.items():  # noqa: SIM110 - a plain loop: it runs per object in C_FindObjects
        if cka not in attrs or attrs[cka] != want:
            return False
    return True
