"""The PIN flags of ``C_GetTokenInfo`` (PKCS#11 3.0 §5.5) through the agent: for the user an application last
tried to log in as, from the cluster's own count of that user's wrong passwords. One wrong PIN shows
``CKF_USER_PIN_COUNT_LOW``; four (one more locks: the node's threshold is five) ``CKF_USER_PIN_FINAL_TRY``; five
``CKF_USER_PIN_LOCKED``; the ``CKF_SO_PIN_*`` flags for an admin. The count is the node's, not the
application's: wrong PINs another application entered count too, and an unlock clears the flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import strongroom.client as sdk
from strongroom.node.users import DEFAULT_LOCKOUT_THRESHOLD, backoff_s
from strongroom.pkcs11 import wire
from strongroom.vocab import CKF, CKR, CKU

from ..fixtures.cluster import ADMIN_PW
from .conftest import P11_KIT_CLIENT
from .raw import RawApplication, initialized, ok, request, u64s

CAROL_PW = "carol-pass-1"
DAVE_PW = "dave-pass-11"
ERIN_PW = "erin-pass-11"
PIN_FLAGS = (CKF.USER_PIN_COUNT_LOW | CKF.USER_PIN_FINAL_TRY | CKF.USER_PIN_LOCKED | CKF.SO_PIN_COUNT_LOW
             | CKF.SO_PIN_FINAL_TRY | CKF.SO_PIN_LOCKED)
TOKEN_INFO = "ssssuuuuuuuuuuuvvs"


def _pin_flags(app: RawApplication) -> CKF:
    """The PIN flags among the token's flags."""
    info = ok(app.call(request(6, "u", u64s(1))), 6, TOKEN_INFO)
    for _ in range(4):
        info.data()
    return CKF(info.u64()) & PIN_FLAGS


def _login(app: RawApplication, session: int, user_type: int, pin: str) -> bytes:
    return app.call(request(18, "uuay", u64s(session, user_type) + wire.Writer().byte_array(pin.encode()).bytes()))


@pytest.fixture(scope="module")
def users(node):
    _, config = node
    with sdk.connect(config) as cluster:
        admin = cluster.login("admin", ADMIN_PW, role="admin")
        admin.create_user("carol", CAROL_PW)
        admin.create_user("dave", DAVE_PW, role="admin")
        admin.create_user("erin", ERIN_PW)
        admin.close()
    return config


@pytest.mark.slow
def test_pin_flags_follow_the_clusters_count_of_wrong_pins(agent, users):
    assert DEFAULT_LOCKOUT_THRESHOLD == 5
    app = initialized(agent, 0)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    assert _pin_flags(app) == 0
    expected = {1: CKF.USER_PIN_COUNT_LOW, 2: CKF.USER_PIN_COUNT_LOW, 3: CKF.USER_PIN_COUNT_LOW,
                4: CKF.USER_PIN_COUNT_LOW | CKF.USER_PIN_FINAL_TRY,
                5: CKF.USER_PIN_COUNT_LOW | CKF.USER_PIN_LOCKED}
    for failures in range(1, 6):
        time.sleep(backoff_s(failures - 1, 1.0, 60.0) + 0.2)  # a login in the back-off is refused uncounted
        assert _login(app, session, CKU.USER, "carol:wrong-pass-1") == wire.error_body(int(CKR.PIN_INCORRECT))
        assert _pin_flags(app) == expected[failures], failures
        other = initialized(agent, 0)  # an application that tried no login sees no PIN flags
        assert _pin_flags(other) == 0
    assert _login(app, session, CKU.USER, f"carol:{CAROL_PW}") == wire.error_body(int(CKR.PIN_LOCKED))
    assert _pin_flags(app) == CKF.USER_PIN_COUNT_LOW | CKF.USER_PIN_LOCKED

    # the count is the cluster's: an admin's unlock clears the flags of every application that tried carol
    with sdk.connect(users) as cluster:
        admin = cluster.login("admin", ADMIN_PW, role="admin")
        admin.call("unlock_user", "carol")
        admin.close()
    assert _pin_flags(app) == 0
    # a wrong PIN another application entered counts for this one too, and a good login clears it
    elsewhere = initialized(agent, 0)
    elsewhere_session = ok(elsewhere.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    assert _login(elsewhere, elsewhere_session, CKU.USER, "carol:wrong-pass-1") \
        == wire.error_body(int(CKR.PIN_INCORRECT))
    assert _pin_flags(app) == CKF.USER_PIN_COUNT_LOW
    assert _login(app, session, CKU.USER, f"carol:{CAROL_PW}") == wire.reply_body(18, "")
    assert _pin_flags(app) == _pin_flags(elsewhere) == 0


@pytest.mark.slow
def test_an_admins_wrong_pins_show_the_so_pin_flags(agent, users):
    app = initialized(agent, 2)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    for failures in range(1, 5):
        time.sleep(backoff_s(failures - 1, 1.0, 60.0) + 0.2)
        pin = wire.Writer().byte_array(b"wrong-pass-1").byte_array(b"dave").bytes()  # C_LoginUser
        assert app.call(request(66, "uuayay", u64s(session, CKU.SO) + pin)) == wire.error_body(int(CKR.PIN_INCORRECT))
        assert _pin_flags(app) == (CKF.SO_PIN_COUNT_LOW | CKF.SO_PIN_FINAL_TRY if failures == 4
                                   else CKF.SO_PIN_COUNT_LOW), failures
    time.sleep(backoff_s(4, 1.0, 60.0) + 0.2)
    assert _login(app, session, CKU.SO, f"dave:{DAVE_PW}") == wire.reply_body(18, "")
    assert _pin_flags(app) == 0
    # an unknown user shows none, however many wrong PINs
    assert _login(app, session, CKU.SO, "nobody:wrong-pass-1") == wire.error_body(int(CKR.USER_ALREADY_LOGGED_IN))
    assert app.call(request(19, "u", u64s(session))) == wire.reply_body(19, "")
    assert _login(app, session, CKU.USER, "nobody:wrong-pass-1") == wire.error_body(int(CKR.PIN_INCORRECT))
    assert _pin_flags(app) == 0


def test_python_pkcs11_sees_user_pin_count_low_after_one_wrong_pin(agent, users):
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": "erin:wrong-pass-1",
           "GOOD_PIN": f"erin:{ERIN_PW}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_pin_flags.py")), str(P11_KIT_CLIENT)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["login"] == "PinIncorrect"
    assert out["before"] & PIN_FLAGS == 0
    assert out["after"] & PIN_FLAGS == CKF.USER_PIN_COUNT_LOW and out["count_low"]
    assert out["after"] & ~PIN_FLAGS == out["before"]
    assert out["good"] == out["before"]  # the good login cleared the count
