"""Key separation where the attacks happen (src/strongroom/objects/separation.py), through the node's API: every
attack of ``separation_attacks.ATTACKS`` with its exact code, the templates applications send accepted, and what
stays allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strongroom.errors import StrongroomError
from strongroom.mechanism_params import (
    CounterFormat,
    Mechanism,
    OaepParams,
    PrfDataParam,
    Sp800108Params,
)
from strongroom.vocab import CK_SP800_108, CKA, CKG, CKK, CKM, CKO, CKR

from .keys import P256
from .separation_attacks import AES_SECRET, APP_AES, APP_PRIV, APP_PUB, ATTACKS, KEK, TARGET, Attack

MECHANISMS = {"aes-wrap": Mechanism(CKM.AES_KEY_WRAP_PAD),
              "rsa-wrap": Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256))}
KDF = Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(int(CKM.AES_CMAC), [
    PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(False, 32)),
    PrfDataParam(CK_SP800_108.BYTE_ARRAY, b"one value, twice")]))


class NodeDriver:
    """The attacks' driver over :class:`strongroom.node.Application` (the user and an admin, logged in)."""

    def __init__(self, who: Any, admin: Any) -> None:
        self.app, self.s, self.admin = who.app, who.s, admin

    def secret(self, attrs: dict[CKA, Any]) -> int:
        return self.app.generate_key(self.s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 32, **attrs})

    def pair(self, pub: dict[CKA, Any], priv: dict[CKA, Any]) -> tuple[int, int]:
        return self.app.generate_key_pair(self.s, Mechanism(CKM.RSA_PKCS_KEY_PAIR_GEN),
                                          {CKA.MODULUS_BITS: 2048, **pub}, priv)

    def ec_private(self, attrs: dict[CKA, Any]) -> int:
        return self.app.generate_key_pair(self.s, Mechanism(CKM.EC_KEY_PAIR_GEN), {CKA.EC_PARAMS: P256},
                                          {CKA.SIGN: True, **attrs})[1]

    def wrap(self, wrapper: int, key: int, mech: str) -> bytes:
        return self.app.wrap_key(self.s, MECHANISMS[mech], wrapper, key)

    def unwrap(self, unwrapper: int, blob: bytes, template: dict[CKA, Any], mech: str) -> int:
        return self.app.unwrap_key(self.s, MECHANISMS[mech], unwrapper, blob, {CKA.TOKEN: False, **template})

    def encrypt(self, key: int, data: bytes, mech: str) -> bytes:
        self.app.encrypt_init(self.s, MECHANISMS[mech], key)
        return self.app.encrypt(self.s, data)

    def set(self, key: int, attrs: dict[CKA, Any]) -> None:
        self.app.set_attribute_value(self.s, key, attrs)

    def copy(self, key: int, attrs: dict[CKA, Any]) -> int:
        return self.app.copy_object(self.s, key, attrs)

    def public_import(self, public: int, attrs: dict[CKA, Any]) -> int:
        values = self.app.get_attributes(self.s, public, [CKA.MODULUS, CKA.PUBLIC_EXPONENT])
        return self.app.create_object(self.s, {CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA, **values, **attrs})

    def derive(self, base: int, attrs: dict[CKA, Any]) -> int:
        return self.app.derive_key(self.s, KDF, base, attrs)

    def trust(self, key: int) -> None:
        self.admin.app.set_attribute_value(self.admin.s, key, {CKA.TRUSTED: True})

    @staticmethod
    def code(step: Callable[[], Any]) -> int:
        try:
            step()
        except StrongroomError as exc:
            return int(exc.ckr)
        return int(CKR.OK)


@pytest.fixture
def driver(hsm, alice, admin) -> NodeDriver:
    return NodeDriver(alice, admin)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_each_attack_is_refused_at_its_last_step_with_its_code(driver, attack: Attack):
    assert CKR(driver.code(attack.run(driver))) is attack.code


def test_the_templates_applications_send_are_accepted_and_their_keys_work(driver):
    """python-pkcs11's default AES and RSA capabilities, PyKCS11's RSA pair: made, and used for data."""
    aes = driver.secret(APP_AES)
    pub, priv = driver.pair(APP_PUB, APP_PRIV)
    assert len(driver.encrypt(aes, bytes(32), "aes-wrap")) == 40
    ciphertext = driver.encrypt(pub, b"data", "rsa-wrap")
    driver.app.decrypt_init(driver.s, MECHANISMS["rsa-wrap"], priv)
    assert driver.app.decrypt(driver.s, ciphertext) == b"data"
    # a key that is not sensitive may still be wrapped under them: nothing is read that was not readable
    plain = driver.secret({CKA.SENSITIVE: False, CKA.TOKEN: False})
    assert len(driver.wrap(aes, plain, "aes-wrap")) == 40
    assert len(driver.wrap(pub, plain, "rsa-wrap")) == 256


def test_wrapping_keys_made_for_wrapping_still_wrap_unwrap_and_reimport(driver):
    kek, target = driver.secret(KEK), driver.secret(TARGET)
    blob = driver.wrap(kek, target, "aes-wrap")
    again = driver.unwrap(kek, blob, {**AES_SECRET, CKA.ENCRYPT: True}, "aes-wrap")  # the usages it had
    assert driver.app.get_attributes(driver.s, again, [CKA.SENSITIVE, CKA.ENCRYPT]) == {
        CKA.SENSITIVE: True, CKA.ENCRYPT: True}
    pub, priv = driver.pair({CKA.WRAP: True, CKA.TOKEN: False}, {CKA.UNWRAP: True, CKA.TOKEN: False})
    moved = driver.unwrap(priv, driver.wrap(pub, target, "rsa-wrap"), {**AES_SECRET, CKA.ENCRYPT: True}, "rsa-wrap")
    assert driver.copy(moved, {CKA.LABEL: "copy", CKA.EXTRACTABLE: False}) > 0
    # usages change as applications ask, short of reading back what a key wrapped
    driver.set(kek, {CKA.SIGN: False, CKA.UNWRAP: False})
    driver.set(target, {CKA.DECRYPT: True})  # it never wrapped
    driver.set(target, {CKA.DECRYPT: False, CKA.ENCRYPT: False})
    lone = driver.secret({CKA.TOKEN: False})
    driver.set(lone, {CKA.WRAP: True})  # no other key holds its value


def test_a_trusted_key_wraps_wrap_with_trusted_keys_and_its_copies_are_not_trusted(driver):
    trusted = driver.secret({**KEK, CKA.TOKEN: True})
    driver.trust(trusted)
    copy = driver.copy(trusted, {CKA.TOKEN: False})
    assert driver.app.get_attributes(driver.s, copy, [CKA.TRUSTED])[CKA.TRUSTED] is False
    guarded = driver.secret({**TARGET, CKA.WRAP_WITH_TRUSTED: True})
    assert len(driver.wrap(trusted, guarded, "aes-wrap")) == 40


def test_a_key_judged_against_its_family_is_not_made_if_the_family_changed_meanwhile(hsm, alice):
    """The race of a copy that gains CKA_DECRYPT from a member that loses it at once: a new key expects the token
    keys it was judged against unchanged when the log applies it (``CKR_FUNCTION_FAILED``, retry)."""
    driver = NodeDriver(alice, None)
    both = driver.secret({**APP_AES, CKA.TOKEN: True})
    source = hsm.repository.get_object(both)
    family = driver.app._family(source)  # judged: the family decrypts, so a decrypting copy may be made
    driver.set(both, {CKA.DECRYPT: False})  # meanwhile the family stops decrypting (and may now wrap)
    for token in (False, True):  # checked by the node (a session copy) or by the replicated log (a token copy)
        made = [({**source.attrs, CKA.TOKEN: token}, source.material)]
        assert driver.code(lambda m=made: driver.app._create_objects(
            driver.app.sessions[driver.s], m, "object-copy", None, family=family)) == CKR.FUNCTION_FAILED
    assert CKR(driver.code(lambda: driver.copy(both, {CKA.DECRYPT: True}))) is CKR.ATTRIBUTE_READ_ONLY
