"""Attribute types and the kind of value each carries (PKCS#11 3.0 §4.1–§4.10, the data types of §3).

Values inside Strongroom are typed Python values: ``bool`` for ``CK_BBOOL``, ``int`` for ``CK_ULONG``,
``bytes`` for byte arrays and big integers, ``str`` for RFC 2279 strings (``CKA_LABEL``, ``CKA_APPLICATION``,
``CKA_URL``), ``str`` ``YYYYMMDD`` or ``""`` for ``CK_DATE``, ``dict[CKA, value]`` for attribute arrays
(``CKA_WRAP_TEMPLATE``…) and ``list[int]`` for ``CKA_ALLOWED_MECHANISMS``. Shared by the object model, the
PKCS#11 bridge and the CLI, so it imports nothing but the vocabulary.
"""

from __future__ import annotations

import enum

from .vocab import CKA


class Kind(enum.Enum):
    """The kind of value an attribute type carries."""

    BOOL = "bool"
    ULONG = "ulong"
    BYTES = "bytes"
    STRING = "string"
    DATE = "date"
    TEMPLATE = "template"
    MECHANISMS = "mechanisms"


_BOOL = {
    CKA.TOKEN, CKA.PRIVATE, CKA.TRUSTED, CKA.SENSITIVE, CKA.ENCRYPT, CKA.DECRYPT, CKA.WRAP, CKA.UNWRAP,
    CKA.SIGN, CKA.SIGN_RECOVER, CKA.VERIFY, CKA.VERIFY_RECOVER, CKA.DERIVE, CKA.EXTRACTABLE, CKA.LOCAL,
    CKA.NEVER_EXTRACTABLE, CKA.ALWAYS_SENSITIVE, CKA.MODIFIABLE, CKA.COPYABLE, CKA.DESTROYABLE,
    CKA.ALWAYS_AUTHENTICATE, CKA.WRAP_WITH_TRUSTED,
}
_ULONG = {
    CKA.CLASS, CKA.CERTIFICATE_TYPE, CKA.CERTIFICATE_CATEGORY, CKA.JAVA_MIDP_SECURITY_DOMAIN,
    CKA.NAME_HASH_ALGORITHM, CKA.KEY_TYPE, CKA.MODULUS_BITS, CKA.VALUE_LEN, CKA.KEY_GEN_MECHANISM,
    CKA.PRIME_BITS, CKA.SUBPRIME_BITS, CKA.VALUE_BITS,
}
_STRING = {CKA.LABEL, CKA.APPLICATION, CKA.URL, CKA.UNIQUE_ID}
_DATE = {CKA.START_DATE, CKA.END_DATE}
_TEMPLATE = {CKA.WRAP_TEMPLATE, CKA.UNWRAP_TEMPLATE, CKA.DERIVE_TEMPLATE}

KINDS: dict[CKA, Kind] = {}
for _cka in CKA:
    if _cka is CKA.VENDOR_DEFINED:
        continue
    KINDS[_cka] = (
        Kind.BOOL if _cka in _BOOL else Kind.ULONG if _cka in _ULONG else Kind.STRING if _cka in _STRING
        else Kind.DATE if _cka in _DATE else Kind.TEMPLATE if _cka in _TEMPLATE
        else Kind.MECHANISMS if _cka is CKA.ALLOWED_MECHANISMS else Kind.BYTES
    )
