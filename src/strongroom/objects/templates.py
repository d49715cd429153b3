"""Building a new object's attributes from a caller's template, per creation path.

Each function takes normalised templates (:func:`attributes.normalize_template`) and returns the full attribute
set with class defaults applied and the attributes PKCS#11 maintains (``CKA_LOCAL``, ``CKA_ALWAYS_SENSITIVE``,
``CKA_NEVER_EXTRACTABLE``, ``CKA_KEY_GEN_MECHANISM``) set. Key material and the attributes computed from it
(``CKA_MODULUS``, ``CKA_EC_POINT``, ``CKA_CHECK_VALUE``, ``CKA_VALUE_LEN``) are added by the node, which holds
the crypto layer. Rules and error codes: PKCS#11 3.0 §4.1.2 (template errors) and the per-class tables' footnotes.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    AttributeReadOnly,
    AttributeTypeInvalid,
    AttributeValueInvalid,
    TemplateIncomplete,
    TemplateInconsistent,
)
from ..vocab import CK_UNAVAILABLE_INFORMATION, CKA, CKK, CKM, CKO
from .attributes import HMAC_KEY_TYPES, Attributes, valid_attributes

# Attributes only the token sets (Table 4.4 footnote 4 and 6: never in a template).
MAINTAINED = frozenset({CKA.LOCAL, CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE, CKA.KEY_GEN_MECHANISM,
                        CKA.UNIQUE_ID})

_STORAGE_DEFAULTS: dict[CKA, Any] = {
    CKA.TOKEN: False, CKA.MODIFIABLE: True, CKA.COPYABLE: True, CKA.DESTROYABLE: True, CKA.LABEL: "",
}
_KEY_DEFAULTS: dict[CKA, Any] = {
    CKA.ID: b"", CKA.START_DATE: "", CKA.END_DATE: "", CKA.DERIVE: False, CKA.ALLOWED_MECHANISMS: [],
}
# Usage defaults follow the service Strongroom matches: least privilege, except MAC use of secret keys.
_CLASS_DEFAULTS: dict[CKO, dict[CKA, Any]] = {
    CKO.DATA: {CKA.PRIVATE: False, CKA.APPLICATION: "", CKA.OBJECT_ID: b"", CKA.VALUE: b""},
    CKO.CERTIFICATE: {CKA.PRIVATE: False, CKA.TRUSTED: False, CKA.CERTIFICATE_CATEGORY: 0, CKA.START_DATE: "",
                      CKA.END_DATE: "", CKA.ID: b"", CKA.ISSUER: b"", CKA.SERIAL_NUMBER: b"", CKA.URL: "",
                      CKA.JAVA_MIDP_SECURITY_DOMAIN: 0},
    CKO.PUBLIC_KEY: {CKA.PRIVATE: False, CKA.SUBJECT: b"", CKA.ENCRYPT: False, CKA.VERIFY: False,
                     CKA.VERIFY_RECOVER: False, CKA.WRAP: False, CKA.TRUSTED: False},
    CKO.PRIVATE_KEY: {CKA.PRIVATE: True, CKA.SUBJECT: b"", CKA.SENSITIVE: True, CKA.DECRYPT: False,
                      CKA.SIGN: False, CKA.SIGN_RECOVER: False, CKA.UNWRAP: False, CKA.EXTRACTABLE: True,
                      CKA.WRAP_WITH_TRUSTED: False, CKA.ALWAYS_AUTHENTICATE: False},
    CKO.SECRET_KEY: {CKA.PRIVATE: True, CKA.SENSITIVE: True, CKA.ENCRYPT: False, CKA.DECRYPT: False,
                     CKA.SIGN: True, CKA.VERIFY: True, CKA.WRAP: False, CKA.UNWRAP: False, CKA.EXTRACTABLE: True,
                     CKA.WRAP_WITH_TRUSTED: False, CKA.TRUSTED: False},
}

# Which key types each generation mechanism makes.
KEYGEN_TYPES: dict[CKM, tuple[CKO, CKK]] = {
    CKM.AES_KEY_GEN: (CKO.SECRET_KEY, CKK.AES),
    CKM.GENERIC_SECRET_KEY_GEN: (CKO.SECRET_KEY, CKK.GENERIC_SECRET),
    CKM.SHA_1_KEY_GEN: (CKO.SECRET_KEY, CKK.SHA_1_HMAC),
    CKM.SHA224_KEY_GEN: (CKO.SECRET_KEY, CKK.SHA224_HMAC),
    CKM.SHA256_KEY_GEN: (CKO.SECRET_KEY, CKK.SHA256_HMAC),
    CKM.SHA384_KEY_GEN: (CKO.SECRET_KEY, CKK.SHA384_HMAC),
    CKM.SHA512_KEY_GEN: (CKO.SECRET_KEY, CKK.SHA512_HMAC),
}
KEYPAIR_TYPES: dict[CKM, CKK] = {
    CKM.RSA_PKCS_KEY_PAIR_GEN: CKK.RSA,
    CKM.EC_KEY_PAIR_GEN: CKK.EC,
    CKM.EC_EDWARDS_KEY_PAIR_GEN: CKK.EC_EDWARDS,
}


def _require_class(template: Attributes, cls: CKO, key_type: CKK | None) -> None:
    if CKA.CLASS in template and template[CKA.CLASS] is not cls:
        raise TemplateInconsistent(f"CKA_CLASS must be CKO_{cls.name} here, not CKO_{template[CKA.CLASS].name}")
    if key_type is not None and CKA.KEY_TYPE in template and template[CKA.KEY_TYPE] is not key_type:
        raise TemplateInconsistent(
            f"CKA_KEY_TYPE must be CKK_{key_type.name} here, not CKK_{template[CKA.KEY_TYPE].name}")


def _check_allowed(template: Attributes, cls: CKO, key_type: CKK | None, forbidden: frozenset[CKA]) -> None:
    valid = valid_attributes(cls, key_type)
    for cka, value in template.items():
        if cka not in valid:
            raise AttributeTypeInvalid(f"CKA_{cka.name} is not an attribute of CKO_{cls.name}")
        if cka in MAINTAINED:
            raise AttributeReadOnly(f"CKA_{cka.name} is set by the HSM, not by a template")
        if cka is CKA.TRUSTED and value:
            raise AttributeReadOnly("CKA_TRUSTED can only be set to true by an admin, after creation")
        if cka in forbidden:
            raise TemplateInconsistent(f"CKA_{cka.name} cannot be given when the object is made this way")


def _with_defaults(template: Attributes, cls: CKO, key_type: CKK | None) -> Attributes:
    if template.get(CKA.ALWAYS_AUTHENTICATE):
        raise AttributeValueInvalid("CKA_ALWAYS_AUTHENTICATE is not supported")
    attrs: Attributes = dict(_STORAGE_DEFAULTS)
    if cls in (CKO.PUBLIC_KEY, CKO.PRIVATE_KEY, CKO.SECRET_KEY):
        attrs.update(_KEY_DEFAULTS)
    attrs.update(_CLASS_DEFAULTS[cls])
    attrs.update(template)
    attrs[CKA.CLASS] = cls
    if key_type is not None:
        attrs[CKA.KEY_TYPE] = key_type
    return attrs


def _maintained(attrs: Attributes, *, local: bool, mechanism: int | None,
                always_sensitive: bool | None = None, never_extractable: bool | None = None) -> Attributes:
    """Set CKA_LOCAL, CKA_KEY_GEN_MECHANISM and, for private and secret keys, the sensitivity history."""
    attrs[CKA.LOCAL] = local
    attrs[CKA.KEY_GEN_MECHANISM] = CK_UNAVAILABLE_INFORMATION if mechanism is None else int(mechanism)
    if attrs[CKA.CLASS] in (CKO.PRIVATE_KEY, CKO.SECRET_KEY):
        sensitive, extractable = attrs[CKA.SENSITIVE], attrs[CKA.EXTRACTABLE]
        attrs[CKA.ALWAYS_SENSITIVE] = sensitive if always_sensitive is None else always_sensitive and sensitive
        attrs[CKA.NEVER_EXTRACTABLE] = (
            (not extractable) if never_extractable is None else never_extractable and not extractable)
    return attrs


def _class_of(template: Attributes) -> CKO:
    if CKA.CLASS not in template:
        raise TemplateIncomplete("CKA_CLASS is required")
    cls: CKO = template[CKA.CLASS]  # a CKO: the template is normalised
    return cls


def _key_type_of(template: Attributes, cls: CKO) -> CKK | None:
    if cls not in (CKO.PUBLIC_KEY, CKO.PRIVATE_KEY, CKO.SECRET_KEY):
        return None
    if CKA.KEY_TYPE not in template:
        raise TemplateIncomplete(f"CKA_KEY_TYPE is required for CKO_{cls.name}")
    key_type: CKK = template[CKA.KEY_TYPE]  # a CKK: the template is normalised
    return key_type


_CREATE_REQUIRED: dict[tuple[CKO, CKK | None], tuple[CKA, ...]] = {
    (CKO.SECRET_KEY, CKK.AES): (CKA.VALUE,),
    (CKO.SECRET_KEY, CKK.GENERIC_SECRET): (CKA.VALUE,),
    **{(CKO.SECRET_KEY, hmac): (CKA.VALUE,) for hmac in HMAC_KEY_TYPES},
    (CKO.PUBLIC_KEY, CKK.RSA): (CKA.MODULUS, CKA.PUBLIC_EXPONENT),
    (CKO.PUBLIC_KEY, CKK.EC): (CKA.EC_PARAMS, CKA.EC_POINT),
    (CKO.PUBLIC_KEY, CKK.EC_EDWARDS): (CKA.EC_PARAMS, CKA.EC_POINT),
    (CKO.CERTIFICATE, None): (CKA.CERTIFICATE_TYPE, CKA.SUBJECT, CKA.VALUE),
}


def for_create(template: Attributes) -> Attributes:
    """Attributes of an object made by ``C_CreateObject`` (PKCS#11 3.0 §5.7).

    Data objects, X.509 certificates, public keys and secret keys can be created; private keys enter the
    boundary only through ``C_UnwrapKey`` (PKCS#8 wrapped under a key), as in the service Strongroom matches.

    Raises:
        TemplateIncomplete: ``CKR_TEMPLATE_INCOMPLETE`` when a required attribute is missing.
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for a private key or a computed attribute given.
        AttributeTypeInvalid: ``CKR_ATTRIBUTE_TYPE_INVALID`` for an attribute the class does not have.
        AttributeReadOnly: ``CKR_ATTRIBUTE_READ_ONLY`` for an attribute only the HSM sets.
    """
    cls = _class_of(template)
    if cls is CKO.PRIVATE_KEY:
        raise TemplateInconsistent("private keys are imported with C_UnwrapKey (PKCS#8 wrapped under a key)")
    key_type = _key_type_of(template, cls)
    forbidden = frozenset({CKA.VALUE_LEN, CKA.MODULUS_BITS})
    _check_allowed(template, cls, key_type, forbidden)
    for cka in _CREATE_REQUIRED.get((cls, key_type), ()):
        if cka not in template:
            raise TemplateIncomplete(f"CKA_{cka.name} is required to create CKO_{cls.name}")
    attrs = _with_defaults(template, cls, key_type)
    if cls in (CKO.PUBLIC_KEY, CKO.SECRET_KEY):
        _maintained(attrs, local=False, mechanism=None, always_sensitive=False, never_extractable=False)
    return attrs


def for_generate(mechanism: CKM, template: Attributes) -> Attributes:
    """Attributes of a secret key made by ``C_GenerateKey`` (PKCS#11 3.0 §5.14).

    Raises:
        TemplateIncomplete: ``CKR_TEMPLATE_INCOMPLETE`` without ``CKA_VALUE_LEN``.
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for a class or key type other than the mechanism
            makes, or ``CKA_VALUE`` given.
    """
    cls, key_type = KEYGEN_TYPES[mechanism]
    _require_class(template, cls, key_type)
    _check_allowed(template, cls, key_type, frozenset({CKA.VALUE, CKA.CHECK_VALUE}))
    if CKA.VALUE_LEN not in template:
        raise TemplateIncomplete("CKA_VALUE_LEN (key length in bytes) is required to generate a secret key")
    attrs = _with_defaults(template, cls, key_type)
    return _maintained(attrs, local=True, mechanism=mechanism)


def for_key_pair(mechanism: CKM, public: Attributes, private: Attributes) -> tuple[Attributes, Attributes]:
    """Attributes of the two keys made by ``C_GenerateKeyPair`` (PKCS#11 3.0 §5.14).

    The generation parameters (``CKA_MODULUS_BITS``, ``CKA_PUBLIC_EXPONENT``, ``CKA_EC_PARAMS``) come from the
    public template; ``CKA_EC_PARAMS`` is also accepted in the private template.

    Raises:
        TemplateIncomplete: ``CKR_TEMPLATE_INCOMPLETE`` without ``CKA_MODULUS_BITS`` (RSA) or ``CKA_EC_PARAMS``.
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for computed attributes given or a mismatched class.
    """
    key_type = KEYPAIR_TYPES[mechanism]
    _require_class(public, CKO.PUBLIC_KEY, key_type)
    _require_class(private, CKO.PRIVATE_KEY, key_type)
    computed = frozenset({CKA.MODULUS, CKA.EC_POINT, CKA.VALUE, CKA.CHECK_VALUE}) | frozenset(
        {CKA.PRIVATE_EXPONENT, CKA.PRIME_1, CKA.PRIME_2, CKA.EXPONENT_1, CKA.EXPONENT_2, CKA.COEFFICIENT})
    _check_allowed(public, CKO.PUBLIC_KEY, key_type, computed)
    _check_allowed(private, CKO.PRIVATE_KEY, key_type, computed | {CKA.PUBLIC_EXPONENT})
    if key_type is CKK.RSA and CKA.MODULUS_BITS not in public:
        raise TemplateIncomplete("CKA_MODULUS_BITS is required in the public key template")
    if key_type is not CKK.RSA:
        params = public.get(CKA.EC_PARAMS, private.get(CKA.EC_PARAMS))
        if params is None:
            raise TemplateIncomplete("CKA_EC_PARAMS is required in the public key template")
        if CKA.EC_PARAMS in public and CKA.EC_PARAMS in private and public[CKA.EC_PARAMS] != private[CKA.EC_PARAMS]:
            raise TemplateInconsistent("CKA_EC_PARAMS differs between the public and private templates")
        public = {**public, CKA.EC_PARAMS: params}
        private = {**private, CKA.EC_PARAMS: params}
    pub = _maintained(_with_defaults(public, CKO.PUBLIC_KEY, key_type), local=True, mechanism=mechanism)
    priv = _maintained(_with_defaults(private, CKO.PRIVATE_KEY, key_type), local=True, mechanism=mechanism)
    return pub, priv


def for_unwrap(template: Attributes, forced: Attributes) -> Attributes:
    """Attributes of a key made by ``C_UnwrapKey`` (PKCS#11 3.0 §5.18).

    Args:
        template: the caller's template; ``CKA_CLASS`` and ``CKA_KEY_TYPE`` are required.
        forced: the unwrapping key's ``CKA_UNWRAP_TEMPLATE``; its values are applied, and a caller value that
            differs is an inconsistency.

    Raises:
        TemplateIncomplete, TemplateInconsistent, AttributeTypeInvalid, AttributeReadOnly: as for creation.
    """
    for cka, value in forced.items():
        if cka in template and template[cka] != value:
            raise TemplateInconsistent(f"CKA_{cka.name} conflicts with the unwrapping key's CKA_UNWRAP_TEMPLATE")
    template = {**template, **forced}
    cls = _class_of(template)
    if cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY):
        raise TemplateInconsistent("only secret and private keys can be unwrapped")
    key_type = _key_type_of(template, cls)
    _check_allowed(template, cls, key_type, frozenset({CKA.VALUE, CKA.CHECK_VALUE, CKA.MODULUS, CKA.EC_POINT}))
    attrs = _with_defaults(template, cls, key_type)
    return _maintained(attrs, local=False, mechanism=None, always_sensitive=False, never_extractable=False)


def for_derive(template: Attributes, base: Attributes, *, length_required: bool = True) -> Attributes:
    """Attributes of a secret key made by ``C_DeriveKey`` (PKCS#11 3.0 §5.18).

    ``CKA_ALWAYS_SENSITIVE`` and ``CKA_NEVER_EXTRACTABLE`` carry over from the base key (true only if they were
    true for it and hold for the new key); the base key's ``CKA_DERIVE_TEMPLATE`` is applied.

    Raises:
        TemplateIncomplete: ``CKR_TEMPLATE_INCOMPLETE`` without class, key type or ``CKA_VALUE_LEN``.
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for a non-secret class or a conflict.
    """
    forced = base.get(CKA.DERIVE_TEMPLATE) or {}
    for cka, value in forced.items():
        if cka in template and template[cka] != value:
            raise TemplateInconsistent(f"CKA_{cka.name} conflicts with the base key's CKA_DERIVE_TEMPLATE")
    template = {**template, **forced}
    cls = template.get(CKA.CLASS, CKO.SECRET_KEY)
    if cls is not CKO.SECRET_KEY:
        raise TemplateInconsistent("derivation makes secret keys only")
    template = {**template, CKA.CLASS: cls}
    key_type = _key_type_of(template, cls)
    _check_allowed(template, cls, key_type, frozenset({CKA.VALUE, CKA.CHECK_VALUE}))
    if length_required and CKA.VALUE_LEN not in template:
        raise TemplateIncomplete("CKA_VALUE_LEN (key length in bytes) is required to derive a key")
    attrs = _with_defaults(template, cls, key_type)
    return _maintained(attrs, local=False, mechanism=None,
                       always_sensitive=bool(base.get(CKA.ALWAYS_SENSITIVE, False)),
                       never_extractable=bool(base.get(CKA.NEVER_EXTRACTABLE, False)))
