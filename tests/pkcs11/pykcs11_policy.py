"""A pytest plugin for running PyKCS11's own test suite: the tests skipped, each with its reason.

The suite runs unchanged but for its PINs. ``PYKCS11_TARGET`` names the token (``strongroom`` or ``softhsm2``):

- on both, the tests that assert the token is SoftHSM by its manufacturer ID (they can pass on no other token);
- on Strongroom, the tests that fail on a rule of Strongroom's (the rule named), and those that fail the same
  way on SoftHSM2 through the same client (not a property of either token).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_SOFTHSM_ONLY = "asserts the token is SoftHSM by its manufacturer ID ('SoftHSM'): no other token can pass it"
IDENTITY = {
    "test_info.py::TestUtil::test_getInfo": _SOFTHSM_ONLY,
    "test_info.py::TestUtil::test_getSlotInfo": _SOFTHSM_ONLY,
    "test_info.py::TestUtil::test_getTokenInfo": _SOFTHSM_ONLY,
    "test_LowLevel.py::TestUtil::test_LowLevel": _SOFTHSM_ONLY,
}

_BOTH_FAIL = "fails the same way on SoftHSM2 through the same client: "
STRONGROOM = {
    "test_gc.py::TestUtil::test_gc": "calls C_Logout in sessions nobody logged in to: PKCS#11 3.0 §5.6 answers "
                                     "CKR_USER_NOT_LOGGED_IN (SoftHSM2 answers CKR_OK)",
    "test_random.py::TestUtil::test_seedRandom": "the HSM's random generator takes no seed "
                                                 "(CKR_RANDOM_SEED_NOT_SUPPORTED, PKCS#11 3.0 §5.15)",
    **{f"test_derive.py::TestUtil::test_deriveKey_{name}": _BOTH_FAIL + f"{name} is not offered "
       "(CKR_MECHANISM_INVALID) and the test does not ask" for name in ("CKM_EXTRACT_KEY_FROM_KEY",
                                                                         "CKM_XOR_BASE_AND_DATA")},
    "test_symetric.py::TestUtil::test_multi_part_symmetric": _BOTH_FAIL + "CKR_BUFFER_TOO_SMALL from "
                                                             "C_EncryptFinal for CKM_AES_ECB",
}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    target = os.environ.get("PYKCS11_TARGET")
    skips = dict(IDENTITY)
    if target == "strongroom":
        skips.update(STRONGROOM)
    for item in items:
        key = "::".join(item.nodeid.split("::")[-3:]).removeprefix("test/")
        reason = skips.get(key)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
