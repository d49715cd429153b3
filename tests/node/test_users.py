"""Lockout, password changes and the audit records of logins."""

from __future__ import annotations

import pytest

from strongroom.errors import StrongroomError
from strongroom.node import HSM
from strongroom.vocab import CKR, CKU

from .conftest import ALICE_PW, FAST, initial_password, login


def _login_rv(hsm: HSM, pin: str) -> CKR:
    try:
        login(hsm, CKU.USER, pin)
    except StrongroomError as exc:
        return exc.ckr
    return CKR.OK


def test_five_wrong_passwords_lock_and_admin_reset_unlocks(hsm, admin):
    assert [_login_rv(hsm, "alice:wrong-pass") for _ in range(5)] == [CKR.PIN_INCORRECT] * 5
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.PIN_LOCKED
    users = {u["username"]: u for u in admin.app.list_users(admin.s)}
    assert users["alice"]["locked"] is True and users["alice"]["failures"] == 5
    admin.app.change_password(admin.s, "alice", "alice-pass-2")
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.PIN_INCORRECT
    assert _login_rv(hsm, "alice:alice-pass-2") == CKR.OK
    events = [(e.event, e.actor) for e in hsm.store.audit_entries()]
    assert ("lockout", "alice") in events
    assert events.count(("login-failed", "alice")) == 7
    assert events[-1] == ("login", "alice")


def test_success_resets_the_failure_count(hsm, admin):
    for _ in range(4):
        assert _login_rv(hsm, "alice:wrong-pass") == CKR.PIN_INCORRECT
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.OK
    for _ in range(4):
        assert _login_rv(hsm, "alice:wrong-pass") == CKR.PIN_INCORRECT
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.OK


def test_lockout_threshold_is_configurable(tmp_path):
    from dataclasses import replace

    node = HSM.initialize(tmp_path / "n", settings=replace(FAST, lockout_threshold=2))
    assert [_login_rv(node, "admin:wrong-pass") for _ in range(2)] == [CKR.PIN_INCORRECT] * 2
    try:
        login(node, CKU.SO, f"admin:{initial_password(node)}")
    except StrongroomError as exc:
        assert exc.ckr == CKR.PIN_LOCKED
    else:
        pytest.fail("a locked admin logged in")
    node.close()


def test_users_and_lockout_survive_a_restart(hsm):
    for _ in range(5):
        _login_rv(hsm, "alice:wrong-pass")
    path = hsm.data_dir
    hsm.close()
    again = HSM(path, settings=FAST)
    assert _login_rv(again, f"alice:{ALICE_PW}") == CKR.PIN_LOCKED
    assert _login_rv(again, "bob:bob-pass-11") == CKR.OK
    again.close()


def test_own_password_change_and_user_delete(hsm, admin, bob):
    bob.app.change_password(bob.s, "bob", "bob-pass-22", old_password="bob-pass-11")
    assert _login_rv(hsm, "bob:bob-pass-22") == CKR.OK
    admin.app.delete_user(admin.s, "bob")
    assert _login_rv(hsm, "bob:bob-pass-22") == CKR.PIN_INCORRECT
    assert [u["username"] for u in admin.app.list_users(admin.s)] == ["admin", "alice"]


def test_appliance_role_is_limited_to_health_and_audit(hsm, admin):
    from strongroom.vendor import CKU_APPLIANCE

    from .keys import aes

    admin.app.create_user(admin.s, "app_user", "appliance-pass", "appliance")
    appliance = login(hsm, CKU_APPLIANCE, "app_user:appliance-pass")
    assert appliance.app.verify_audit().ok
    entries = appliance.app.export_audit(after_seq=0)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1].event == "login" and entries[-1].actor == "app_user"
    assert appliance.app.hsm_info()["state"] == "operational"
    for action in (lambda: aes(appliance),
                   lambda: appliance.app.create_user(appliance.s, "carol", "carol-pass", "crypto-user")):
        with pytest.raises(StrongroomError) as info:
            action()
        assert info.value.ckr == CKR.USER_NOT_LOGGED_IN
    # a crypto user may not read the audit trail
    alice = login(hsm, CKU.USER, f"alice:{ALICE_PW}")
    with pytest.raises(StrongroomError) as info:
        alice.app.export_audit()
    assert info.value.ckr == CKR.USER_NOT_LOGGED_IN
