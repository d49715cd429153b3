"""Power-on self-tests: all pass, each injected fault is detected, and the embedded answers are published."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from strongroom.crypto import SELF_TESTS, require_self_tests, run_self_tests, selftest
from strongroom.errors import ArgumentsBad, FipsSelfTestFailed

from .vectors import lines, nist_records, unhex


def test_all_pass() -> None:
    results = run_self_tests()
    assert [r.name for r in results] == list(SELF_TESTS)
    assert SELF_TESTS == ("aes-gcm", "aes-kw", "sha-256", "hmac-sha256", "rsa", "ecdsa", "rng")
    assert all(r.passed for r in results)
    assert require_self_tests() == results


@pytest.mark.parametrize("fault", SELF_TESTS)
def test_each_fault_is_detected(fault: str) -> None:
    failed = [r.name for r in run_self_tests(fault=fault) if not r.passed]
    assert failed == [fault]
    with pytest.raises(FipsSelfTestFailed, match=fault):
        require_self_tests(fault=fault)


def test_unknown_fault_name() -> None:
    with pytest.raises(ArgumentsBad):
        run_self_tests(fault="des")


def test_embedded_answers_come_from_the_published_vectors() -> None:
    gcm = next(
        r for r in nist_records("ciphers/AES/GCM/gcmEncryptExtIV128.rsp")
        if (r["ivlen"], r["ptlen"], r["aadlen"], r["taglen"], r["count"]) == ("96", "128", "128", "128", "0")
    )
    embedded = (selftest._GCM_KEY, selftest._GCM_IV, selftest._GCM_PLAINTEXT, selftest._GCM_AAD)
    assert embedded == (unhex(gcm["key"]), unhex(gcm["iv"]), unhex(gcm["pt"]), unhex(gcm["aad"]))
    assert unhex(gcm["ct"]) + unhex(gcm["tag"]) == selftest._GCM_CIPHERTEXT_TAG

    hmac = nist_records("HMAC/rfc-4231-sha256.txt")[1]
    embedded = (selftest._HMAC_KEY, selftest._HMAC_MESSAGE, selftest._HMAC_SHA256)
    assert embedded == (unhex(hmac["key"]), unhex(hmac["msg"]), unhex(hmac["md"]))

    rsa_records = nist_records("asymmetric/RSA/FIPS_186-2/SigGen15_186-2.txt")
    numbers = next(r for r in rsa_records if r.get("mod") == "2048" and "d" in r)
    rsa_case = next(r for r in rsa_records if r.get("mod") == "2048" and r.get("shaalg") == "SHA256")
    assert unhex(rsa_case["msg"]) == selftest._RSA_MESSAGE
    assert unhex(rsa_case["s"]) == selftest._RSA_SIGNATURE
    key = serialization.load_pem_private_key(selftest._RSA_KEY_PEM, password=None)
    assert key.private_numbers().d == int(numbers["d"], 16)
    assert key.private_numbers().public_numbers.e == int(numbers["e"], 16)

    rfc6979 = "\n".join(lines("asymmetric/ECDSA/RFC6979/evppkey_ecdsa_rfc6979.txt"))
    assert selftest._ECDSA_KEY_PEM.decode().strip() in rfc6979
    r, s = selftest._ECDSA_SIGNATURE[:32].hex().upper(), selftest._ECDSA_SIGNATURE[32:].hex().upper()
    assert f"DigestSign = SHA256\nKey = P-256_PRIV\nNonceType = deterministic\nInput = \"sample\"\n" \
           f"Output = 3046022100{r}022100{s}" in rfc6979
