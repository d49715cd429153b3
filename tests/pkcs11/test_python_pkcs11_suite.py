"""python-pkcs11's own test suite (its PyPI source distribution) against a NON_FIPS Strongroom cluster through
p11-kit's client.

Its tests run unchanged; ``python_pkcs11_policy`` adapts the defaults the suite leaves to the token and skips,
with reasons, what Strongroom refuses by design. Every test that runs must pass; the counts are printed (and
recorded in docs/pkcs11.md next to SoftHSM2's through the same client).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT
from .downloads import sdist_tests, unreachable
from .newer_p11kit import client as newer_client
from .newer_p11kit import default_cache

VERSION = "0.10.1"
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def node(non_fips_node):
    """A NON_FIPS cluster: the suite signs with SHA-1 (``CKM_SHA1_RSA_PKCS_PSS``), which a FIPS cluster refuses."""
    return non_fips_node


def _suite() -> Path | None:
    """The source distribution's test folder, unpacked once in the cache; None if PyPI cannot be reached."""
    return sdist_tests("python-pkcs11", VERSION, default_cache().parent / f"python-pkcs11-{VERSION}",
                       "tests", "__init__.py")


@pytest.mark.network
@pytest.mark.parametrize(("client", "at_least"), [("0.24", 55), ("sid", 76)])
def test_python_pkcs11_suite_passes_every_test_it_runs(agent, tmp_path, client, at_least):
    suite = _suite()
    if suite is None:
        unreachable("PyPI cannot be reached for python-pkcs11's source distribution")
    module, wrap = P11_KIT_CLIENT, list
    if client != "0.24":
        newer = newer_client(client, default_cache())
        if newer is None:
            unreachable("Debian's package registry cannot be reached")
        module, wrap = newer.module, newer.command
    report = Path(os.environ.get("PYTHON_PKCS11_REPORT_DIR", tmp_path)) / f"junit-{client}.xml"
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PKCS11_MODULE": str(module),
           "PKCS11_TOKEN_LABEL": "cluster-test0000001", "PKCS11_TOKEN_PIN": f"alice:{ALICE_PW}",
           "PYTHONPATH": str(HERE), "P11KIT_CLIENT_GENERATION": "0" if client == "0.24" else "2"}
    done = subprocess.run(wrap([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                                "-p", "python_pkcs11_policy", f"--junitxml={report}", "tests"]),
                          cwd=suite, capture_output=True, text=True, timeout=900, env=env)
    root = ET.parse(report).getroot()  # noqa: S314 - the report the suite just wrote
    counts = {key: sum(int(s.get(key, 0)) for s in root.iter("testsuite"))
              for key in ("tests", "failures", "errors", "skipped")}
    print(f"python-pkcs11 {VERSION} suite through p11-kit {client}'s client: {counts}")
    assert counts["failures"] == counts["errors"] == 0, done.stdout[-6000:]
    assert counts["tests"] - counts["skipped"] >= at_least
