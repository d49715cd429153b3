"""What an application no user is logged in to may do: the catalogue's ``before_login`` calls, and public session
objects only, up to their caps. Each attack an outsider with a valid connection would try, with its exact CKR."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom import crypto
from strongroom.errors import StrongroomError
from strongroom.mechanism_params import Mechanism
from strongroom.node import Application
from strongroom.node.application import call
from strongroom.node.commit import RequestContext
from strongroom.node.public_objects import SESSION_OBJECT_OVERHEAD_BYTES, PublicObjectBudget
from strongroom.protocol.calls import CALL_SPECS as CATALOGUE_BY_NAME
from strongroom.protocol.calls import CATALOGUE
from strongroom.vocab import CKA, CKC, CKK, CKM, CKO, CKR, CKU

from .conftest import ADMIN_PW, login
from .keys import P256

CERTIFICATE = {CKA.CLASS: CKO.CERTIFICATE, CKA.CERTIFICATE_TYPE: CKC.X_509, CKA.SUBJECT: b"\x30\x00",
               CKA.VALUE: b"\x30\x03\x02\x01\x01", CKA.LABEL: "app-key"}
EVERY_CLASS = {
    "data": {CKA.CLASS: CKO.DATA, CKA.VALUE: b"planted", CKA.LABEL: "app-key"},
    "certificate": CERTIFICATE,
    "public key": {CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.EC, CKA.EC_PARAMS: P256,
                   CKA.EC_POINT: bytes.fromhex("044104") + bytes(64), CKA.VERIFY: True},
    "secret key": {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(32)},
}
SAMPLES: dict[Any, Any] = {int: 1, bytes: b"\x01", str: "alice", bool: False, list[int]: [int(CKA.LABEL)],
                           Mechanism: Mechanism(CKM.AES_KEY_GEN)}


def _code(action: Any) -> int:
    try:
        action()
    except StrongroomError as exc:
        return int(exc.ckr)
    return int(CKR.OK)


def _served(app: Application, name: str, *args: Any) -> Any:
    """A call as the node's listener makes it (the login rule applies)."""
    return call(app, name, list(args), {}, RequestContext())


def _public(hsm) -> tuple[Application, int]:
    app = Application(hsm, "10.0.0.9:5000")
    return app, app.open_session()


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if not s.before_login], ids=lambda s: s.name)
def test_a_call_that_needs_a_login_is_refused_before_it_whatever_its_arguments(hsm, spec):
    app, session = _public(hsm)
    args = [session if name == "session" else SAMPLES.get(kind, {int(CKA.CLASS): int(CKO.DATA)})
            for name, kind in spec.args]
    assert _code(lambda: _served(app, spec.name, *args)) == CKR.USER_NOT_LOGGED_IN


@pytest.mark.parametrize("name", [f"{kind}{step}" for kind in ("encrypt", "decrypt", "sign", "verify")
                                  for step in ("", "_update", "_final")])
def test_without_a_login_no_operation_is_active_to_continue(hsm, name):
    app, session = _public(hsm)
    args = [session, b"data", b"signature"][:1 + len([a for a in CATALOGUE_BY_NAME[name].args if a[0] != "session"])]
    assert _code(lambda: _served(app, name, *args)) == CKR.OPERATION_NOT_INITIALIZED


def test_list_users_needs_a_login_and_any_login_reads_it(hsm, alice):
    app, session = _public(hsm)
    assert _code(lambda: _served(app, "list_users", session)) == CKR.USER_NOT_LOGGED_IN
    assert {u["username"] for u in _served(alice.app, "list_users", alice.s)} == {"admin", "alice", "bob"}


@pytest.mark.parametrize("cls", sorted(EVERY_CLASS))
def test_no_token_object_of_any_class_without_a_crypto_user(hsm, admin, cls):
    app, session = _public(hsm)
    template = {**EVERY_CLASS[cls], CKA.TOKEN: True}
    assert _code(lambda: _served(app, "create_object", session, template)) == CKR.USER_NOT_LOGGED_IN
    # an admin is logged in, but owns no objects: a token object needs a crypto user too
    assert _code(lambda: admin.app.create_object(admin.s, template)) == CKR.USER_NOT_LOGGED_IN
    assert hsm.token_objects == 0


@pytest.mark.parametrize("template", [
    {CKA.CLASS: CKO.DATA, CKA.PRIVATE: True},
    {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(16), CKA.TOKEN: False},
], ids=["private data", "session secret key"])
def test_private_and_key_session_objects_need_a_crypto_user(hsm, template):
    app, session = _public(hsm)
    assert _code(lambda: _served(app, "create_object", session, template)) == CKR.USER_NOT_LOGGED_IN


def test_a_public_session_neither_destroys_changes_nor_copies_a_token_object(hsm, alice):
    planted = alice.app.create_object(alice.s, {**CERTIFICATE, CKA.TOKEN: True})
    app, session = _public(hsm)
    assert session in app.sessions and planted in app.find(session, {CKA.LABEL: "app-key"})  # public: visible
    assert _code(lambda: _served(app, "destroy_object", session, planted)) == CKR.USER_NOT_LOGGED_IN
    assert _code(lambda: _served(app, "set_attribute_value", session, planted, {CKA.LABEL: "x"})) \
        == CKR.USER_NOT_LOGGED_IN
    assert _code(lambda: _served(app, "copy_object", session, planted, {CKA.TOKEN: False})) \
        == CKR.USER_NOT_LOGGED_IN
    assert alice.app.get_attributes(alice.s, planted, [CKA.LABEL])[CKA.LABEL] == "app-key"
    alice.app.destroy_object(alice.s, planted)  # its owner may


def test_a_public_session_cannot_copy_its_own_object_into_a_token_or_private_one(hsm):
    app, session = _public(hsm)
    mine = _served(app, "create_object", session, {CKA.CLASS: CKO.DATA, CKA.VALUE: b"x"})
    for template in ({CKA.TOKEN: True}, {CKA.PRIVATE: True}):
        assert _code(lambda t=template: _served(app, "copy_object", session, mine, t)) == CKR.USER_NOT_LOGGED_IN
    assert hsm.token_objects == 0 and hsm.repository.public_budget.objects == 1


def test_public_session_objects_are_allowed_up_to_the_connection_cap_then_device_memory(hsm):
    hsm.repository.public_budget = PublicObjectBudget(objects_per_connection=3, bytes_per_connection=1 << 20)
    app, session = _public(hsm)
    made = [_served(app, "create_object", session, {CKA.CLASS: CKO.DATA, CKA.VALUE: b"x"}) for _ in range(3)]
    assert _code(lambda: _served(app, "create_object", session, {CKA.CLASS: CKO.DATA})) == CKR.DEVICE_MEMORY
    assert _code(lambda: app.copy_object(session, made[0], {})) == CKR.DEVICE_MEMORY
    _served(app, "destroy_object", session, made[0])  # destroying gives the room back
    made[0] = _served(app, "create_object", session, {CKA.CLASS: CKO.DATA})
    assert hsm.repository.public_budget.objects == 3
    app.close_all_sessions()  # so does the connection's end
    assert hsm.repository.public_budget.objects == hsm.repository.public_budget.bytes == 0


def test_the_byte_cap_counts_values_and_the_record_overhead_and_growth_by_a_change(hsm):
    budget_bytes = 2 * SESSION_OBJECT_OVERHEAD_BYTES + 64 * 1024
    hsm.repository.public_budget = PublicObjectBudget(bytes_per_connection=budget_bytes)
    app, session = _public(hsm)
    big = app.create_object(session, {CKA.CLASS: CKO.DATA, CKA.VALUE: bytes(60 * 1024)})
    assert _code(lambda: app.create_object(session, {CKA.CLASS: CKO.DATA, CKA.VALUE: bytes(8 * 1024)})) \
        == CKR.DEVICE_MEMORY
    small = app.create_object(session, {CKA.CLASS: CKO.DATA, CKA.VALUE: bytes(100)})
    assert _code(lambda: app.set_attribute_value(session, small, {CKA.OBJECT_ID: bytes(8000)})) == CKR.DEVICE_MEMORY
    assert app.get_attributes(session, small, [CKA.OBJECT_ID])[CKA.OBJECT_ID] == b""  # refused: unchanged
    app.destroy_object(session, big)
    app.set_attribute_value(session, small, {CKA.OBJECT_ID: bytes(8000)})


def test_the_node_cap_holds_across_connections(hsm):
    hsm.repository.public_budget = PublicObjectBudget(objects_per_connection=2, objects_per_node=3)
    first, second = _public(hsm), _public(hsm)
    for app, session in (first, first, second):
        app.create_object(session, {CKA.CLASS: CKO.DATA})
    assert _code(lambda: second[0].create_object(second[1], {CKA.CLASS: CKO.DATA})) == CKR.DEVICE_MEMORY
    first[0].close_session(first[1])
    second[0].create_object(second[1], {CKA.CLASS: CKO.DATA})


def test_a_crypto_users_token_objects_and_keys_do_not_count_against_the_public_caps(hsm, alice):
    hsm.repository.public_budget = PublicObjectBudget(objects_per_connection=1, objects_per_node=1)
    alice.app.create_object(alice.s, {**CERTIFICATE, CKA.TOKEN: True})
    alice.app.create_object(alice.s, {**EVERY_CLASS["secret key"], CKA.TOKEN: False})
    alice.app.create_object(alice.s, {CKA.CLASS: CKO.DATA, CKA.PRIVATE: True})
    assert hsm.repository.public_budget.objects == 0


def test_an_admin_login_still_sees_only_public_objects_and_makes_only_public_session_ones(hsm):
    admin = login(hsm, CKU.SO, f"admin:{ADMIN_PW}")
    made = admin.app.create_object(admin.s, {CKA.CLASS: CKO.DATA, CKA.VALUE: b"note"})
    assert made in admin.app.find(admin.s, {CKA.CLASS: CKO.DATA})
    admin.app.destroy_object(admin.s, made)


PUBLIC_SESSION_KEY = {CKA.TOKEN: False, CKA.PRIVATE: False}


def test_a_public_session_makes_and_uses_public_session_keys_of_every_class(hsm):
    """PKCS#11 3.0 §4.4, §5.6: a public session reads and writes public session objects, keys included."""
    app, session = _public(hsm)
    aes = _served(app, "generate_key", session, Mechanism(CKM.AES_KEY_GEN),
                  {**PUBLIC_SESSION_KEY, CKA.VALUE_LEN: 32, CKA.ENCRYPT: True})
    assert len(_served(app, "encrypt_once", session, Mechanism(CKM.AES_ECB), aes, bytes(16))) == 16
    pub, priv = _served(app, "generate_key_pair", session, Mechanism(CKM.EC_KEY_PAIR_GEN),
                        {**PUBLIC_SESSION_KEY, CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                        {**PUBLIC_SESSION_KEY, CKA.SIGN: True})
    signature = _served(app, "sign_once", session, Mechanism(CKM.ECDSA), priv, bytes(32))
    assert _served(app, "verify_once", session, Mechanism(CKM.ECDSA), pub, bytes(32), signature) is None
    assert set(_served(app, "find", session, {})) == {aes, pub, priv}
    assert hsm.repository.public_budget.objects == 3 and hsm.token_objects == 0


@pytest.mark.parametrize("template", [
    {CKA.TOKEN: False},  # a secret key is CKA_PRIVATE true unless the template says otherwise
    {CKA.TOKEN: True, CKA.PRIVATE: False},  # a token object has an owner
], ids=["private session key", "public token key"])
def test_a_public_session_makes_no_private_or_token_key(hsm, template):
    app, session = _public(hsm)
    assert _code(lambda: _served(app, "generate_key", session, Mechanism(CKM.AES_KEY_GEN),
                                 {**template, CKA.VALUE_LEN: 32})) == CKR.USER_NOT_LOGGED_IN
    assert _code(lambda: _served(app, "generate_key_pair", session, Mechanism(CKM.EC_KEY_PAIR_GEN),
                                 {**PUBLIC_SESSION_KEY, CKA.EC_PARAMS: P256}, template)) == CKR.USER_NOT_LOGGED_IN
    assert hsm.repository.public_budget.objects == 0


def _not_called(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("no key is generated past the caps")


def test_public_session_keys_count_against_the_caps(hsm, monkeypatch):
    hsm.repository.public_budget = PublicObjectBudget(objects_per_connection=2)
    app, session = _public(hsm)
    pair = _served(app, "generate_key_pair", session, Mechanism(CKM.EC_KEY_PAIR_GEN),
                   {**PUBLIC_SESSION_KEY, CKA.EC_PARAMS: P256}, {**PUBLIC_SESSION_KEY, CKA.SIGN: True})
    assert _code(lambda: _served(app, "generate_key", session, Mechanism(CKM.AES_KEY_GEN),
                                 {**PUBLIC_SESSION_KEY, CKA.VALUE_LEN: 32})) == CKR.DEVICE_MEMORY
    monkeypatch.setattr(crypto, "generate_key_pair", _not_called)  # refused before the key is computed
    assert _code(lambda: _served(app, "generate_key_pair", session, Mechanism(CKM.RSA_PKCS_KEY_PAIR_GEN),
                                 {**PUBLIC_SESSION_KEY, CKA.MODULUS_BITS: 4096},
                                 {**PUBLIC_SESSION_KEY, CKA.SIGN: True})) == CKR.DEVICE_MEMORY
    _served(app, "destroy_object", session, pair[1])
    _served(app, "generate_key", session, Mechanism(CKM.AES_KEY_GEN), {**PUBLIC_SESSION_KEY, CKA.VALUE_LEN: 32})


def test_a_public_token_key_is_visible_and_usable_without_a_login_and_managed_by_its_owner(hsm, alice):
    """Java's SunPKCS11 verifies with public keys before any login: a token public key with CKA_PRIVATE false
    (the default for public keys) is everyone's to find and use; only its owner changes or destroys it."""
    pub, priv = alice.app.generate_key_pair(alice.s, Mechanism(CKM.EC_KEY_PAIR_GEN),
                                            {CKA.TOKEN: True, CKA.EC_PARAMS: P256, CKA.VERIFY: True,
                                             CKA.LABEL: "public-verify"}, {CKA.TOKEN: True, CKA.SIGN: True})
    signature = alice.app.sign_once(alice.s, Mechanism(CKM.ECDSA), priv, bytes(32))
    app, session = _public(hsm)
    assert _served(app, "find", session, {CKA.LABEL: "public-verify"}) == [pub]  # the private half: alice's
    assert _served(app, "verify_once", session, Mechanism(CKM.ECDSA), pub, bytes(32), signature) is None
    assert _code(lambda: _served(app, "sign_once", session, Mechanism(CKM.ECDSA), priv, bytes(32))) \
        == CKR.USER_NOT_LOGGED_IN
    assert _code(lambda: _served(app, "set_attribute_value", session, pub, {CKA.LABEL: "x"})) \
        == CKR.USER_NOT_LOGGED_IN
    assert _code(lambda: _served(app, "destroy_object", session, pub)) == CKR.USER_NOT_LOGGED_IN


def test_public_session_keys_outlive_a_logout_and_private_ones_do_not(hsm, alice):
    public = alice.app.generate_key(alice.s, Mechanism(CKM.AES_KEY_GEN),
                                    {**PUBLIC_SESSION_KEY, CKA.VALUE_LEN: 32, CKA.ENCRYPT: True})
    private = alice.app.generate_key(alice.s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 32, CKA.ENCRYPT: True})
    alice.app.logout(alice.s)
    assert alice.app.find(alice.s, {CKA.CLASS: CKO.SECRET_KEY}) == [public]
    assert len(alice.app.encrypt_once(alice.s, Mechanism(CKM.AES_ECB), public, bytes(16))) == 16
    assert _code(lambda: alice.app.encrypt_once(alice.s, Mechanism(CKM.AES_ECB), private, bytes(16))) \
        == CKR.USER_NOT_LOGGED_IN
    alice.app.destroy_object(alice.s, public)  # its application's, logged in or not
