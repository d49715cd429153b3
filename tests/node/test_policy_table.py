"""Every policy rule of the HSM core, one row each, with the exact CKR_* it must return.

Rows cover object policy (PKCS#11 3.0 §4, §5.7, §5.18), roles (admin, crypto-user, unactivated admin,
public session) and ownership/sharing. Each row runs against a fresh HSM holding keys of alice's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from strongroom.errors import StrongroomError
from strongroom.mechanism_params import GcmParams, Mechanism, OaepParams
from strongroom.node import HSM, Application
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR, CKU

from .conftest import ALICE_PW, Logged, initial_password, login, user_list
from .keys import aes, ec, hmac_key, rsa, wrapper


@dataclass
class World:
    hsm: HSM
    admin: Logged
    alice: Logged
    bob: Logged
    aes: int
    wrapper: int
    aes_unextractable: int
    aes_wwt: int
    hmac: int
    rsa_pub: int
    rsa_priv: int
    ec_pub: int
    ec_priv: int


@pytest.fixture
def w(hsm, admin, alice, bob) -> World:
    rsa_pub, rsa_priv = rsa(alice)
    ec_pub, ec_priv = ec(alice)
    return World(hsm, admin, alice, bob, aes(alice), wrapper(alice), aes(alice, extractable=False),
                 aes(alice, wrap_with_trusted=True), hmac_key(alice), rsa_pub, rsa_priv, ec_pub, ec_priv)


GCM = Mechanism(CKM.AES_GCM, GcmParams(iv=bytes(12)))
KW = Mechanism(CKM.AES_KEY_WRAP_PAD)


def gen_aes(who: Logged, template: dict) -> int:
    return who.app.generate_key(who.s, Mechanism(CKM.AES_KEY_GEN), template)


def setattr_(who: Logged, handle: int, template: dict) -> None:
    who.app.set_attribute_value(who.s, handle, template)


def read(who: Logged, handle: int, cka: CKA) -> Any:
    return who.app.get_attributes(who.s, handle, [cka])


def public_session(w: World) -> Logged:
    app = Application(w.hsm)
    return Logged(app, app.open_session())


def shared(w: World) -> World:
    w.alice.app.share(w.alice.s, w.aes, "bob")
    return w


Row = tuple[str, Callable[[World], Any], CKR]

OBJECT_RULES: list[Row] = [
    ("sensitive value unreadable", lambda w: read(w.alice, w.aes, CKA.VALUE), CKR.ATTRIBUTE_SENSITIVE),
    ("private key component unreadable", lambda w: read(w.alice, w.rsa_priv, CKA.PRIVATE_EXPONENT),
     CKR.ATTRIBUTE_SENSITIVE),
    ("EC private value unreadable", lambda w: read(w.alice, w.ec_priv, CKA.VALUE), CKR.ATTRIBUTE_SENSITIVE),
    ("attribute of another class", lambda w: read(w.alice, w.aes, CKA.MODULUS), CKR.ATTRIBUTE_TYPE_INVALID),
    ("unknown attribute type read", lambda w: read(w.alice, w.aes, 0x7FFFFFF0), CKR.ATTRIBUTE_TYPE_INVALID),
    ("extractable back to true", lambda w: setattr_(w.alice, w.aes_unextractable, {CKA.EXTRACTABLE: True}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("sensitive back to false", lambda w: setattr_(w.alice, w.aes, {CKA.SENSITIVE: False}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("wrap-with-trusted cleared", lambda w: setattr_(w.alice, w.aes_wwt, {CKA.WRAP_WITH_TRUSTED: False}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("class changed", lambda w: setattr_(w.alice, w.aes, {CKA.CLASS: CKO.DATA}), CKR.ATTRIBUTE_READ_ONLY),
    ("value length changed", lambda w: setattr_(w.alice, w.aes, {CKA.VALUE_LEN: 16}), CKR.ATTRIBUTE_READ_ONLY),
    ("local changed", lambda w: setattr_(w.alice, w.aes, {CKA.LOCAL: False}), CKR.ATTRIBUTE_READ_ONLY),
    ("trusted set by crypto user", lambda w: setattr_(w.alice, w.aes, {CKA.TRUSTED: True}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("trusted in a generate template", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.TRUSTED: True}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("admin sets anything but trusted", lambda w: setattr_(w.admin, w.rsa_pub, {CKA.LABEL: "x"}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("unmodifiable object", lambda w: setattr_(w.alice, aes(w.alice, modifiable=False), {CKA.LABEL: "x"}),
     CKR.ACTION_PROHIBITED),
    ("undestroyable object", lambda w: w.alice.app.destroy_object(w.alice.s, aes(w.alice, destroyable=False)),
     CKR.ACTION_PROHIBITED),
    ("wrap an unextractable key", lambda w: w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.aes_unextractable),
     CKR.KEY_UNEXTRACTABLE),
    ("wrap-with-trusted by an untrusted key", lambda w: w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.aes_wwt),
     CKR.KEY_NOT_WRAPPABLE),
    ("wrap a public key", lambda w: w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.rsa_pub), CKR.KEY_NOT_WRAPPABLE),
    ("wrap template mismatch",
     lambda w: w.alice.app.wrap_key(w.alice.s, KW, wrapper(w.alice, wrap_template={CKA.EXTRACTABLE: False}), w.hmac),
     CKR.KEY_NOT_WRAPPABLE),
    ("encrypt without CKA_ENCRYPT", lambda w: w.alice.app.encrypt_init(w.alice.s, GCM, aes(w.alice, encrypt=False)),
     CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("decrypt without CKA_DECRYPT", lambda w: w.alice.app.decrypt_init(w.alice.s, GCM, aes(w.alice, decrypt=False)),
     CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("sign without CKA_SIGN", lambda w: w.alice.app.sign_init(w.alice.s, Mechanism(CKM.SHA256_HMAC),
                                                              hmac_key(w.alice, sign=False)),
     CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("verify without CKA_VERIFY", lambda w: w.alice.app.verify_init(
        w.alice.s, Mechanism(CKM.SHA256_RSA_PKCS), rsa(w.alice, pub={CKA.VERIFY: False})[0]),
     CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("wrap without CKA_WRAP", lambda w: w.alice.app.wrap_key(w.alice.s, KW, wrapper(w.alice, wrap=False), w.hmac),
     CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("unwrap without CKA_UNWRAP", lambda w: w.alice.app.unwrap_key(
        w.alice.s, KW, wrapper(w.alice, unwrap=False), bytes(40),
        {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}), CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("derive without CKA_DERIVE", lambda w: w.alice.app.derive_key(
        w.alice.s, Mechanism(CKM.ECDH1_DERIVE), ec(w.alice, priv={CKA.DERIVE: False})[1],
        {CKA.KEY_TYPE: CKK.AES, CKA.VALUE_LEN: 16}), CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("mechanism not in allowed list", lambda w: w.alice.app.encrypt_init(
        w.alice.s, GCM, aes(w.alice, allowed_mechanisms=[CKM.AES_CBC_PAD])), CKR.KEY_FUNCTION_NOT_PERMITTED),
    ("mechanism for another key type", lambda w: w.alice.app.sign_init(w.alice.s, Mechanism(CKM.SHA256_RSA_PKCS),
                                                                        w.ec_priv), CKR.KEY_TYPE_INCONSISTENT),
    ("secret key without value", lambda w: w.alice.app.create_object(
        w.alice.s, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}), CKR.TEMPLATE_INCOMPLETE),
    ("object without class", lambda w: w.alice.app.create_object(w.alice.s, {CKA.LABEL: "x"}),
     CKR.TEMPLATE_INCOMPLETE),
    ("generate without value length", lambda w: gen_aes(w.alice, {}), CKR.TEMPLATE_INCOMPLETE),
    ("generate with a public-key class", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.CLASS: CKO.PUBLIC_KEY}),
     CKR.TEMPLATE_INCONSISTENT),
    ("generate with a value", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 16, CKA.VALUE: bytes(16)}),
     CKR.TEMPLATE_INCONSISTENT),
    ("private key through C_CreateObject", lambda w: w.alice.app.create_object(
        w.alice.s, {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: CKK.EC}), CKR.TEMPLATE_INCONSISTENT),
    ("RSA pair without modulus bits", lambda w: w.alice.app.generate_key_pair(
        w.alice.s, Mechanism(CKM.RSA_PKCS_KEY_PAIR_GEN), {}, {}), CKR.TEMPLATE_INCOMPLETE),
    ("unknown attribute type in template", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, 0x7FFFFFF0: b""}),
     CKR.ATTRIBUTE_TYPE_INVALID),
    ("attribute foreign to the class", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.MODULUS_BITS: 2048}),
     CKR.ATTRIBUTE_TYPE_INVALID),
    ("wrap flag on a private key", lambda w: rsa(w.alice, priv={CKA.WRAP: True}), CKR.ATTRIBUTE_TYPE_INVALID),
    ("maintained attribute in template", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.LOCAL: True}),
     CKR.ATTRIBUTE_READ_ONLY),
    ("AES value of 20 bytes", lambda w: w.alice.app.create_object(
        w.alice.s, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(20)}),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("wrong check value", lambda w: w.alice.app.create_object(
        w.alice.s, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(16),
                    CKA.CHECK_VALUE: b"\x00\x00\x00"}), CKR.ATTRIBUTE_VALUE_INVALID),
    ("boolean of the wrong kind", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.ENCRYPT: b"yes"}),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("label over 127 characters", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 32, CKA.LABEL: "x" * 128}),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("AES key of 20 bytes generated", lambda w: gen_aes(w.alice, {CKA.VALUE_LEN: 20}), CKR.KEY_SIZE_RANGE),
    ("token object in a read-only session", lambda w: gen_aes(
        login(w.hsm, CKU.USER, f"alice:{ALICE_PW}", rw=False), {CKA.VALUE_LEN: 32, CKA.TOKEN: True}),
     CKR.SESSION_READ_ONLY),
    ("unwrap template conflict", lambda w: w.alice.app.unwrap_key(
        w.alice.s, KW, wrapper(w.alice, unwrap_template={CKA.EXTRACTABLE: False}), bytes(40),
        {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.EXTRACTABLE: True}), CKR.TEMPLATE_INCONSISTENT),
    ("unwrap garbage", lambda w: w.alice.app.unwrap_key(
        w.alice.s, KW, w.wrapper, bytes(40), {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES}),
     CKR.WRAPPED_KEY_INVALID),
]

ROLE_RULES: list[Row] = [
    ("admin generates a key", lambda w: gen_aes(w.admin, {CKA.VALUE_LEN: 32}), CKR.USER_NOT_LOGGED_IN),
    ("admin uses a key", lambda w: w.admin.app.encrypt_init(w.admin.s, GCM, w.aes), CKR.USER_NOT_LOGGED_IN),
    ("public session generates a key", lambda w: gen_aes(public_session(w), {CKA.VALUE_LEN: 32}),
     CKR.USER_NOT_LOGGED_IN),
    ("public session uses a key", lambda w: (lambda p: p.app.encrypt_init(p.s, GCM, w.aes))(public_session(w)),
     CKR.USER_NOT_LOGGED_IN),
    ("crypto user creates a user", lambda w: w.alice.app.create_user(w.alice.s, "carol", "carol-pass", "admin"),
     CKR.USER_NOT_LOGGED_IN),
    ("crypto user deletes a user", lambda w: w.alice.app.delete_user(w.alice.s, "bob"), CKR.USER_NOT_LOGGED_IN),
    ("crypto user changes another's password",
     lambda w: w.alice.app.change_password(w.alice.s, "bob", "new-pass-12"), CKR.USER_NOT_LOGGED_IN),
    ("crypto user zeroises", lambda w: w.alice.app.zeroize(w.alice.s), CKR.USER_NOT_LOGGED_IN),
    ("crypto user logs in as SO", lambda w: login(w.hsm, CKU.SO, f"alice:{ALICE_PW}"), CKR.USER_TYPE_INVALID),
    ("unknown user type", lambda w: login(w.hsm, 7, f"alice:{ALICE_PW}"), CKR.USER_TYPE_INVALID),
    ("second login of the same type", lambda w: w.alice.app.login(w.alice.s, CKU.USER, f"alice:{ALICE_PW}"),
     CKR.USER_ALREADY_LOGGED_IN),
    ("login of another type", lambda w: w.alice.app.login(w.alice.s, CKU.SO, "admin:whatever1"),
     CKR.USER_ANOTHER_ALREADY_LOGGED_IN),
    ("wrong password", lambda w: login(w.hsm, CKU.USER, "alice:wrong-pass"), CKR.PIN_INCORRECT),
    ("unknown user", lambda w: login(w.hsm, CKU.USER, "nobody:some-pass"), CKR.PIN_INCORRECT),
    ("PIN without a colon", lambda w: login(w.hsm, CKU.USER, "alice"), CKR.PIN_INCORRECT),
    ("password too short", lambda w: w.admin.app.create_user(w.admin.s, "carol", "short", "crypto-user"),
     CKR.PIN_LEN_RANGE),
    ("password too long", lambda w: w.admin.app.create_user(w.admin.s, "carol", "x" * 33, "crypto-user"),
     CKR.PIN_LEN_RANGE),
    ("username too long", lambda w: w.admin.app.create_user(w.admin.s, "c" * 32, "carol-pass", "crypto-user"),
     CKR.ARGUMENTS_BAD),
    ("username with a dash", lambda w: w.admin.app.create_user(w.admin.s, "ca-rol", "carol-pass", "crypto-user"),
     CKR.ARGUMENTS_BAD),
    ("unknown role", lambda w: w.admin.app.create_user(w.admin.s, "carol", "carol-pass", "root"),
     CKR.ARGUMENTS_BAD),
    ("existing user", lambda w: w.admin.app.create_user(w.admin.s, "ALICE", "carol-pass", "crypto-user"),
     CKR.ARGUMENTS_BAD),
    ("delete a key owner", lambda w: w.admin.app.delete_user(w.admin.s, "alice"), CKR.ACTION_PROHIBITED),
    ("admin deletes itself", lambda w: w.admin.app.delete_user(w.admin.s, "admin"), CKR.ACTION_PROHIBITED),
    ("logout without login", lambda w: (lambda p: p.app.logout(p.s))(public_session(w)), CKR.USER_NOT_LOGGED_IN),
    ("admin login with a read-only session open", lambda w: (
        lambda app: (app.open_session(flags=4), app.login(app.open_session(), CKU.SO, "admin:admin-pass-1")))(
        Application(w.hsm)), CKR.SESSION_READ_ONLY_EXISTS),
]

OWNERSHIP_RULES: list[Row] = [
    ("unshared key is invisible to another user", lambda w: w.bob.app.encrypt_init(w.bob.s, GCM, w.aes),
     CKR.KEY_HANDLE_INVALID),
    ("unshared key attributes", lambda w: read(w.bob, w.aes, CKA.LABEL), CKR.OBJECT_HANDLE_INVALID),
    ("shared user destroys", lambda w: shared(w).bob.app.destroy_object(w.bob.s, w.aes), CKR.ACTION_PROHIBITED),
    ("shared user modifies", lambda w: setattr_(shared(w).bob, w.aes, {CKA.LABEL: "mine"}),
     CKR.ACTION_PROHIBITED),
    ("shared user shares on", lambda w: shared(w).bob.app.share(w.bob.s, w.aes, "bob"), CKR.ACTION_PROHIBITED),
    ("shared user wraps", lambda w: shared(w).bob.app.wrap_key(w.bob.s, KW, wrapper(w.bob), w.aes),
     CKR.KEY_NOT_WRAPPABLE),
    ("public key destroyed by another user", lambda w: w.bob.app.destroy_object(w.bob.s, w.rsa_pub),
     CKR.ACTION_PROHIBITED),
    ("share with an admin", lambda w: w.alice.app.share(w.alice.s, w.aes, "admin"), CKR.ARGUMENTS_BAD),
]


def _run(w: World, action: Callable[[World], Any], expected: CKR) -> None:
    with pytest.raises(StrongroomError) as info:
        action(w)
    assert info.value.ckr == expected, f"{info.value.ckr!r} ({info.value.message}) instead of {expected!r}"


@pytest.mark.parametrize("name,action,expected", OBJECT_RULES, ids=[r[0] for r in OBJECT_RULES])
def test_object_policy(w, name, action, expected):
    _run(w, action, expected)


@pytest.mark.parametrize("name,action,expected", ROLE_RULES, ids=[r[0] for r in ROLE_RULES])
def test_role_policy(w, name, action, expected):
    _run(w, action, expected)


@pytest.mark.parametrize("name,action,expected", OWNERSHIP_RULES, ids=[r[0] for r in OWNERSHIP_RULES])
def test_ownership_policy(w, name, action, expected):
    _run(w, action, expected)


def test_shared_user_may_use_and_see(w):
    oaep = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams())
    assert w.bob.app.find(w.bob.s, {CKA.LABEL: "aes", CKA.CLASS: CKO.SECRET_KEY}) == []
    w.alice.app.share(w.alice.s, w.aes, "bob")
    assert w.aes in w.bob.app.find(w.bob.s, {CKA.LABEL: "aes"})
    iv = w.bob.app.encrypt_init(w.bob.s, Mechanism(CKM.AES_GCM, GcmParams()), w.aes)
    ct = w.bob.app.encrypt(w.bob.s, b"hello")
    w.alice.app.decrypt_init(w.alice.s, Mechanism(CKM.AES_GCM, GcmParams(iv=iv)), w.aes)
    assert w.alice.app.decrypt(w.alice.s, ct) == b"hello"
    assert w.alice.app.key_info(w.alice.s, w.aes) == {"owner": "alice", "shared_users": ["bob"]}
    # public keys are visible to and usable by every crypto user
    w.bob.app.encrypt_init(w.bob.s, oaep, w.rsa_pub)
    ct = w.bob.app.encrypt(w.bob.s, b"for alice")
    w.alice.app.decrypt_init(w.alice.s, oaep, w.rsa_priv)
    assert w.alice.app.decrypt(w.alice.s, ct) == b"for alice"
    w.alice.app.share(w.alice.s, w.aes, "bob", unshare=True)
    assert w.bob.app.find(w.bob.s, {CKA.LABEL: "aes"}) == []


def test_trusted_wrapping_key(w):
    with pytest.raises(StrongroomError):
        w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.aes_wwt)
    w.admin.app.set_attribute_value(w.admin.s, w.wrapper, {CKA.TRUSTED: True})
    assert read(w.alice, w.wrapper, CKA.TRUSTED) == {CKA.TRUSTED: True}
    wrapped = w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.aes_wwt)
    assert len(wrapped) == 40


def test_maintained_attributes(w):
    a = read(w.alice, w.aes, CKA.LOCAL) | read(w.alice, w.aes, CKA.ALWAYS_SENSITIVE) | read(
        w.alice, w.aes, CKA.NEVER_EXTRACTABLE) | read(w.alice, w.aes, CKA.KEY_GEN_MECHANISM)
    assert a == {CKA.LOCAL: True, CKA.ALWAYS_SENSITIVE: True, CKA.NEVER_EXTRACTABLE: False,
                 CKA.KEY_GEN_MECHANISM: CKM.AES_KEY_GEN}
    assert read(w.alice, w.aes_unextractable, CKA.NEVER_EXTRACTABLE) == {CKA.NEVER_EXTRACTABLE: True}
    wrapped = w.alice.app.wrap_key(w.alice.s, KW, w.wrapper, w.hmac)
    h = w.alice.app.unwrap_key(w.alice.s, KW, w.wrapper, wrapped,
                               {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.TOKEN: True})
    got = w.alice.app.get_attributes(w.alice.s, h, [CKA.LOCAL, CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE,
                                                     CKA.KEY_GEN_MECHANISM, CKA.VALUE_LEN])
    assert got == {CKA.LOCAL: False, CKA.ALWAYS_SENSITIVE: False, CKA.NEVER_EXTRACTABLE: False,
                   CKA.KEY_GEN_MECHANISM: 0xFFFFFFFFFFFFFFFF, CKA.VALUE_LEN: 32}
    # one-way switches do go the allowed way
    setattr_(w.alice, w.aes, {CKA.EXTRACTABLE: False, CKA.LABEL: "renamed"})
    assert read(w.alice, w.aes, CKA.EXTRACTABLE) == {CKA.EXTRACTABLE: False}
    assert w.alice.app.find(w.alice.s, {CKA.LABEL: "renamed"}) == [w.aes]


def test_aes_check_value(w):
    # CKA_CHECK_VALUE: first 3 bytes of AES-ECB of a zero block under the key (PKCS#11 3.0 §4.10)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    value = bytes(range(16))
    h = w.alice.app.create_object(w.alice.s, {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: value})
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    assert read(w.alice, h, CKA.CHECK_VALUE) == {CKA.CHECK_VALUE: (enc.update(bytes(16)) + enc.finalize())[:3]}


def test_unactivated_admin_may_only_activate(tmp_path):
    from .conftest import FAST

    node = HSM.initialize(tmp_path / "n", settings=FAST)
    preco = initial_password(node)
    pre = login(node, CKU.SO, f"admin:{preco}")
    with pytest.raises(StrongroomError) as info:
        pre.app.create_user(pre.s, "carol", "carol-pass", "crypto-user")
    assert info.value.ckr == CKR.USER_NOT_LOGGED_IN
    with pytest.raises(StrongroomError) as info:
        pre.app.activate(pre.s, preco)
    assert info.value.ckr == CKR.PIN_INVALID
    pre.app.activate(pre.s, "new-admin-pass")
    assert user_list(node) == [
        {"username": "admin", "role": "admin", "locked": False, "failures": 0}]
    node.close()
