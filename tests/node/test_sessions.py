"""Login state per application, session lifetime, session objects, find (PKCS#11 3.0 §5.6, §5.7)."""

from __future__ import annotations

from strongroom.crypto.params import Mechanism
from strongroom.errors import StrongroomError
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR, CKS, CKU

from .conftest import ALICE_PW, login
from .keys import aes, rsa


def rv(fn, *args, **kwargs) -> CKR:
    try:
        fn(*args, **kwargs)
    except StrongroomError as exc:
        return exc.ckr
    return CKR.OK


def test_login_is_shared_by_the_applications_sessions(alice):
    other = alice.app.open_session()
    assert alice.app.session_info(other)["state"] == CKS.RW_USER_FUNCTIONS
    assert rv(alice.app.login, other, CKU.USER, f"alice:{ALICE_PW}") == CKR.USER_ALREADY_LOGGED_IN
    ro = alice.app.open_session(flags=4)
    assert alice.app.session_info(ro) == {"state": CKS.RO_USER_FUNCTIONS, "flags": 4, "device_error": 0}


def test_closing_the_last_session_logs_out(hsm, alice):
    alice.app.close_session(alice.s)
    s = alice.app.open_session()
    assert alice.app.session_info(s)["state"] == CKS.RW_PUBLIC_SESSION
    alice.app.login(s, CKU.USER, f"alice:{ALICE_PW}")


def test_logout_ends_active_operations(alice):
    _, priv = rsa(alice)
    alice.app.sign_init(alice.s, Mechanism(CKM.SHA256_RSA_PKCS), priv)
    alice.app.logout(alice.s)
    assert rv(alice.app.sign, alice.s, b"data") == CKR.OPERATION_NOT_INITIALIZED
    assert rv(alice.app.get_attributes, alice.s, priv, [CKA.LABEL]) == CKR.OBJECT_HANDLE_INVALID


def test_session_objects_die_with_their_session(hsm, alice):
    s2 = alice.app.open_session()
    key = alice.app.generate_key(s2, Mechanism(CKM.AES_KEY_GEN), {CKA.VALUE_LEN: 16, CKA.LABEL: "eph"})
    assert key >> 63 == 1
    assert alice.app.find(alice.s, {CKA.LABEL: "eph"}) == [key]
    other = login(hsm, CKU.USER, f"alice:{ALICE_PW}")
    assert other.app.find(other.s, {CKA.LABEL: "eph"}) == []
    alice.app.close_session(s2)
    assert alice.app.find(alice.s, {CKA.LABEL: "eph"}) == []
    assert rv(alice.app.get_attributes, alice.s, key, [CKA.LABEL]) == CKR.OBJECT_HANDLE_INVALID
    assert hsm.info()["session_objects"] == 0


def test_token_objects_survive_and_handles_are_never_reused(hsm, alice):
    first = aes(alice, label="keep")
    alice.app.destroy_object(alice.s, first)
    second = aes(alice, label="keep")
    assert second > first
    assert rv(alice.app.get_attributes, alice.s, first, [CKA.LABEL]) == CKR.OBJECT_HANDLE_INVALID
    path = hsm.data_dir
    hsm.close()
    from strongroom.node import HSM

    from .conftest import FAST

    again = HSM(path, settings=FAST)
    a = login(again, CKU.USER, f"alice:{ALICE_PW}")
    assert a.app.find(a.s, {CKA.LABEL: "keep"}) == [second]
    third = aes(a, label="keep")
    assert third > second
    again.close()


def test_find_in_pieces_and_filtering(hsm, alice, admin):
    keys = [aes(alice, label="batch") for _ in range(5)]
    alice.app.find_objects_init(alice.s, {CKA.LABEL: "batch", CKA.CLASS: CKO.SECRET_KEY})
    assert rv(alice.app.find_objects_init, alice.s, {}) == CKR.OPERATION_ACTIVE
    got = alice.app.find_objects(alice.s, 2) + alice.app.find_objects(alice.s, 2) + alice.app.find_objects(alice.s, 2)
    assert got == keys
    assert alice.app.find_objects(alice.s, 2) == []
    alice.app.find_objects_final(alice.s)
    assert rv(alice.app.find_objects, alice.s, 1) == CKR.OPERATION_NOT_INITIALIZED
    assert alice.app.find(alice.s, {CKA.KEY_TYPE: CKK.AES, CKA.LABEL: "batch"}) == keys
    # the admin does not see private objects (PKCS#11: only the normal user does)
    assert admin.app.find(admin.s, {}) == []
    # a find template naming key material matches nothing
    assert alice.app.find(alice.s, {CKA.VALUE: bytes(32)}) == []


def test_get_attribute_value_processes_every_entry(alice):
    key = aes(alice)
    got = alice.app.get_attribute_value(alice.s, key, [CKA.LABEL, CKA.VALUE, CKA.ID, CKA.MODULUS, CKA.WRAP_TEMPLATE])
    assert got == [(0, "aes"), (CKR.ATTRIBUTE_SENSITIVE, None), (0, b""), (CKR.ATTRIBUTE_TYPE_INVALID, None),
                   (0, {})]


def test_invalid_session_handle(hsm):
    app = hsm.connect()
    assert rv(app.login, 99, CKU.USER, f"alice:{ALICE_PW}") == CKR.SESSION_HANDLE_INVALID
    assert rv(app.open_session, 0) == CKR.SESSION_PARALLEL_NOT_SUPPORTED
