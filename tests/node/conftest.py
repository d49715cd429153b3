"""Fixtures: a real HSM over a temporary data directory, with an activated admin and two crypto users."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from strongroom.node import HSM, Application, Settings
from strongroom.vendor import CKU_APPLIANCE
from strongroom.vocab import CKU

# Cheap password hashing keeps the suite fast; the production default is RFC 9106's 64 MiB profile. The lockout
# back-off is off here so that tests count wrong passwords quickly; tests/node/test_lockout.py turns it on.
FAST = Settings(argon2_memory_kib=1024, argon2_time_cost=1, lockout_backoff_s=0.0)
ADMIN_PW = "admin-pass-1"
ALICE_PW = "alice-pass-1"
BOB_PW = "bob-pass-11"


@dataclass
class Logged:
    """An application with one open read-write session."""

    app: Application
    s: int


def login(hsm: HSM, user_type: int, pin: str, rw: bool = True) -> Logged:
    app = Application(hsm)
    s = app.open_session() if rw else app.open_session(flags=4)
    app.login(s, user_type, pin)
    return Logged(app, s)


def as_appliance(hsm: HSM) -> Logged:
    """An application logged in as the appliance user, as the control plane with its fleet certificate."""
    app = Application(hsm)
    app.appliance_certificate = True
    s = app.open_session()
    app.login(s, CKU_APPLIANCE, "")
    return Logged(app, s)


def initial_password(hsm: HSM) -> str:
    """The initial admin password the HSM made, as the appliance reads it."""
    appliance = as_appliance(hsm)
    try:
        return appliance.app.initial_password(appliance.s)
    finally:
        appliance.app.close_all_sessions()


def user_list(hsm: HSM) -> list[dict]:
    """Every user, as any application of ``hsm`` reads them in a session of its own."""
    app = Application(hsm)
    return app.list_users(app.open_session())


@pytest.fixture
def hsm(tmp_path):
    node = HSM.initialize(tmp_path / "hsm", cluster_id="cluster-test0000001", settings=FAST)
    admin = login(node, CKU.SO, f"admin:{initial_password(node)}")
    admin.app.activate(admin.s, ADMIN_PW)
    admin.app.create_user(admin.s, "alice", ALICE_PW, "crypto-user")
    admin.app.create_user(admin.s, "bob", BOB_PW, "crypto-user")
    admin.app.close_all_sessions()
    yield node
    node.close()


@pytest.fixture
def admin(hsm) -> Logged:
    return login(hsm, CKU.SO, f"admin:{ADMIN_PW}")


@pytest.fixture
def alice(hsm) -> Logged:
    return login(hsm, CKU.USER, f"alice:{ALICE_PW}")


@pytest.fixture
def bob(hsm) -> Logged:
    return login(hsm, CKU.USER, f"bob:{BOB_PW}")
