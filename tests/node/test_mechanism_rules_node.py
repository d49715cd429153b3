"""The parameter-consistency table walked row by row through the node's API (tests/mechanism_param_rows.py):
each inconsistent parameter answers ``CKR_MECHANISM_PARAM_INVALID`` at the call that names the mechanism, each
consistent one is accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strongroom.errors import StrongroomError
from strongroom.mechanism_params import Mechanism, PssParams
from strongroom.node import HSM
from strongroom.vocab import CKA, CKG, CKK, CKM, CKO, CKR, CKU

from ..mechanism_param_rows import GOOD, ROWS
from .conftest import ALICE_PW, FAST, Logged, initial_password, login
from .keys import aes, ec, hmac_key, rsa

DERIVED = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE_LEN: 32}


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> Any:
    node = HSM.initialize(tmp_path_factory.mktemp("rules") / "hsm", cluster_id="cluster-rules000001",
                          settings=FAST)
    admin = login(node, CKU.SO, f"admin:{initial_password(node)}")
    admin.app.activate(admin.s, "admin-password-1")
    admin.app.create_user(admin.s, "alice", ALICE_PW, "crypto-user")
    alice = login(node, CKU.USER, f"alice:{ALICE_PW}")
    yield who_and_operations(alice)
    node.close()


def who_and_operations(who: Logged) -> tuple[Logged, dict[str, Callable[[int, Mechanism], object]]]:
    """One key for each operation of the rows; each operation takes a session handle and the mechanism."""
    app = who.app
    cipher = aes(who)
    mac = aes(who, encrypt=False, decrypt=False, sign=True, verify=True)
    secret = hmac_key(who, sign=True, verify=True)
    kdf = hmac_key(who, derive=True)
    rsa_pub, _ = rsa(who)
    wrap_pub, _ = rsa(who, pub={CKA.WRAP: True, CKA.ENCRYPT: False, CKA.VERIFY: False},
                      priv={CKA.UNWRAP: True, CKA.SIGN: False, CKA.DECRYPT: False})
    target = aes(who, extractable=True)
    _, ec_priv = ec(who)
    return who, {
        "cipher": lambda s, mech: app.encrypt_init(s, mech, cipher),
        "mac": lambda s, mech: app.sign_init(s, mech, mac),
        "hmac": lambda s, mech: app.sign_init(s, mech, secret),
        "rsa_verify": lambda s, mech: app.verify_init(s, mech, rsa_pub),
        "rsa_encrypt": lambda s, mech: app.encrypt_init(s, mech, rsa_pub),
        "rsa_wrap": lambda s, mech: app.wrap_key(s, mech, wrap_pub, target),
        "ec_derive": lambda s, mech: app.derive_key(s, mech, ec_priv, DERIVED),
        "kdf_derive": lambda s, mech: app.derive_key(s, mech, kdf, DERIVED),
        "generate": lambda s, mech: app.generate_key(s, mech, {CKA.VALUE_LEN: 32}),
        "digest": lambda s, mech: app.digest_init(s, mech),
    }


@pytest.mark.parametrize(("mech", "operation", "fragment"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_each_inconsistent_parameter_is_refused_by_the_node(door, mech, operation, fragment):
    who, operations = door
    with pytest.raises(StrongroomError) as info:
        operations[operation](who.s, mech)
    assert info.value.ckr == CKR.MECHANISM_PARAM_INVALID, str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("mech", "operation"), [row[1:] for row in GOOD], ids=[row[0] for row in GOOD])
def test_each_consistent_parameter_is_accepted_by_the_node(door, mech, operation):
    who, operations = door
    session = who.app.open_session()  # an operation of its own, left active
    try:
        operations[operation](session, mech)
    finally:
        who.app.close_session(session)


def test_a_fips_cluster_holds_the_pss_salt_to_the_hash_length(door):
    # FIPS 186-5 §5.4 (g): 0 <= sLen <= hLen; the node of this module is a FIPS cluster (the default)
    who, operations = door
    for mech, hash_bytes in ((CKM.SHA256_RSA_PKCS_PSS, 32), (CKM.SHA384_RSA_PKCS_PSS, 48)):
        digest = CKM.SHA256 if hash_bytes == 32 else CKM.SHA384
        with pytest.raises(StrongroomError) as info:
            operations["rsa_verify"](who.s, Mechanism(mech, PssParams(digest, CKG.MGF1_SHA256, hash_bytes + 1)))
        assert info.value.ckr == CKR.MECHANISM_PARAM_INVALID
        assert f"sLen is at most the hash's length, {hash_bytes} bytes, in a FIPS cluster" in str(info.value)
        session = who.app.open_session()
        operations["rsa_verify"](session, Mechanism(mech, PssParams(digest, CKG.MGF1_SHA256, hash_bytes)))
        who.app.close_session(session)
