"""Digests against the NIST CAVP SHA ShortMsg/LongMsg vectors, and the shared hash table."""

from __future__ import annotations

import hashlib

import pytest

from strongroom.crypto import digest_init, hash_for
from strongroom.crypto.digests import hash_of_size, kdf_hash, mgf_hash, param_hash, split_digest_info
from strongroom.errors import MechanismInvalid, MechanismParamInvalid
from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKD, CKG, CKM

from .vectors import nist_records, unhex

FILES = {
    CKM.SHA_1: "hashes/SHA1/SHA1ShortMsg.rsp",
    CKM.SHA224: "hashes/SHA2/SHA224ShortMsg.rsp",
    CKM.SHA256: "hashes/SHA2/SHA256ShortMsg.rsp",
    CKM.SHA384: "hashes/SHA2/SHA384ShortMsg.rsp",
    CKM.SHA512: "hashes/SHA2/SHA512ShortMsg.rsp",
}


def _cases(mechanism: CKM) -> list[tuple[bytes, bytes]]:
    records = nist_records(FILES[mechanism])
    # Len is in bits; a zero-length message is written "00".
    cases = [(unhex(r["msg"])[: int(r["len"]) // 8], unhex(r["md"])) for r in records if "md" in r]
    return cases[::6]


@pytest.mark.parametrize("mechanism", list(FILES), ids=lambda m: m.name)
def test_nist_short_messages(mechanism: CKM) -> None:
    cases = _cases(mechanism)
    assert len(cases) >= 10
    for message, expected in cases:
        operation = digest_init(Mechanism(mechanism))
        operation.update(message)
        assert operation.final() == expected
        assert operation.digest_len == len(expected)


def test_long_message_in_odd_chunks() -> None:
    record = next(r for r in nist_records("hashes/SHA2/SHA256LongMsg.rsp") if "md" in r)
    message = unhex(record["msg"])[: int(record["len"]) // 8]
    operation = digest_init(Mechanism(CKM.SHA256))
    for offset in range(0, len(message), 37):
        operation.update(message[offset : offset + 37])
    assert operation.final() == unhex(record["md"])


def test_digest_errors() -> None:
    with pytest.raises(MechanismInvalid):
        digest_init(Mechanism(CKM.SHA256_HMAC))
    with pytest.raises(MechanismParamInvalid):
        digest_init(Mechanism(CKM.SHA256, b"param"))


def test_hash_table() -> None:
    assert hash_for(CKM.ECDSA_SHA384).name == "sha384"
    assert hash_for(CKM.SHA224_RSA_PKCS_PSS).name == "sha224"
    assert hash_for(CKM.SHA_1_HMAC_GENERAL).name == "sha1"
    assert mgf_hash(CKG.MGF1_SHA512).name == "sha512"
    assert kdf_hash(CKD.SHA256_KDF).name == "sha256"
    assert param_hash(CKM.SHA384).name == "sha384"
    assert hash_of_size(28).name == "sha224"
    assert hash_of_size(16) is None
    with pytest.raises(MechanismInvalid):
        hash_for(CKM.AES_CMAC)
    with pytest.raises(MechanismParamInvalid):
        param_hash(CKM.SHA256_HMAC)
    with pytest.raises(MechanismParamInvalid):
        kdf_hash(CKD.NULL)
    with pytest.raises(MechanismParamInvalid):
        mgf_hash(0x99)


# DigestInfo prefixes as RFC 8017 §9.2 note 1 lists them.
RFC8017_PREFIXES = {
    "sha1": "3021300906052b0e03021a05000414",
    "sha224": "302d300d06096086480165030402040500041c",
    "sha256": "3031300d060960864801650304020105000420",
    "sha384": "3041300d060960864801650304020205000430",
    "sha512": "3051300d060960864801650304020305000440",
}


@pytest.mark.parametrize("name", list(RFC8017_PREFIXES))
def test_split_digest_info(name: str) -> None:
    digest = hashlib.new(name, b"abc").digest()
    parsed = split_digest_info(bytes.fromhex(RFC8017_PREFIXES[name]) + digest)
    assert parsed is not None
    assert (parsed[0].name, parsed[1]) == (name, digest)
    assert split_digest_info(bytes.fromhex(RFC8017_PREFIXES[name]) + digest[:-1]) is None
    assert split_digest_info(digest) is None
