"""The key-management attacks on PKCS#11, one row each, for every door to walk with its own driver.

Sources: Clulow, "On the security of PKCS#11" (CHES 2003); Delaune, Kremer, Steel, "Formal analysis of PKCS#11"
(CSF 2008); Bortolozzo, Centenaro, Focardi, Steel, "Attacking and fixing PKCS#11 security tokens" (CCS 2010,
the Tookan attacks). Each row prepares what the attack needs (every preparatory step must succeed: the rules
refuse at the attack, not at creation) and returns its last step, which must answer the row's exact code.

A driver makes keys and calls the functions through one door (the node's API, the SDK, python-pkcs11 through
the agent). Attributes are ``CKA``-keyed dicts; keys are whatever the driver returns; ``code`` runs a step and
answers its ``CKR`` (``CKR.OK`` when it succeeds). Mechanisms are named: ``"aes-wrap"`` (CKM_AES_KEY_WRAP_PAD,
RFC 5649) and ``"rsa-wrap"`` (CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from strongroom.vocab import CKA, CKK, CKO, CKR


class Driver(Protocol):
    def secret(self, attrs: dict[CKA, Any]) -> Any: ...  # C_GenerateKey, CKM_AES_KEY_GEN, 32 bytes
    def pair(self, pub: dict[CKA, Any], priv: dict[CKA, Any]) -> tuple[Any, Any]: ...  # RSA-2048
    def ec_private(self, attrs: dict[CKA, Any]) -> Any: ...  # the private key of a new P-256 pair
    def wrap(self, wrapper: Any, key: Any, mech: str) -> bytes: ...
    def unwrap(self, unwrapper: Any, blob: bytes, template: dict[CKA, Any], mech: str) -> Any: ...
    def encrypt(self, key: Any, data: bytes, mech: str) -> bytes: ...
    def set(self, key: Any, attrs: dict[CKA, Any]) -> None: ...
    def copy(self, key: Any, attrs: dict[CKA, Any]) -> Any: ...
    def public_import(self, public: Any, attrs: dict[CKA, Any]) -> Any: ...  # C_CreateObject of its values
    def derive(self, base: Any, attrs: dict[CKA, Any]) -> Any: ...  # SP 800-108 counter KDF, fixed inputs
    def trust(self, key: Any) -> None: ...  # an admin sets CKA_TRUSTED
    def code(self, step: Callable[[], Any]) -> int: ...


# What applications send (python-pkcs11's defaults for AES and RSA, PyKCS11's RSA pair): accepted at creation.
APP_AES = {CKA.ENCRYPT: True, CKA.DECRYPT: True, CKA.WRAP: True, CKA.UNWRAP: True, CKA.SIGN: True,
           CKA.VERIFY: True, CKA.TOKEN: False}
APP_PUB = {CKA.ENCRYPT: True, CKA.WRAP: True, CKA.VERIFY: True, CKA.TOKEN: False}
APP_PRIV = {CKA.DECRYPT: True, CKA.UNWRAP: True, CKA.SIGN: True, CKA.TOKEN: False}
# A key made for wrapping only, and the sensitive, extractable key an attacker wants to read.
KEK = {CKA.WRAP: True, CKA.UNWRAP: True, CKA.ENCRYPT: False, CKA.DECRYPT: False, CKA.TOKEN: False}
TARGET = {CKA.SENSITIVE: True, CKA.EXTRACTABLE: True, CKA.ENCRYPT: True, CKA.TOKEN: False}
AES_SECRET = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}
KNOWN = bytes(range(32))


@dataclass(frozen=True)
class Attack:
    name: str
    source: str
    code: CKR
    run: Callable[[Driver], Callable[[], Any]]
    needs: frozenset[str] = frozenset()  # "admin", "derive": what a driver must offer


def _wrapped_target(d: Driver, **attrs: Any) -> tuple[Any, Any, bytes]:
    kek, target = d.secret(KEK), d.secret({**TARGET, **{CKA[k.upper()]: v for k, v in attrs.items()}})
    return kek, target, d.wrap(kek, target, "aes-wrap")


def _wrap_then(d: Driver, wrapper: dict[CKA, Any]) -> Any:
    w = d.secret(wrapper)
    d.wrap(w, d.secret(TARGET), "aes-wrap")
    return w


def _unwrapper_after_encrypting(d: Driver) -> tuple[Any, bytes]:
    u = d.secret(APP_AES)
    return u, d.encrypt(u, KNOWN, "aes-wrap")  # the chosen bytes the attack would unwrap


def wrap_decrypt(d: Driver) -> Callable[[], Any]:
    w, target = d.secret(APP_AES), d.secret(TARGET)
    return lambda: d.wrap(w, target, "aes-wrap")


def wrap_under_decrypting_pair(d: Driver) -> Callable[[], Any]:
    (pub, _), target = d.pair(APP_PUB, APP_PRIV), d.secret(TARGET)
    return lambda: d.wrap(pub, target, "rsa-wrap")


def public_half_imported(d: Driver) -> Callable[[], Any]:
    pub, _ = d.pair({CKA.VERIFY: True, CKA.TOKEN: False}, {CKA.DECRYPT: True, CKA.TOKEN: False})
    imported = d.public_import(pub, {CKA.WRAP: True, CKA.TOKEN: False})
    target = d.secret(TARGET)
    return lambda: d.wrap(imported, target, "rsa-wrap")


def decrypt_added_after_wrap(d: Driver) -> Callable[[], Any]:
    w = _wrap_then(d, KEK)
    return lambda: d.set(w, {CKA.DECRYPT: True})


def decrypt_cleared_and_restored(d: Driver) -> Callable[[], Any]:
    w = d.secret(APP_AES)
    d.set(w, {CKA.DECRYPT: False})
    d.wrap(w, d.secret(TARGET), "aes-wrap")
    return lambda: d.set(w, {CKA.DECRYPT: True})


def private_half_given_decrypt(d: Driver) -> Callable[[], Any]:
    pub, priv = d.pair({CKA.WRAP: True, CKA.TOKEN: False}, {CKA.SIGN: True, CKA.TOKEN: False})
    d.wrap(pub, d.secret(TARGET), "rsa-wrap")
    return lambda: d.set(priv, {CKA.DECRYPT: True})


def wrap_cleared_then_decrypt(d: Driver) -> Callable[[], Any]:
    w = _wrap_then(d, KEK)
    return lambda: d.set(w, {CKA.WRAP: False})  # then CKA_DECRYPT would read back what it wrapped


def copy_without_wrap(d: Driver) -> Callable[[], Any]:
    w = _wrap_then(d, KEK)
    return lambda: d.copy(w, {CKA.WRAP: False})  # a copy that forgot it wrapped, to be given CKA_DECRYPT


def wrap_given_beside_a_copy(d: Driver) -> Callable[[], Any]:
    k = d.secret({CKA.ENCRYPT: True, CKA.TOKEN: False})
    d.copy(k, {})  # the copy, later given CKA_DECRYPT, would read what the original wraps
    return lambda: d.set(k, {CKA.WRAP: True})


def decrypting_copy(d: Driver) -> Callable[[], Any]:
    w = _wrap_then(d, KEK)
    return lambda: d.copy(w, {CKA.DECRYPT: True})


def decrypting_reimport(d: Driver) -> Callable[[], Any]:
    kek, w = d.secret(KEK), _wrap_then(d, KEK)
    blob = d.wrap(kek, w, "aes-wrap")
    return lambda: d.unwrap(kek, blob, {**AES_SECRET, CKA.DECRYPT: True}, "aes-wrap")


def encrypt_unwrap(d: Driver) -> Callable[[], Any]:
    u, chosen = _unwrapper_after_encrypting(d)
    return lambda: d.unwrap(u, chosen, dict(AES_SECRET), "aes-wrap")


def encrypt_cleared(d: Driver) -> Callable[[], Any]:
    u, _ = _unwrapper_after_encrypting(d)
    return lambda: d.set(u, {CKA.ENCRYPT: False})


def copy_without_encrypt(d: Driver) -> Callable[[], Any]:
    u, _ = _unwrapper_after_encrypting(d)
    return lambda: d.copy(u, {CKA.ENCRYPT: False})


def unwrap_added_after_encrypt(d: Driver) -> Callable[[], Any]:
    k = d.secret({CKA.ENCRYPT: True, CKA.TOKEN: False})
    d.encrypt(k, KNOWN, "aes-wrap")
    return lambda: d.set(k, {CKA.UNWRAP: True})


def encrypt_added_to_unwrapper(d: Driver) -> Callable[[], Any]:
    k = d.secret(KEK)
    return lambda: d.set(k, {CKA.ENCRYPT: True})


def reimport_as_generic_secret(d: Driver) -> Callable[[], Any]:
    kek, _, blob = _wrapped_target(d)
    return lambda: d.unwrap(kek, blob, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}, "aes-wrap")


def private_reimported_as_secret(d: Driver) -> Callable[[], Any]:
    kek, private = d.secret(KEK), d.ec_private({CKA.EXTRACTABLE: True, CKA.TOKEN: False})
    blob = d.wrap(kek, private, "aes-wrap")
    return lambda: d.unwrap(kek, blob, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET}, "aes-wrap")


def reimport_not_sensitive(d: Driver) -> Callable[[], Any]:
    kek, _, blob = _wrapped_target(d)
    return lambda: d.unwrap(kek, blob, {**AES_SECRET, CKA.SENSITIVE: False}, "aes-wrap")


def reimport_without_wrap_with_trusted(d: Driver) -> Callable[[], Any]:
    trusted = d.secret({**KEK, CKA.TOKEN: True})
    d.trust(trusted)
    target = d.secret({**TARGET, CKA.WRAP_WITH_TRUSTED: True})
    blob = d.wrap(trusted, target, "aes-wrap")
    return lambda: d.unwrap(trusted, blob, {**AES_SECRET, CKA.WRAP_WITH_TRUSTED: False}, "aes-wrap")


def sensitive_off(d: Driver) -> Callable[[], Any]:
    k = d.secret(TARGET)
    return lambda: d.set(k, {CKA.SENSITIVE: False})


def extractable_on(d: Driver) -> Callable[[], Any]:
    k = d.secret({**TARGET, CKA.EXTRACTABLE: False})
    return lambda: d.set(k, {CKA.EXTRACTABLE: True})


def copy_not_sensitive(d: Driver) -> Callable[[], Any]:
    k = d.secret(TARGET)
    return lambda: d.copy(k, {CKA.SENSITIVE: False})


def copy_extractable(d: Driver) -> Callable[[], Any]:
    k = d.secret({**TARGET, CKA.EXTRACTABLE: False})
    return lambda: d.copy(k, {CKA.EXTRACTABLE: True})


def extractable_copy_of_unextractable(d: Driver) -> Callable[[], Any]:
    kek, target = d.secret(KEK), d.secret(TARGET)
    copy = d.copy(target, {})
    d.set(target, {CKA.EXTRACTABLE: False})
    return lambda: d.wrap(kek, copy, "aes-wrap")


def wrap_with_trusted_cleared(d: Driver) -> Callable[[], Any]:
    k = d.secret({**TARGET, CKA.WRAP_WITH_TRUSTED: True})
    return lambda: d.set(k, {CKA.WRAP_WITH_TRUSTED: False})


def wrap_with_trusted_under_untrusted(d: Driver) -> Callable[[], Any]:
    kek, k = d.secret(KEK), d.secret({**TARGET, CKA.WRAP_WITH_TRUSTED: True})
    return lambda: d.wrap(kek, k, "aes-wrap")


def session_copy_of_trusted(d: Driver) -> Callable[[], Any]:
    trusted = d.secret({**KEK, CKA.TOKEN: True})
    d.trust(trusted)
    copy = d.copy(trusted, {CKA.TOKEN: False})
    target = d.secret({**TARGET, CKA.WRAP_WITH_TRUSTED: True})
    d.wrap(trusted, target, "aes-wrap")  # the trusted key itself wraps it
    return lambda: d.wrap(copy, target, "aes-wrap")


def derived_twice(d: Driver) -> Callable[[], Any]:
    base = d.secret({CKA.DERIVE: True, CKA.TOKEN: False})
    d.derive(base, {**AES_SECRET, CKA.VALUE_LEN: 32, CKA.WRAP: True, CKA.TOKEN: False})
    return lambda: d.derive(base, {**AES_SECRET, CKA.VALUE_LEN: 32, CKA.DECRYPT: True, CKA.TOKEN: False})


_DKS, _TOOKAN, _CLULOW = "Delaune-Kremer-Steel 2008", "Bortolozzo et al. 2010 (Tookan)", "Clulow 2003"
ATTACKS: tuple[Attack, ...] = (
    Attack("wrap a sensitive key, then decrypt the bytes with the same key", _CLULOW, CKR.KEY_NOT_WRAPPABLE,
           wrap_decrypt),
    Attack("wrap under a public key whose private half decrypts", _CLULOW, CKR.KEY_NOT_WRAPPABLE,
           wrap_under_decrypting_pair),
    Attack("import the public half with CKA_WRAP beside a decrypting private half", _TOOKAN,
           CKR.KEY_NOT_WRAPPABLE, public_half_imported),
    Attack("wrap, then give the wrapping key CKA_DECRYPT", _DKS, CKR.ATTRIBUTE_READ_ONLY, decrypt_added_after_wrap),
    Attack("clear CKA_DECRYPT, wrap, set it back", _DKS, CKR.ATTRIBUTE_READ_ONLY, decrypt_cleared_and_restored),
    Attack("wrap under the public half, then give the private half CKA_DECRYPT", _DKS, CKR.ATTRIBUTE_READ_ONLY,
           private_half_given_decrypt),
    Attack("wrap, then clear CKA_WRAP to give CKA_DECRYPT", _DKS, CKR.ATTRIBUTE_READ_ONLY, wrap_cleared_then_decrypt),
    Attack("wrap, then copy without CKA_WRAP to give CKA_DECRYPT", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY,
           copy_without_wrap),
    Attack("give CKA_WRAP to a key that has a copy", _TOOKAN, CKR.TEMPLATE_INCONSISTENT, wrap_given_beside_a_copy),
    Attack("a decrypting copy of the wrapping key", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY, decrypting_copy),
    Attack("re-import the wrapping key with CKA_DECRYPT (two handles, one value)", _TOOKAN,
           CKR.ATTRIBUTE_READ_ONLY, decrypting_reimport),
    Attack("encrypt chosen bytes, unwrap them as a key of known value", _DKS, CKR.KEY_FUNCTION_NOT_PERMITTED,
           encrypt_unwrap),
    Attack("encrypt, then clear CKA_ENCRYPT to unwrap", _DKS, CKR.ATTRIBUTE_READ_ONLY, encrypt_cleared),
    Attack("encrypt, then copy without CKA_ENCRYPT to unwrap", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY,
           copy_without_encrypt),
    Attack("encrypt, then give the key CKA_UNWRAP", _DKS, CKR.ATTRIBUTE_READ_ONLY, unwrap_added_after_encrypt),
    Attack("give an unwrapping key CKA_ENCRYPT", _DKS, CKR.TEMPLATE_INCONSISTENT, encrypt_added_to_unwrapper),
    Attack("re-import a wrapped AES key as a generic secret", _TOOKAN, CKR.TEMPLATE_INCONSISTENT,
           reimport_as_generic_secret),
    Attack("re-import a wrapped private key as a secret key", _TOOKAN, CKR.TEMPLATE_INCONSISTENT,
           private_reimported_as_secret),
    Attack("re-import a wrapped sensitive key as not sensitive", _CLULOW, CKR.ATTRIBUTE_READ_ONLY,
           reimport_not_sensitive),
    Attack("re-import a CKA_WRAP_WITH_TRUSTED key without it", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY,
           reimport_without_wrap_with_trusted, frozenset({"admin"})),
    Attack("turn CKA_SENSITIVE off", _CLULOW, CKR.ATTRIBUTE_READ_ONLY, sensitive_off),
    Attack("turn CKA_EXTRACTABLE on", _CLULOW, CKR.ATTRIBUTE_READ_ONLY, extractable_on),
    Attack("a copy that is not sensitive", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY, copy_not_sensitive),
    Attack("a copy that is extractable", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY, copy_extractable),
    Attack("wrap an extractable copy of a key made unextractable", _TOOKAN, CKR.KEY_UNEXTRACTABLE,
           extractable_copy_of_unextractable),
    Attack("clear CKA_WRAP_WITH_TRUSTED", _TOOKAN, CKR.ATTRIBUTE_READ_ONLY, wrap_with_trusted_cleared),
    Attack("wrap a CKA_WRAP_WITH_TRUSTED key under an untrusted key", _TOOKAN, CKR.KEY_NOT_WRAPPABLE,
           wrap_with_trusted_under_untrusted),
    Attack("wrap with a session copy of a trusted key", _TOOKAN, CKR.KEY_NOT_WRAPPABLE, session_copy_of_trusted,
           frozenset({"admin"})),
    Attack("derive one value twice: once to wrap, once to decrypt", _DKS, CKR.ATTRIBUTE_READ_ONLY, derived_twice,
           frozenset({"derive"})),
)
