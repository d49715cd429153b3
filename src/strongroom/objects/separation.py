"""Key separation where the attacks happen: the checks of ``C_WrapKey``, ``C_UnwrapKey`` and of every change that
makes or alters a key holding a value some other key already holds.

A template may give a key any usages (PKCS#11 3.0 §4.9–§4.10: applications' defaults put ``CKA_WRAP`` beside
``CKA_DECRYPT``); what the key-management attacks on PKCS#11 need is refused at the call that performs them
(Clulow, "On the security of PKCS#11", CHES 2003; Delaune, Kremer, Steel, "Formal analysis of PKCS#11", CSF 2008;
Bortolozzo, Centenaro, Focardi, Steel, "Attacking and fixing PKCS#11 security tokens", CCS 2010). The rules judge
a key's **family**: every key in the HSM that holds the same value (copies, re-imports, the two halves of an RSA
pair), since an attack that cannot use one handle for both steps uses two handles to one value.

The rules, one set:

1. A sensitive key (any member of its family ``CKA_SENSITIVE``) is not wrapped under a key whose family can
   decrypt: ``CKR_KEY_NOT_WRAPPABLE``.
2. A secret key whose family can encrypt does not unwrap: ``CKR_KEY_FUNCTION_NOT_PERMITTED``.
3. ``CKA_WRAP`` stays once a key has it, is held by all of a family's secret and public keys or by none
   (a copy or re-import keeps it: ``CKR_ATTRIBUTE_READ_ONLY``; it is given only to a key no other key shares
   a value with: ``CKR_TEMPLATE_INCONSISTENT``), and no change (``C_SetAttributeValue``, ``C_CopyObject``, a
   re-import by ``C_UnwrapKey`` or ``C_DeriveKey``) brings ``CKA_DECRYPT`` to a family that wraps; on secret
   keys ``CKA_UNWRAP`` is given only when the key is made: ``CKR_ATTRIBUTE_READ_ONLY``. So a key that wrapped
   (or encrypted) never later gets the means to read it back.
4. No change gives ``CKA_ENCRYPT`` to a secret-key family that unwraps (``CKR_TEMPLATE_INCONSISTENT``), and a key
   of a family that both encrypts and unwraps keeps ``CKA_ENCRYPT`` as long as it keeps ``CKA_UNWRAP``
   (``CKR_ATTRIBUTE_READ_ONLY``): rule 2 then holds for it for good. (Anyone encrypts under an RSA public key:
   an RSA key pair that unwraps imports what its sender chose, as key transport means to.)
5. The flags that guard a value hold for its whole family: no member is wrapped while one is
   ``CKA_EXTRACTABLE`` false (``CKR_KEY_UNEXTRACTABLE``) or, while one has ``CKA_WRAP_WITH_TRUSTED``, under a key
   that is not a token key marked ``CKA_TRUSTED`` (``CKR_KEY_NOT_WRAPPABLE``); a new member (copy, re-import) keeps
   ``CKA_SENSITIVE``, ``CKA_WRAP_WITH_TRUSTED``, ``CKA_WRAP`` and ``CKA_EXTRACTABLE`` false
   (``CKR_ATTRIBUTE_READ_ONLY``) and is of the family's class and key type (``CKR_TEMPLATE_INCONSISTENT``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import (
    AttributeReadOnly,
    KeyFunctionNotPermitted,
    KeyNotWrappable,
    KeyUnextractable,
    TemplateInconsistent,
)
from ..vocab import CKA, CKO
from .attributes import Attributes
from .model import HsmObject

_GUARDS = ((CKA.SENSITIVE, True), (CKA.WRAP_WITH_TRUSTED, True), (CKA.EXTRACTABLE, False), (CKA.WRAP, True))
_WRAPPING_CLASSES = (CKO.SECRET_KEY, CKO.PUBLIC_KEY)


def _holds(members: Iterable[Attributes], cka: CKA) -> bool:
    return any(bool(m.get(cka)) for m in members)


def check_wrap(target_family: Sequence[HsmObject], wrapper: HsmObject, wrapper_family: Sequence[HsmObject]) -> None:
    """Rules 1 and 5 for ``C_WrapKey`` (PKCS#11 3.0 §5.18).

    Args:
        target_family: the key to wrap and every key holding its value (the key itself included).
        wrapper: the wrapping key.
        wrapper_family: every key holding the wrapping key's value, or for an RSA public key the private keys of
            its modulus (the wrapping key included).

    Raises:
        KeyUnextractable: ``CKR_KEY_UNEXTRACTABLE`` when a member is ``CKA_EXTRACTABLE`` false.
        KeyNotWrappable: ``CKR_KEY_NOT_WRAPPABLE`` for a sensitive key under a key whose family decrypts, or a
            ``CKA_WRAP_WITH_TRUSTED`` family under a key that is not a trusted token key.
    """
    attrs = [m.attrs for m in target_family]
    if any(not m.get(CKA.EXTRACTABLE, True) for m in attrs):
        raise KeyUnextractable("the key (or a copy of its value) has CKA_EXTRACTABLE false")
    if _holds(attrs, CKA.WRAP_WITH_TRUSTED) and not (wrapper.flag(CKA.TRUSTED) and wrapper.is_token):
        raise KeyNotWrappable("the key has CKA_WRAP_WITH_TRUSTED and the wrapping key is not a CKA_TRUSTED token key")
    if _holds(attrs, CKA.SENSITIVE) and _holds((m.attrs for m in wrapper_family), CKA.DECRYPT):
        raise KeyNotWrappable("a sensitive key is not wrapped under a key that (or whose other half, or a copy) "
                              "can decrypt: the wrapped bytes could be decrypted in clear; wrap with a key made "
                              "for wrapping only")


def check_unwrap(unwrapper: HsmObject, unwrapper_family: Sequence[HsmObject]) -> None:
    """Rule 2 for ``C_UnwrapKey``: a secret key that can encrypt chosen bytes would import them as a key of
    known value.

    Raises:
        KeyFunctionNotPermitted: ``CKR_KEY_FUNCTION_NOT_PERMITTED``.
    """
    if unwrapper.cls is CKO.SECRET_KEY and _holds((m.attrs for m in unwrapper_family), CKA.ENCRYPT):
        raise KeyFunctionNotPermitted("a key that (or a copy of which) can encrypt does not unwrap: it would "
                                      "import chosen bytes as a key of known value; unwrap with a key made for "
                                      "unwrapping only")


def _check_wrap_sticks(before: Sequence[Attributes], after: Sequence[Attributes]) -> None:
    """``CKA_WRAP`` stays on a key that has it, and a family holds it in every key that can hold it (secret and
    public keys) or in none: so a family that ever wrapped still shows it, and rule 3 can tell."""
    for old, new in zip(before, after, strict=False):
        if old.get(CKA.WRAP) and not new.get(CKA.WRAP):
            raise AttributeReadOnly("CKA_WRAP stays on a key that has it: what it wrapped is still out there")
    for index, new in enumerate(after):
        gained = new.get(CKA.WRAP) and (index >= len(before) or not before[index].get(CKA.WRAP))
        if gained and any(not m.get(CKA.WRAP) for i, m in enumerate(after)
                          if i != index and m.get(CKA.CLASS) in _WRAPPING_CLASSES):
            raise TemplateInconsistent("CKA_WRAP cannot be given to a key whose value other keys (copies, the "
                                       "public half's imports) hold without it: make a key for wrapping")


def check_change(before: Sequence[Attributes], after: Sequence[Attributes]) -> None:
    """Rules 3 and 4 for a change to a family: a member changed, or a member added.

    Args:
        before: the attributes of the family's members before the change (empty for a value new to the HSM).
        after: the attributes of the members after it.

    Raises:
        AttributeReadOnly: ``CKR_ATTRIBUTE_READ_ONLY`` for ``CKA_DECRYPT`` brought to a family that wraps,
            ``CKA_UNWRAP`` brought to a secret-key family that did not hold it, ``CKA_WRAP`` taken away, or
            ``CKA_ENCRYPT`` taken from a key that unwraps in a family that encrypts.
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for ``CKA_ENCRYPT`` brought to a family that unwraps,
            or ``CKA_WRAP`` given to a key whose value other keys hold without it.
    """
    if not before:
        return
    secret = any(m.get(CKA.CLASS) is CKO.SECRET_KEY for m in after)
    _check_wrap_sticks(before, after)
    if _holds(after, CKA.DECRYPT) and not _holds(before, CKA.DECRYPT) and _holds(after, CKA.WRAP):
        raise AttributeReadOnly("CKA_DECRYPT cannot be given to a key that (or whose other half, or a copy) wraps: "
                                "what it wrapped would be decrypted in clear")
    if secret and _holds(after, CKA.UNWRAP) and not _holds(before, CKA.UNWRAP):
        raise AttributeReadOnly("CKA_UNWRAP is given when a secret key is made, not later: a key that could have "
                                "encrypted chosen bytes never gets the means to unwrap them")
    if not secret:
        return  # anyone encrypts under a public key: rules 2 and 4 are for secret keys
    unwraps = _holds(before, CKA.UNWRAP) or _holds(after, CKA.UNWRAP)
    if unwraps and _holds(after, CKA.ENCRYPT) and not _holds(before, CKA.ENCRYPT):
        raise TemplateInconsistent("CKA_ENCRYPT cannot be added to a key that (or a copy of which) unwraps: "
                                   "chosen bytes encrypted under it would unwrap as a key of known value")
    if _holds(before, CKA.ENCRYPT) and _holds(before, CKA.UNWRAP):
        for member in after:
            if member.get(CKA.UNWRAP) and not member.get(CKA.ENCRYPT):
                raise AttributeReadOnly("a key that both encrypted and unwraps keeps CKA_ENCRYPT while it has "
                                        "CKA_UNWRAP: clear CKA_UNWRAP too")


def check_new_member(new: Attributes, family: Sequence[HsmObject]) -> None:
    """Rule 5 for a key that joins a family (a copy, a re-import by ``C_UnwrapKey``, a derivation that gives a
    value the HSM holds), then rules 3 and 4 for the family with it. Not for ``C_CreateObject``: whoever gives a
    value in clear knows it.

    Raises:
        TemplateInconsistent: ``CKR_TEMPLATE_INCONSISTENT`` for a class or key type other than the family's.
        AttributeReadOnly: ``CKR_ATTRIBUTE_READ_ONLY`` for a guard flag the family holds and the new key drops.
    """
    if not family:
        return
    for member in family:
        if member.cls is new.get(CKA.CLASS) and member.key_type is new.get(CKA.KEY_TYPE):
            continue
        if {member.cls, new.get(CKA.CLASS)} == {CKO.PUBLIC_KEY, CKO.PRIVATE_KEY}:
            continue  # the two halves of a pair
        key_type = member.key_type.name if member.key_type is not None else "none"
        raise TemplateInconsistent(f"the HSM holds this value as a CKO_{member.cls.name} of CKK_{key_type}: "
                                   "it is not taken in as another type")
    attrs = [m.attrs for m in family if m.cls is new.get(CKA.CLASS)]
    for cka, guarded in _GUARDS:
        if any(bool(m.get(cka, not guarded)) is guarded for m in attrs) and bool(new.get(cka)) is not guarded:
            raise AttributeReadOnly(f"CKA_{cka.name} stays {str(guarded).lower()} for every key holding a value "
                                    "that has it")
    check_change([m.attrs for m in family], [*(m.attrs for m in family), new])
