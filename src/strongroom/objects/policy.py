"""The PKCS#11 rules on using, reading, changing and wrapping an object.

Every check raises the exact ``CKR_*`` the standard names (PKCS#11 3.0 §4.1.2, §4.9–§4.10 footnotes,
§5.7 C_GetAttributeValue/C_SetAttributeValue, §5.18 C_WrapKey). Who may do it (owner, shared user, admin) is
decided by the node; these functions judge the object and the attribute values.
"""

from __future__ import annotations

from typing import Any

from ..attribute_kinds import KINDS, Kind
from ..errors import (
    ActionProhibited,
    AttributeReadOnly,
    AttributeSensitive,
    AttributeTypeInvalid,
    AttributeValueInvalid,
    KeyFunctionNotPermitted,
    KeyNotWrappable,
    KeyUnextractable,
)
from ..vocab import CKA, CKM, CKO
from .attributes import RSA_PRIVATE_COMPONENTS, Attributes, valid_attributes
from .model import HsmObject

# Attributes that may change after creation, and in which direction (None: freely).
_CHANGEABLE: dict[CKA, bool | None] = {
    CKA.LABEL: None, CKA.ID: None, CKA.SUBJECT: None, CKA.START_DATE: None, CKA.END_DATE: None,
    CKA.ENCRYPT: None, CKA.DECRYPT: None, CKA.SIGN: None, CKA.VERIFY: None, CKA.WRAP: None, CKA.UNWRAP: None,
    CKA.DERIVE: None, CKA.APPLICATION: None, CKA.OBJECT_ID: None, CKA.WRAP_TEMPLATE: None,
    CKA.UNWRAP_TEMPLATE: None, CKA.DERIVE_TEMPLATE: None, CKA.DESTROYABLE: None, CKA.ALLOWED_MECHANISMS: None,
    CKA.URL: None, CKA.CERTIFICATE_CATEGORY: None,
    # one-way switches: only to the stated value (§4.9 footnote 11, §4.10 footnote 9, CKA_WRAP_WITH_TRUSTED)
    CKA.SENSITIVE: True, CKA.EXTRACTABLE: False, CKA.WRAP_WITH_TRUSTED: True, CKA.MODIFIABLE: False,
    CKA.COPYABLE: False,
}


def secret_attributes(obj: HsmObject) -> frozenset[CKA]:
    """The attributes of ``obj`` that hold key material (``CKA_VALUE`` of keys, RSA private components)."""
    if obj.cls is CKO.SECRET_KEY:
        return frozenset({CKA.VALUE})
    if obj.cls is CKO.PRIVATE_KEY:
        return RSA_PRIVATE_COMPONENTS | {CKA.VALUE}
    return frozenset()


def read(obj: HsmObject, cka: CKA) -> Any:
    """Return the value of one attribute as ``C_GetAttributeValue`` may reveal it (PKCS#11 3.0 §5.7).

    Key material is never returned: a secret key's or private key's components raise ``CKR_ATTRIBUTE_SENSITIVE``
    whether or not the key is marked sensitive, since Strongroom exports keys only wrapped.
    An attribute valid for the class but never set reads as an empty value.

    Raises:
        AttributeSensitive: ``CKR_ATTRIBUTE_SENSITIVE`` for key material.
        AttributeTypeInvalid: ``CKR_ATTRIBUTE_TYPE_INVALID`` for an attribute the object's class does not have.
    """
    if cka in secret_attributes(obj):
        raise AttributeSensitive(f"CKA_{cka.name} is key material and never leaves the HSM in clear")
    if cka in obj.attrs:
        return obj.attrs[cka]
    if cka is CKA.UNIQUE_ID:
        return f"{obj.handle:x}"  # PKCS#11 3.0 §4.4: token-assigned, unique (objects made before it was stored)
    if cka in valid_attributes(obj.cls, obj.key_type):
        if cka in _UNSET_DEFAULTS:
            return _UNSET_DEFAULTS[cka]
        if KINDS[cka] in _EMPTY:
            return _EMPTY[KINDS[cka]]
        raise AttributeTypeInvalid(f"CKA_{cka.name} has no value on this object")
    raise AttributeTypeInvalid(f"CKA_{cka.name} is not an attribute of CKO_{obj.cls.name}")


_EMPTY = {Kind.BYTES: b"", Kind.STRING: "", Kind.DATE: "", Kind.TEMPLATE: {}, Kind.MECHANISMS: []}
# Values the standard gives attributes a template left out (PKCS#11 3.0 §4.6.3: the name hash is SHA-1).
_UNSET_DEFAULTS = {CKA.NAME_HASH_ALGORITHM: CKM.SHA_1}


def check_set(obj: HsmObject, changes: Attributes, *, admin: bool) -> Attributes:
    """Validate a ``C_SetAttributeValue`` and return the object's new attribute set (PKCS#11 3.0 §5.7).

    Args:
        obj: the object as stored.
        changes: normalised attribute values to set.
        admin: whether the caller is an admin; only an admin may set ``CKA_TRUSTED``, and only that.

    Raises:
        ActionProhibited: ``CKR_ACTION_PROHIBITED`` when ``CKA_MODIFIABLE`` is false.
        AttributeReadOnly: ``CKR_ATTRIBUTE_READ_ONLY`` for an attribute that cannot change, or changes the
            wrong way (``CKA_EXTRACTABLE`` back to true, ``CKA_SENSITIVE`` back to false), or ``CKA_TRUSTED`` set
            by a non-admin.
        AttributeTypeInvalid: ``CKR_ATTRIBUTE_TYPE_INVALID`` for an attribute the class does not have.
    """
    valid = valid_attributes(obj.cls, obj.key_type)
    if admin:
        if set(changes) - {CKA.TRUSTED}:
            raise AttributeReadOnly("an admin may only set CKA_TRUSTED")
        if CKA.TRUSTED not in valid:
            raise AttributeTypeInvalid(f"CKA_TRUSTED is not an attribute of CKO_{obj.cls.name}")
        return {**obj.attrs, **changes}
    if not obj.flag(CKA.MODIFIABLE):
        raise ActionProhibited("the object has CKA_MODIFIABLE false")
    for cka, value in changes.items():
        if cka not in valid:
            raise AttributeTypeInvalid(f"CKA_{cka.name} is not an attribute of CKO_{obj.cls.name}")
        if cka is CKA.TRUSTED:
            raise AttributeReadOnly("only an admin may set CKA_TRUSTED")
        if cka not in _CHANGEABLE:
            raise AttributeReadOnly(f"CKA_{cka.name} cannot change after the object is made")
        direction = _CHANGEABLE[cka]
        current = obj.attrs.get(cka)
        if direction is not None and value != current and value != direction:
            raise AttributeReadOnly(f"CKA_{cka.name} can only change to {str(direction).lower()}")
        if cka is CKA.WRAP_WITH_TRUSTED and current and not value:
            raise AttributeReadOnly("CKA_WRAP_WITH_TRUSTED cannot be cleared once set")
    return {**obj.attrs, **changes}


def require_usage(obj: HsmObject, usage: CKA, mechanism: int) -> None:
    """Check that a key may be used for one function with one mechanism.

    Args:
        usage: ``CKA.ENCRYPT``, ``CKA.DECRYPT``, ``CKA.SIGN``, ``CKA.VERIFY``, ``CKA.WRAP``, ``CKA.UNWRAP`` or
            ``CKA.DERIVE``.
        mechanism: the ``CKM`` requested, checked against ``CKA_ALLOWED_MECHANISMS`` when that list is set.

    Raises:
        KeyFunctionNotPermitted: ``CKR_KEY_FUNCTION_NOT_PERMITTED`` when the usage flag is false or the mechanism
            is not allowed.
    """
    if not obj.flag(usage):
        raise KeyFunctionNotPermitted(f"the key has CKA_{usage.name} false")
    allowed = obj.attrs.get(CKA.ALLOWED_MECHANISMS) or []
    if allowed and int(mechanism) not in allowed:
        raise KeyFunctionNotPermitted("the mechanism is not in the key's CKA_ALLOWED_MECHANISMS")


def require_wrappable(target: HsmObject, wrapping_key: HsmObject) -> None:
    """Check the target key may be wrapped by this wrapping key (PKCS#11 3.0 §5.18, §4.9–§4.10).

    Raises:
        KeyUnextractable: ``CKR_KEY_UNEXTRACTABLE`` when the target has ``CKA_EXTRACTABLE`` false.
        KeyNotWrappable: ``CKR_KEY_NOT_WRAPPABLE`` when the target is not a secret or private key, has
            ``CKA_WRAP_WITH_TRUSTED`` and the wrapping key is not trusted, or does not match the wrapping key's
            ``CKA_WRAP_TEMPLATE``.
    """
    if target.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY):
        raise KeyNotWrappable("only secret and private keys can be wrapped")
    if not target.flag(CKA.EXTRACTABLE):
        raise KeyUnextractable("the key has CKA_EXTRACTABLE false")
    if target.flag(CKA.WRAP_WITH_TRUSTED) and not wrapping_key.flag(CKA.TRUSTED):
        raise KeyNotWrappable("the key has CKA_WRAP_WITH_TRUSTED and the wrapping key is not CKA_TRUSTED")
    for cka, value in (wrapping_key.attrs.get(CKA.WRAP_TEMPLATE) or {}).items():
        if target.attrs.get(cka) != value:
            raise KeyNotWrappable(f"the key does not match the wrapping key's CKA_WRAP_TEMPLATE (CKA_{cka.name})")


def check_value_len(obj_attrs: Attributes, length: int) -> None:
    """Check a given ``CKA_VALUE_LEN`` against the actual key length in bytes.

    Raises:
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` on a mismatch.
    """
    given = obj_attrs.get(CKA.VALUE_LEN)
    if given is not None and given != length:
        raise AttributeValueInvalid(f"CKA_VALUE_LEN is {given} but the key is {length} bytes")
