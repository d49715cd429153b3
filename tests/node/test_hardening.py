"""Faults found by driving the boundary as a hostile or careless caller; each kept as a test."""

from __future__ import annotations

import threading

import pytest

from strongroom.errors import DeviceError, StrongroomError
from strongroom.mechanism_params import CtrParams, Ecdh1DeriveParams, GcmParams, Mechanism, OaepParams
from strongroom.node import HSM, State
from strongroom.node import Application as HsmApplication
from strongroom.node.testing import key_material
from strongroom.vocab import CKA, CKD, CKG, CKK, CKM, CKO, CKR, CKU

from .conftest import ALICE_PW, BOB_PW, FAST, initial_password, login
from .keys import ED25519, P256, aes, ec, hmac_key, rsa, wrapper
from .test_sessions import rv

KWP = Mechanism(CKM.AES_KEY_WRAP_KWP)


def test_racing_attribute_changes_never_undo_a_one_way_switch(hsm, alice):
    key = aes(alice)
    other = login(hsm, CKU.USER, f"alice:{ALICE_PW}")
    stop = threading.Event()

    def relabel() -> None:
        n = 0
        while not stop.is_set():
            other.app.set_attribute_value(other.s, key, {CKA.LABEL: f"l{n}"})
            n += 1

    thread = threading.Thread(target=relabel)
    thread.start()
    try:
        alice.app.set_attribute_value(alice.s, key, {CKA.EXTRACTABLE: False})
        alice.app.share(alice.s, key, "bob")
    finally:
        stop.set()
        thread.join(10)
    got = alice.app.get_attributes(alice.s, key, [CKA.EXTRACTABLE])
    assert got == {CKA.EXTRACTABLE: False}
    assert alice.app.key_info(alice.s, key)["shared_users"] == ["bob"]


def test_deleted_user_loses_logins_and_shares(hsm, admin, alice, bob):
    key = aes(alice)
    alice.app.share(alice.s, key, "bob")
    admin.app.delete_user(admin.s, "bob")
    assert rv(aes, bob) == CKR.USER_NOT_LOGGED_IN
    admin.app.create_user(admin.s, "bob", "another-pw-1", "crypto-user")
    new_bob = login(hsm, CKU.USER, "bob:another-pw-1")
    assert rv(new_bob.app.encrypt_init, new_bob.s, Mechanism(CKM.AES_ECB), key) == CKR.KEY_HANDLE_INVALID
    assert alice.app.key_info(alice.s, key)["shared_users"] == []


def test_admin_password_reset_ends_the_users_logins(hsm, admin, alice):
    admin.app.change_password(admin.s, "alice", "reset-pass-1")
    assert rv(aes, alice) == CKR.USER_NOT_LOGGED_IN
    assert alice.app.session_info(alice.s)["state"] == 2  # CKS_RW_PUBLIC_SESSION


def test_own_password_change_needs_the_old_password_and_keeps_a_lock(hsm, alice):
    assert rv(alice.app.change_password, alice.s, "alice", "new-pass-11") == CKR.PIN_INCORRECT
    assert rv(alice.app.change_password, alice.s, "alice", "new-pass-11", "wrong-old") == CKR.PIN_INCORRECT
    alice.app.change_password(alice.s, "alice", "new-pass-11", ALICE_PW)
    login(hsm, CKU.USER, "alice:new-pass-11")


def test_key_separation(hsm, alice):
    """Keys may be made with the usages applications ask for; the attack is refused where it happens (every
    attack with its code: test_key_separation.py)."""
    w = aes(alice, wrap=True)  # wraps and decrypts, as python-pkcs11's default AES key does
    rsa(alice, pub={CKA.WRAP: True}, priv={CKA.UNWRAP: True})
    target = hmac_key(alice)  # sensitive (the default)
    assert rv(alice.app.wrap_key, alice.s, KWP, w, target) == CKR.KEY_NOT_WRAPPABLE
    w = wrapper(alice)
    wrapped = alice.app.wrap_key(alice.s, KWP, w, target)
    assert rv(alice.app.set_attribute_value, alice.s, w, {CKA.DECRYPT: True}) == CKR.ATTRIBUTE_READ_ONLY
    assert rv(alice.app.decrypt_init, alice.s, KWP, w) == CKR.KEY_FUNCTION_NOT_PERMITTED
    assert len(wrapped) == 40


def test_keys_with_secret_material_stay_their_owners_whatever_cka_private_says(hsm, alice, bob):
    """PKCS#11 3.0 §4.4 lets a template make a key a public object (pkcs11-tool --keygen sends CKA_PRIVATE
    false); the key is still served only to its owner's login."""
    secret = aes(alice, private=False)
    _, private = ec(alice, priv={CKA.PRIVATE: False})
    public = HsmApplication(hsm, "10.0.0.9:5000")  # no login
    public_session = public.open_session()
    for handle in (secret, private):
        assert alice.app.get_attributes(alice.s, handle, [CKA.PRIVATE])[CKA.PRIVATE] is False
        assert rv(bob.app.get_attributes, bob.s, handle, [CKA.LABEL]) == CKR.OBJECT_HANDLE_INVALID
        assert handle not in bob.app.find(bob.s, {})
        assert rv(public.get_attributes, public_session, handle, [CKA.LABEL]) == CKR.OBJECT_HANDLE_INVALID
        assert handle not in public.find(public_session, {CKA.PRIVATE: False})
    assert rv(aes, alice, always_authenticate=True) == CKR.ATTRIBUTE_TYPE_INVALID


@pytest.mark.parametrize("params,key_type", [(None, CKK.RSA), (P256, CKK.EC), (ED25519, CKK.EC_EDWARDS)])
def test_private_keys_unwrap_back(hsm, alice, params, key_type):
    w = wrapper(alice)
    if params is None:
        _, priv = rsa(alice)
    else:
        _, priv = ec(alice, params=params, priv={CKA.DERIVE: False})
    wrapped = alice.app.wrap_key(alice.s, KWP, w, priv)
    back = alice.app.unwrap_key(alice.s, KWP, w, wrapped, {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: key_type,
                                                           CKA.SIGN: True})
    assert key_material(hsm, back) == key_material(hsm, priv)
    wrong = CKK.EC if key_type is not CKK.EC else CKK.RSA
    assert rv(alice.app.unwrap_key, alice.s, KWP, w, wrapped,
              {CKA.CLASS: CKO.PRIVATE_KEY, CKA.KEY_TYPE: wrong}) == CKR.WRAPPED_KEY_INVALID


def test_aes_key_wrap_padding_is_cut_to_the_value_length(hsm, alice):
    w = wrapper(alice)
    secret = hmac_key(alice, size=20)
    wrapped = alice.app.wrap_key(alice.s, Mechanism(CKM.AES_KEY_WRAP), w, secret)
    assert len(wrapped) == 32
    back = alice.app.unwrap_key(alice.s, Mechanism(CKM.AES_KEY_WRAP), w, wrapped,
                                {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.VALUE_LEN: 20})
    assert key_material(hsm, back) == key_material(hsm, secret)


def test_ecdh_derive_with_the_whole_secret_and_oversized_lengths(hsm, alice, bob):
    pub_a, priv_a = ec(alice)
    pub_b, priv_b = ec(bob)
    point_b = bob.app.get_attributes(bob.s, pub_b, [CKA.EC_POINT])[CKA.EC_POINT]
    point_a = alice.app.get_attributes(alice.s, pub_a, [CKA.EC_POINT])[CKA.EC_POINT]
    tmpl = {CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.TOKEN: True}
    ka = alice.app.derive_key(alice.s, Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.NULL, b"", point_b)),
                              priv_a, tmpl)
    kb = bob.app.derive_key(bob.s, Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.NULL, b"", point_a)),
                            priv_b, tmpl)
    assert len(key_material(hsm, ka)) == 32 and key_material(hsm, ka) == key_material(hsm, kb)
    kdf = Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.SHA256_KDF, b"info", point_b))
    assert rv(alice.app.derive_key, alice.s, kdf, priv_a,
              {CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.VALUE_LEN: 10**9}) == CKR.KEY_SIZE_RANGE


def test_concurrent_applications(hsm):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            who = login(hsm, CKU.USER, f"alice:{ALICE_PW}" if n % 2 else f"bob:{BOB_PW}")
            for i in range(15):
                s = who.app.open_session()
                eph = who.app.generate_key(s, Mechanism(CKM.GENERIC_SECRET_KEY_GEN), {CKA.VALUE_LEN: 32})
                who.app.sign_init(s, Mechanism(CKM.SHA256_HMAC), eph)
                assert len(who.app.sign(s, b"x" * i)) == 32
                token = aes(who, label=f"t{n}")
                who.app.encrypt_init(s, Mechanism(CKM.AES_GCM, GcmParams()), token)
                who.app.encrypt(s, b"data")
                who.app.close_session(s)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert hsm.store.verify_audit().ok
    assert hsm.info()["session_objects"] == 0


BAD_CALLS = [
    ("handle of the wrong type", lambda a: a.app.get_attributes(a.s, "1", [CKA.LABEL]), CKR.ARGUMENTS_BAD),
    ("session handle list", lambda a: a.app.generate_random([1], 4), CKR.ARGUMENTS_BAD),
    ("handle above 64 bits", lambda a: a.app.destroy_object(a.s, 2**64), CKR.ARGUMENTS_BAD),
    ("mechanism type text", lambda a: a.app.encrypt_init(a.s, Mechanism("x"), aes(a)), CKR.MECHANISM_INVALID),
    ("not a mechanism", lambda a: a.app.digest_init(a.s, CKM.SHA256), CKR.MECHANISM_INVALID),
    ("unknown mechanism", lambda a: a.app.digest_init(a.s, Mechanism(0x7FFF0000)), CKR.MECHANISM_INVALID),
    ("GCM IV of the wrong type", lambda a: a.app.encrypt_init(
        a.s, Mechanism(CKM.AES_GCM, GcmParams(iv="x" * 12)), aes(a)), CKR.MECHANISM_PARAM_INVALID),
    ("CTR bits as float", lambda a: a.app.encrypt_init(
        a.s, Mechanism(CKM.AES_CTR, CtrParams(bytes(16), 128.0)), aes(a)), CKR.MECHANISM_PARAM_INVALID),
    ("OAEP hash as text", lambda a: a.app.encrypt_init(
        a.s, Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(hash_alg="sha1")), rsa(a)[0]), CKR.MECHANISM_PARAM_INVALID),
    ("params of another mechanism", lambda a: a.app.encrypt_init(
        a.s, Mechanism(CKM.AES_CBC, GcmParams()), aes(a)), CKR.MECHANISM_PARAM_INVALID),
    ("data as int", lambda a: (a.app.digest_init(a.s, Mechanism(CKM.SHA256)), a.app.digest(a.s, 16)),
     CKR.ARGUMENTS_BAD),
    ("data as text", lambda a: (a.app.digest_init(a.s, Mechanism(CKM.SHA256)), a.app.digest(a.s, "abc")),
     CKR.ARGUMENTS_BAD),
    ("negative out_len", lambda a: (a.app.digest_init(a.s, Mechanism(CKM.SHA256)),
                                    a.app.digest(a.s, b"", out_len=-1)), CKR.ARGUMENTS_BAD),
    ("template as list", lambda a: a.app.create_object(a.s, [(CKA.CLASS, CKO.DATA)]), CKR.ARGUMENTS_BAD),
    ("attribute named by text", lambda a: a.app.create_object(a.s, {"label": "x"}), CKR.ATTRIBUTE_TYPE_INVALID),
    ("attribute types not a list", lambda a: a.app.get_attribute_value(a.s, aes(a), None), CKR.ARGUMENTS_BAD),
    ("label with a lone surrogate", lambda a: aes(a, label="\ud800"), CKR.ATTRIBUTE_VALUE_INVALID),
    ("find with a lone surrogate", lambda a: a.app.find(a.s, {CKA.LABEL: "\ud800"}), CKR.ATTRIBUTE_VALUE_INVALID),
    ("PIN with a lone surrogate", lambda a: login(a.app.hsm, CKU.USER, "\ud800:password1"), CKR.ARGUMENTS_BAD),
    ("PIN as None", lambda a: login(a.app.hsm, CKU.USER, None), CKR.ARGUMENTS_BAD),
    ("allowed mechanism above 64 bits", lambda a: aes(a, allowed_mechanisms=[2**70]),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("nested template in a template", lambda a: aes(a, wrap_template={CKA.WRAP_TEMPLATE: {}}),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("random length as text", lambda a: a.app.generate_random(a.s, "5"), CKR.ARGUMENTS_BAD),
    ("random over 1 MiB", lambda a: a.app.generate_random(a.s, 2**21), CKR.ARGUMENTS_BAD),
    ("find count as None", lambda a: (a.app.find_objects_init(a.s, {}), a.app.find_objects(a.s, None)),
     CKR.ARGUMENTS_BAD),
    ("session flags as None", lambda a: a.app.open_session(None), CKR.ARGUMENTS_BAD),
    ("user type as list", lambda a: a.app.login(a.s, [], "alice:x"), CKR.ARGUMENTS_BAD),
    ("data object of 1 MiB", lambda a: a.app.create_object(a.s, {CKA.CLASS: CKO.DATA, CKA.VALUE: bytes(2**20)}),
     CKR.ATTRIBUTE_VALUE_INVALID),
    ("read-only session shares", lambda a: (lambda ro: a.app.share(ro, aes(a), "bob"))(a.app.open_session(4)),
     CKR.SESSION_READ_ONLY),
    ("read-only session changes a password", lambda a: a.app.change_password(
        a.app.open_session(4), "alice", "new-pass-11", ALICE_PW), CKR.SESSION_READ_ONLY),
]


@pytest.mark.parametrize("name,action,expected", BAD_CALLS, ids=[r[0] for r in BAD_CALLS])
def test_bad_arguments_get_a_ckr(alice, name, action, expected):
    with pytest.raises(StrongroomError) as info:
        action(alice)
    assert info.value.ckr == expected, f"{info.value.ckr!r}: {info.value.message}"


def test_admin_cannot_trust_private_or_session_keys(hsm, alice, admin):
    session_key = alice.app.generate_key(alice.s, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 16})
    _, priv = ec(alice)
    for handle in (session_key, priv):
        assert rv(admin.app.set_attribute_value, admin.s, handle, {CKA.TRUSTED: True}) == CKR.OBJECT_HANDLE_INVALID


def test_error_messages_name_the_function(alice):
    with pytest.raises(StrongroomError) as info:
        alice.app.encrypt_init(alice.s, Mechanism(CKM.SHA256), aes(alice))
    assert info.value.ckr == CKR.MECHANISM_INVALID and "encryption" in info.value.message


def test_update_size_query_keeps_single_part_available(alice):
    key = aes(alice)
    alice.app.encrypt_init(alice.s, Mechanism(CKM.AES_ECB), key)
    assert alice.app.encrypt_update(alice.s, bytes(16), query=True) == 16
    assert len(alice.app.encrypt(alice.s, bytes(16))) == 16


def test_unknown_user_logins_are_audited_briefly(hsm):
    assert rv(login, hsm, CKU.USER, "x" * 100_000 + ":password") == CKR.PIN_INCORRECT
    last = hsm.store.audit_entries()[-1]
    assert last.event == "login-failed" and len(last.actor) <= 31


def test_directories_are_not_spoiled(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeviceError):
        HSM(empty, settings=FAST)
    assert list(empty.iterdir()) == []
    with pytest.raises(StrongroomError):
        HSM.initialize(empty, masking_key=b"k" * 16)
    assert list(empty.iterdir()) == []
    node = HSM.initialize(empty, settings=FAST)
    a = login(node, CKU.SO, f"admin:{initial_password(node)}")
    a.app.activate(a.s, "admin-pass-1")
    a.app.zeroize(a.s)
    before = len(node.store.audit_entries())
    node.close()
    again = HSM.initialize(empty, settings=FAST)
    assert again.state == State.OPERATIONAL
    entries = again.store.audit_entries()
    assert len(entries) > before and entries[before].event == "initialize"
    assert again.store.verify_audit().ok
    again.close()


def test_capacity_is_reported_and_enforced(tmp_path):
    from dataclasses import replace

    node = HSM.initialize(tmp_path / "n", settings=replace(FAST, max_token_objects=3))
    admin = login(node, CKU.SO, f"admin:{initial_password(node)}")
    admin.app.activate(admin.s, "admin-pass-1")
    admin.app.create_user(admin.s, "alice", ALICE_PW, "crypto-user")
    alice = login(node, CKU.USER, f"alice:{ALICE_PW}")
    first = aes(alice)
    ec(alice)
    info = node.info()
    assert (info["token_objects"], info["max_token_objects"], info["free_token_objects"]) == (3, 3, 0)
    assert info["open_sessions"] == 2 and info["free_disk_bytes"] > 0
    assert rv(aes, alice) == CKR.DEVICE_MEMORY
    alice.app.destroy_object(alice.s, first)
    assert node.info()["free_token_objects"] == 1
    aes(alice)
    node.close()


def test_key_separation_spans_an_imported_public_half(hsm, alice):
    """The public half of one's own RSA key imported with CKA_WRAP, while the private half decrypts, would let a
    wrapped key be decrypted in clear: the import is made, the wrap of a sensitive key under it is refused."""
    pub, _ = rsa(alice)
    attrs = alice.app.get_attributes(alice.s, pub, [CKA.MODULUS, CKA.PUBLIC_EXPONENT])
    template = {CKA.CLASS: CKO.PUBLIC_KEY, CKA.KEY_TYPE: CKK.RSA, CKA.TOKEN: True, **attrs}
    imported = alice.app.create_object(alice.s, {**template, CKA.WRAP: True})
    oaep = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256))
    assert rv(alice.app.wrap_key, alice.s, oaep, imported, hmac_key(alice)) == CKR.KEY_NOT_WRAPPABLE
    assert alice.app.create_object(alice.s, {**template, CKA.VERIFY: True}) > 0
