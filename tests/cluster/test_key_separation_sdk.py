"""Every key-management attack of ``tests/node/separation_attacks.py`` through the SDK against a real node, each
with its exact code (src/strongroom/objects/separation.py; docs/pkcs11.md "Key separation")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import strongroom.client as sdk
from strongroom.client import Key
from strongroom.errors import StrongroomError
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR

from ..fixtures.cluster import ADMIN_PW
from ..node.separation_attacks import ATTACKS, Attack
from ..node.test_key_separation import KDF, MECHANISMS

P256 = bytes.fromhex("06082a8648ce3d030107")


class SdkDriver:
    """The attacks' driver over the SDK: a crypto user's session, and an admin's to mark keys trusted."""

    def __init__(self, session: Any, admin: Any) -> None:
        self.session, self.admin = session, admin

    def secret(self, attrs: dict[CKA, Any]) -> Key:
        return self.session.generate_key(CKM.AES_KEY_GEN, {CKA.VALUE_LEN: 32, **attrs})

    def pair(self, pub: dict[CKA, Any], priv: dict[CKA, Any]) -> tuple[Key, Key]:
        return self.session.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 2048, **pub}, priv)

    def ec_private(self, attrs: dict[CKA, Any]) -> Key:
        return self.session.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256},
                                              {CKA.SIGN: True, **attrs})[1]

    def wrap(self, wrapper: Key, key: Key, mech: str) -> bytes:
        return wrapper.wrap(key, MECHANISMS[mech])

    def unwrap(self, unwrapper: Key, blob: bytes, template: dict[CKA, Any], mech: str) -> Key:
        return self.session.unwrap(MECHANISMS[mech], unwrapper, blob, {CKA.TOKEN: False, **template})

    def encrypt(self, key: Key, data: bytes, mech: str) -> bytes:
        return key.encrypt(data, MECHANISMS[mech])

    def set(self, key: Key, attrs: dict[CKA, Any]) -> None:
        key.set(attrs)

    def copy(self, key: Key, attrs: dict[CKA, Any]) -> Key:
        return self.session.key(self.session.call("copy_object", key.handle, {int(k): v for k, v in attrs.items()}))

    def public_import(self, public: Key, attrs: dict[CKA, Any]) -> Key:
        values = public.get(CKA.MODULUS, CKA.PUBLIC_EXPONENT)
        return self.session.create_object({CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA, **values, **attrs})

    def derive(self, base: Key, attrs: dict[CKA, Any]) -> Key:
        return base.derive(KDF, attrs)

    def trust(self, key: Key) -> None:
        self.admin.key(key.handle).set({CKA.TRUSTED: True})

    @staticmethod
    def code(step: Callable[[], Any]) -> int:
        try:
            step()
        except StrongroomError as exc:
            return int(exc.ckr)
        return int(CKR.OK)


@pytest.fixture(scope="module")
def driver(node, alice):
    with sdk.connect(node[1]) as other:  # an application is logged in as one user type
        admin = other.login("admin", ADMIN_PW, role="admin")
        yield SdkDriver(alice, admin)
        admin.close()


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_each_attack_is_refused_through_the_sdk_with_its_code(driver, attack: Attack):
    assert CKR(driver.code(attack.run(driver))) is attack.code
