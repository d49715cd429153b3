"""The initial admin password, the lockout back-off, unlocking by admins and the owner-signed unlock: each
attack an outsider or a user could try, with the exact CKR it gets."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.errors import StrongroomError
from strongroom.node import HSM, Application
from strongroom.trust import owner_unlock
from strongroom.vocab import CKR, CKU

from ..cluster.pki import OwnerCA
from .conftest import ADMIN_PW, ALICE_PW, BOB_PW, FAST, Logged, as_appliance, initial_password, login

CLUSTER = "cluster-lockout0001"


def _ckr(call, *args) -> CKR:
    try:
        call(*args)
    except StrongroomError as exc:
        return exc.ckr
    return CKR.OK


def _login_rv(hsm: HSM, pin: str, user_type: int = CKU.USER) -> CKR:
    return _ckr(login, hsm, user_type, pin)


def _failures(hsm: HSM, name: str) -> tuple[int, bool]:
    record = hsm.repository.get_user(name)
    assert record is not None
    return record.failures, record.locked


@pytest.fixture
def owned(tmp_path):
    """An initialised cluster (the owner's CA is its trust anchor), activated, with a second admin and two
    crypto users; the lockout back-off off, as in the other node tests."""
    node = HSM.initialize(tmp_path / "hsm", cluster_id=CLUSTER, settings=FAST, cluster_key=True)
    owner = OwnerCA(tmp_path)
    appliance = as_appliance(node)
    csr = appliance.app.cluster_csr()
    appliance.app.initialize_cluster(appliance.s, owner.sign(csr.encode()).decode(), owner.pem.decode())
    admin = login(node, CKU.SO, f"admin:{initial_password(node)}")
    admin.app.activate(admin.s, ADMIN_PW)
    admin.app.create_user(admin.s, "admin2", "admin2-pass", "admin")
    admin.app.create_user(admin.s, "alice", ALICE_PW, "crypto-user")
    admin.app.create_user(admin.s, "bob", BOB_PW, "crypto-user")
    admin.app.close_all_sessions()
    yield node, owner
    node.close()


def _lock(node: HSM, name: str, user_type: int) -> None:
    for _ in range(FAST.lockout_threshold):
        assert _login_rv(node, f"{name}:wrong-password", user_type) == CKR.PIN_INCORRECT
    assert _failures(node, name) == (FAST.lockout_threshold, True)


def _anonymous(node: HSM) -> Logged:
    app = Application(node)
    return Logged(app, app.open_session())


# ----------------------------------------------------------------- the initial admin password
def test_two_clusters_initial_passwords_differ_and_password_is_refused(tmp_path):
    first = HSM.initialize(tmp_path / "a", settings=FAST)
    second = HSM.initialize(tmp_path / "b", settings=FAST)
    try:
        one, two = initial_password(first), initial_password(second)
        assert one != two and len(one) == len(two) == 24 and "password" not in (one, two)
        assert _login_rv(first, "admin:password", CKU.SO) == CKR.PIN_INCORRECT
        assert _login_rv(first, f"admin:{two}", CKU.SO) == CKR.PIN_INCORRECT
        assert _login_rv(first, f"admin:{one}", CKU.SO) == CKR.OK
    finally:
        first.close()
        second.close()


def test_the_initial_password_is_for_the_appliance_only_and_gone_once_activated(tmp_path):
    node = HSM.initialize(tmp_path / "n", settings=FAST)
    try:
        preco = initial_password(node)
        anonymous = _anonymous(node)
        assert _ckr(anonymous.app.initial_password, anonymous.s) == CKR.USER_NOT_LOGGED_IN
        admin = login(node, CKU.SO, f"admin:{preco}")
        assert _ckr(admin.app.initial_password, admin.s) == CKR.USER_NOT_LOGGED_IN
        assert preco not in json.dumps(admin.app.list_users(admin.s))
        admin.app.activate(admin.s, ADMIN_PW)
        appliance = as_appliance(node)
        assert _ckr(appliance.app.initial_password, appliance.s) == CKR.ACTION_PROHIBITED
        assert node.repository.get_user("admin").initial_password == ""  # type: ignore[union-attr]
        assert _login_rv(node, f"admin:{preco}", CKU.SO) == CKR.PIN_INCORRECT
    finally:
        node.close()


def test_hand_assembled_nodes_get_the_password_in_a_new_private_file(tmp_path):
    out = tmp_path / "initial"
    node = HSM.initialize(tmp_path / "n", settings=FAST, initial_password_file=out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().strip() == initial_password(node)
    node.close()
    assert _ckr(lambda: HSM.initialize(tmp_path / "m", initial_password_file=out)) == CKR.ARGUMENTS_BAD
    assert not (tmp_path / "m").exists()  # the file is never overwritten, and nothing was made
    joining = tmp_path / "joining"
    assert _ckr(lambda: HSM.initialize(tmp_path / "j", masking_key=b"k" * 32, initial_password_file=joining)) \
        == CKR.ARGUMENTS_BAD
    assert not joining.exists()


# ----------------------------------------------------------------- back-off
def test_the_back_off_refuses_before_the_check_without_counting(hsm):
    hsm.settings = replace(FAST, lockout_backoff_s=0.5)
    assert _login_rv(hsm, "alice:wrong-pass") == CKR.PIN_INCORRECT
    assert _login_rv(hsm, "alice:wrong-pass") == CKR.PIN_INCORRECT  # no wait after the first failure
    assert _failures(hsm, "alice") == (2, False)
    started = time.monotonic()
    # in back-off even the right password is refused, as a wrong one, at once and without counting
    assert [_login_rv(hsm, f"alice:{ALICE_PW}") for _ in range(20)] == [CKR.PIN_INCORRECT] * 20
    assert time.monotonic() - started < 0.5
    assert _failures(hsm, "alice") == (2, False)
    time.sleep(0.55)
    assert _login_rv(hsm, "alice:wrong-pass") == CKR.PIN_INCORRECT
    assert _failures(hsm, "alice") == (3, False)
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.PIN_INCORRECT  # now 1 s
    time.sleep(1.05)
    assert _login_rv(hsm, f"alice:{ALICE_PW}") == CKR.OK
    assert _failures(hsm, "alice") == (0, False)
    reasons = [e.detail.get("reason") for e in hsm.store.audit_entries() if e.event == "login-failed"]
    assert reasons.count("back-off") == 21


def test_back_off_grows_and_is_bounded():
    from strongroom.node.users import backoff_s

    assert [backoff_s(n, 1.0, 60.0) for n in range(9)] == [0, 0, 1, 2, 4, 8, 16, 32, 60]
    assert backoff_s(10**9, 1.0, 60.0) == 60.0 and backoff_s(5, 0.0, 60.0) == 0.0


# ----------------------------------------------------------------- unlocking by admins
def test_an_admin_unlocks_a_crypto_user_who_keeps_the_password(owned):
    node, _ = owned
    _lock(node, "alice", CKU.USER)
    assert _login_rv(node, f"alice:{ALICE_PW}") == CKR.PIN_LOCKED
    bob = login(node, CKU.USER, f"bob:{BOB_PW}")
    assert _ckr(bob.app.unlock_user, bob.s, "alice") == CKR.USER_NOT_LOGGED_IN  # users do not unlock users
    anonymous = _anonymous(node)
    assert _ckr(anonymous.app.unlock_user, anonymous.s, "alice") == CKR.USER_NOT_LOGGED_IN
    admin = login(node, CKU.SO, f"admin:{ADMIN_PW}")
    assert _ckr(admin.app.unlock_user, admin.s, "nobody") == CKR.ARGUMENTS_BAD
    admin.app.unlock_user(admin.s, "alice")
    assert _failures(node, "alice") == (0, False)
    assert _login_rv(node, f"alice:{ALICE_PW}") == CKR.OK
    [entry] = [e for e in node.store.audit_entries() if e.event == "user-unlock"]
    assert entry.actor == "admin" and entry.detail["user"] == "alice" and entry.detail["was_locked"] is True


def test_an_admin_cannot_unlock_itself_but_another_admin_can(owned):
    node, _ = owned
    admin = login(node, CKU.SO, f"admin:{ADMIN_PW}")  # logged in before the attack
    _lock(node, "admin", CKU.SO)
    assert _ckr(admin.app.unlock_user, admin.s, "admin") == CKR.ACTION_PROHIBITED
    admin.app.change_password(admin.s, "admin", "admin-pass-9")  # its own password: the lock stays
    assert _failures(node, "admin") == (FAST.lockout_threshold, True)
    assert _login_rv(node, "admin:admin-pass-9", CKU.SO) == CKR.PIN_LOCKED
    other = login(node, CKU.SO, "admin2:admin2-pass")
    other.app.unlock_user(other.s, "admin")
    assert _login_rv(node, "admin:admin-pass-9", CKU.SO) == CKR.OK


# ----------------------------------------------------------------- the owner-signed unlock
def test_every_user_locked_then_the_owner_unlocks_an_admin_who_unlocks_the_others(owned):
    node, owner = owned
    for name, user_type in (("admin", CKU.SO), ("admin2", CKU.SO), ("alice", CKU.USER), ("bob", CKU.USER)):
        _lock(node, name, user_type)
    assert _login_rv(node, f"admin:{ADMIN_PW}", CKU.SO) == CKR.PIN_LOCKED
    signed = owner_unlock.sign(owner.key, CLUSTER, "admin", 600)
    carrier = _anonymous(node)  # no login: the owner's signature is the authority
    assert carrier.app.owner_unlock(carrier.s, signed) == "admin"
    assert _ckr(carrier.app.owner_unlock, carrier.s, signed) == CKR.SIGNATURE_INVALID  # replayed
    admin = login(node, CKU.SO, f"admin:{ADMIN_PW}")
    for name in ("admin2", "alice", "bob"):
        admin.app.unlock_user(admin.s, name)
    assert _login_rv(node, f"alice:{ALICE_PW}") == CKR.OK
    assert _login_rv(node, "admin2:admin2-pass", CKU.SO) == CKR.OK
    entries = node.store.audit_entries()
    owner_entries = [e for e in entries if e.event == "owner-unlock"]
    assert [(e.actor, e.detail["user"]) for e in owner_entries] == [("owner", "admin")]
    assert owner_entries[0].detail["nonce"] == json.loads(signed)["claims"]["nonce"]
    assert [(e.actor, e.detail["user"]) for e in entries if e.event == "user-unlock"] == [
        ("admin", "admin2"), ("admin", "alice"), ("admin", "bob")]
    assert node.store.verify_audit().ok


def test_forged_replayed_and_misdirected_unlock_requests_are_refused(owned, tmp_path):
    node, owner = owned
    _lock(node, "admin", CKU.SO)
    _lock(node, "alice", CKU.USER)
    carrier = _anonymous(node)
    stranger = OwnerCA(tmp_path, "stranger-ca")
    now = time.time()

    def tampered(**claims) -> bytes:
        request = json.loads(owner_unlock.sign(owner.key, CLUSTER, "admin", 600))
        request["claims"].update(claims)
        return json.dumps(request).encode()

    refused = {
        "another CA's key": (owner_unlock.sign(stranger.key, CLUSTER, "admin", 600), CKR.SIGNATURE_INVALID),
        "a fresh key": (owner_unlock.sign(ec.generate_private_key(ec.SECP256R1()), CLUSTER, "admin", 600),
                        CKR.SIGNATURE_INVALID),
        "another cluster": (owner_unlock.sign(owner.key, "cluster-other000001", "admin", 600),
                            CKR.SIGNATURE_INVALID),
        "another user after signing": (tampered(username="admin2"), CKR.SIGNATURE_INVALID),
        "a later expiry after signing": (tampered(not_after=int(now) + 3000), CKR.SIGNATURE_INVALID),
        "expired": (owner_unlock.sign(owner.key, CLUSTER, "admin", 60, now=now - 120), CKR.SIGNATURE_INVALID),
        "valid too long": (owner_unlock.sign(owner.key, CLUSTER, "admin", owner_unlock.MAX_VALIDITY_S,
                                             now=now + 3600), CKR.SIGNATURE_INVALID),
        "a crypto user": (owner_unlock.sign(owner.key, CLUSTER, "alice", 600), CKR.ACTION_PROHIBITED),
        "an unknown user": (owner_unlock.sign(owner.key, CLUSTER, "nobody", 600), CKR.ARGUMENTS_BAD),
        "not JSON": (b"\xff" * 40, CKR.ARGUMENTS_BAD),
        "an extra field": (tampered(role="admin"), CKR.ARGUMENTS_BAD),
        "a short nonce": (tampered(nonce="00"), CKR.ARGUMENTS_BAD),
        "too long": (b" " * (owner_unlock.MAX_REQUEST_BYTES + 1), CKR.ARGUMENTS_BAD),
    }
    got = {what: _ckr(carrier.app.owner_unlock, carrier.s, data) for what, (data, _) in refused.items()}
    assert got == {what: ckr for what, (_, ckr) in refused.items()}
    assert _ckr(carrier.app.owner_unlock, carrier.s, "text") == CKR.ARGUMENTS_BAD
    assert _failures(node, "admin") == (FAST.lockout_threshold, True)
    assert _failures(node, "alice") == (FAST.lockout_threshold, True)
    assert not [e for e in node.store.audit_entries() if e.event == "owner-unlock"]


def test_a_cluster_without_an_owner_has_no_owner_unlock(hsm, tmp_path):
    owner = OwnerCA(tmp_path)
    carrier = _anonymous(hsm)
    signed = owner_unlock.sign(owner.key, hsm.cluster_id, "admin", 600)
    assert _ckr(carrier.app.owner_unlock, carrier.s, signed) == CKR.ACTION_PROHIBITED


def test_a_request_signs_for_a_bounded_time():
    key = ec.generate_private_key(ec.SECP256R1())
    for seconds in (0, -1, owner_unlock.MAX_VALIDITY_S + 1):
        assert _ckr(owner_unlock.sign, key, CLUSTER, "admin", seconds) == CKR.ARGUMENTS_BAD
