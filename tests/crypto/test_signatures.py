"""Signatures and MACs: NIST/RFC known answers, openssl as the independent verifier, PKCS#11 rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from strongroom.crypto import sign_init, verify_init
from strongroom.errors import (
    DataInvalid,
    DataLenRange,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    MechanismParamInvalid,
    SignatureInvalid,
    SignatureLenRange,
)
from strongroom.mechanism_params import Mechanism, PssParams
from strongroom.vocab import CKG, CKM

from . import openssl
from .vectors import ed25519_sign_input, nist_records, unhex

RSA_PKCS_BY_HASH = {
    "SHA1": CKM.SHA1_RSA_PKCS,
    "SHA224": CKM.SHA224_RSA_PKCS,
    "SHA256": CKM.SHA256_RSA_PKCS,
    "SHA384": CKM.SHA384_RSA_PKCS,
    "SHA512": CKM.SHA512_RSA_PKCS,
}
RSA_PSS_BY_HASH = {
    "SHA1": (CKM.SHA1_RSA_PKCS_PSS, CKM.SHA_1, CKG.MGF1_SHA1),
    "SHA224": (CKM.SHA224_RSA_PKCS_PSS, CKM.SHA224, CKG.MGF1_SHA224),
    "SHA256": (CKM.SHA256_RSA_PKCS_PSS, CKM.SHA256, CKG.MGF1_SHA256),
    "SHA384": (CKM.SHA384_RSA_PKCS_PSS, CKM.SHA384, CKG.MGF1_SHA384),
    "SHA512": (CKM.SHA512_RSA_PKCS_PSS, CKM.SHA512, CKG.MGF1_SHA512),
}
ECDSA_BY_HASH = {
    "SHA-1": CKM.ECDSA_SHA1,
    "SHA-224": CKM.ECDSA_SHA224,
    "SHA-256": CKM.ECDSA_SHA256,
    "SHA-384": CKM.ECDSA_SHA384,
    "SHA-512": CKM.ECDSA_SHA512,
}
# RFC 8017 §9.2 note 1.
DIGEST_INFO_PREFIX = {
    "sha1": "3021300906052b0e03021a05000414",
    "sha224": "302d300d06096086480165030402040500041c",
    "sha256": "3031300d060960864801650304020105000420",
    "sha384": "3041300d060960864801650304020205000430",
    "sha512": "3051300d060960864801650304020305000440",
}


def sign(mech: Mechanism, key: object, data: bytes) -> bytes:
    operation = sign_init(mech, key)
    operation.update(data)
    signature = operation.final()
    assert len(signature) == operation.signature_len
    return signature


def verify(mech: Mechanism, key: object, data: bytes, signature: bytes) -> None:
    operation = verify_init(mech, key)
    operation.update(data)
    operation.final(signature)


# --- RSA PKCS#1 v1.5: NIST CAVS SigGen15 (deterministic, so signatures must match exactly) ---------------

def _siggen15() -> list[tuple[rsa.RSAPrivateKey, str, bytes, bytes]]:
    cases, numbers, taken = [], {}, set()
    for record in nist_records("asymmetric/RSA/FIPS_186-2/SigGen15_186-2.txt"):
        numbers.update({k: int(record[k], 16) for k in ("n", "e", "d") if k in record})
        if record.get("mod") not in ("2048", "3072") or "msg" not in record:
            continue
        if (record["mod"], record["shaalg"]) in taken:
            continue
        taken.add((record["mod"], record["shaalg"]))
        n, e, d = numbers["n"], numbers["e"], numbers["d"]
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
        key = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
            rsa.RSAPublicNumbers(e, n),
        ).private_key()
        cases.append((key, record["shaalg"], unhex(record["msg"]), unhex(record["s"])))
    return cases


def test_rsa_pkcs1_nist_siggen() -> None:
    cases = _siggen15()
    assert len(cases) == 10
    for key, hash_name, message, expected in cases:
        mech = Mechanism(RSA_PKCS_BY_HASH[hash_name])
        assert sign(mech, key, message) == expected
        verify(mech, key.public_key(), message, expected)
        # The same signature through raw RSA_PKCS over a DigestInfo the caller built.
        digest = hashlib.new(hash_name, message).digest()
        digest_info = bytes.fromhex(DIGEST_INFO_PREFIX[hash_name.lower()]) + digest
        assert sign(Mechanism(CKM.RSA_PKCS), key, digest_info) == expected
        verify(Mechanism(CKM.RSA_PKCS), key.public_key(), digest_info, expected)
        with pytest.raises(SignatureInvalid):
            verify(mech, key.public_key(), message + b"x", expected)


def test_rsa_pkcs_raw_rules(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    mech = Mechanism(CKM.RSA_PKCS)
    with pytest.raises(DataInvalid):
        sign(mech, rsa_key, os.urandom(36))  # e.g. TLS 1.0 MD5‖SHA-1: not a DigestInfo
    with pytest.raises(DataLenRange):
        sign(mech, rsa_key, bytes(246))
    # Verification recovers the encoded message, so any data verifies: let openssl sign raw bytes.
    key_pem = openssl.write_private_pem(rsa_key, tmp_path / "key.pem")
    data = os.urandom(36)
    signed = openssl.run("pkeyutl", "-sign", "-inkey", key_pem, data=data)
    assert signed.returncode == 0, signed.stderr
    verify(mech, rsa_key.public_key(), data, signed.stdout)
    with pytest.raises(SignatureInvalid):
        verify(mech, rsa_key.public_key(), data[:-1] + b"\0", signed.stdout)
    with pytest.raises(SignatureLenRange):
        verify(mech, rsa_key.public_key(), data, signed.stdout[1:])


# --- RSA PSS: NIST CAVS SigVerPSS ----------------------------------------------------------------------

def test_rsa_pss_nist_sigver() -> None:
    n, checked, failures = 0, 0, 0
    for record in nist_records("asymmetric/RSA/FIPS_186-2/SigVerPSS_186-3.rsp"):
        if "n" in record:
            n = int(record["n"], 16)
        if record.get("mod") != "2048" or "msg" not in record:
            continue
        mechanism, hash_alg, mgf = RSA_PSS_BY_HASH[record["shaalg"]]
        salt = unhex(record["saltval"]) if record["saltval"] != "00" else b""
        public = rsa.RSAPublicNumbers(int(record["e"], 16), n).public_key()
        mech = Mechanism(mechanism, PssParams(hash_alg=hash_alg, mgf=mgf, salt_len=len(salt)))
        message, signature = unhex(record["msg"]), unhex(record["s"])
        if record["result"].startswith("P"):
            verify(mech, public, message, signature)
        else:
            failures += 1
            with pytest.raises(SignatureInvalid):
                verify(mech, public, message, signature)
        checked += 1
    assert checked >= 50 and 0 < failures < checked


def test_rsa_pss_raw_and_openssl(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    params = PssParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256, salt_len=32)
    message = os.urandom(100)
    signature = sign(Mechanism(CKM.SHA256_RSA_PKCS_PSS, params), rsa_key, message)
    raw = sign(Mechanism(CKM.RSA_PKCS_PSS, params), rsa_key, hashlib.sha256(message).digest())
    digest = hashlib.sha256(message).digest()
    verify(Mechanism(CKM.RSA_PKCS_PSS, params), rsa_key.public_key(), digest, signature)

    pub = openssl.write_public_pem(rsa_key, tmp_path / "pub.pem")
    (tmp_path / "msg").write_bytes(message)
    for index, candidate in enumerate((signature, raw)):
        (tmp_path / f"sig{index}").write_bytes(candidate)
        result = openssl.run(
            "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
            "-verify", pub, "-signature", tmp_path / f"sig{index}", tmp_path / "msg",
        )
        assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(DataLenRange):
        sign(Mechanism(CKM.RSA_PKCS_PSS, params), rsa_key, bytes(20))


@pytest.mark.parametrize(
    ("mechanism", "params"),
    [
        (CKM.SHA256_RSA_PKCS_PSS, PssParams(hash_alg=CKM.SHA384, mgf=CKG.MGF1_SHA384, salt_len=48)),
        (CKM.SHA256_RSA_PKCS_PSS, PssParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256, salt_len=256 - 32 - 1)),
        (CKM.SHA256_RSA_PKCS_PSS, PssParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256, salt_len=-1)),
        (CKM.RSA_PKCS_PSS, PssParams(hash_alg=CKM.SHA256, mgf=0x77, salt_len=32)),
        (CKM.RSA_PKCS_PSS, None),
    ],
)
def test_rsa_pss_bad_parameters(rsa_key: rsa.RSAPrivateKey, mechanism: CKM, params: PssParams | None) -> None:
    with pytest.raises(MechanismParamInvalid):
        sign_init(Mechanism(mechanism, params), rsa_key)


def test_rsa_openssl_verifies_pkcs1(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    message = os.urandom(1000)
    pub = openssl.write_public_pem(rsa_key, tmp_path / "pub.pem")
    (tmp_path / "msg").write_bytes(message)
    for name, mechanism in RSA_PKCS_BY_HASH.items():
        (tmp_path / "sig").write_bytes(sign(Mechanism(mechanism), rsa_key, message))
        result = openssl.run(
            "dgst", f"-{name.lower()}", "-verify", pub, "-signature", tmp_path / "sig", tmp_path / "msg"
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- ECDSA: NIST CAVS SigVer (FIPS 186-3) and secp256k1 ------------------------------------------------

CURVES = {"P-224": ec.SECP224R1(), "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def _public(record: dict, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(int(record["qx"], 16), int(record["qy"], 16), curve).public_key()


def _raw_signature(r: int, s: int, curve: ec.EllipticCurve) -> bytes:
    half = (curve.key_size + 7) // 8
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")


def test_ecdsa_nist_sigver() -> None:
    checked, failures, seen = 0, 0, {}
    for record in nist_records("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp"):
        curve_name, hash_name = record["section"].split(",")
        if curve_name not in CURVES or "msg" not in record or seen.get(record["section"], 0) >= 4:
            continue
        seen[record["section"]] = seen.get(record["section"], 0) + 1
        curve = CURVES[curve_name]
        public = _public(record, curve)
        signature = _raw_signature(int(record["r"], 16), int(record["s"], 16), curve)
        message = unhex(record["msg"])
        mech = Mechanism(ECDSA_BY_HASH[hash_name])
        digest = hashlib.new(hash_name.replace("-", "").lower(), message).digest()
        if record["result"].startswith("P"):
            verify(mech, public, message, signature)
            verify(Mechanism(CKM.ECDSA), public, digest, signature)
        else:
            failures += 1
            with pytest.raises(SignatureInvalid):
                verify(mech, public, message, signature)
        checked += 1
    assert checked == 80 and 0 < failures < checked


def test_ecdsa_secp256k1_vectors() -> None:
    records = [r for r in nist_records("asymmetric/ECDSA/SECP256K1/SigGen.txt") if "msg" in r]
    for record in records[::60]:
        curve = ec.SECP256K1()
        public = _public(record, curve)
        hash_name = record["section"].split(",")[1]
        signature = _raw_signature(int(record["r"], 16), int(record["s"], 16), curve)
        verify(Mechanism(ECDSA_BY_HASH[hash_name]), public, unhex(record["msg"]), signature)


@pytest.mark.parametrize("curve", [*CURVES.values(), ec.SECP256K1()], ids=lambda c: c.name)
def test_ecdsa_openssl_verifies_ours(curve: ec.EllipticCurve, tmp_path: Path) -> None:
    key = ec.generate_private_key(curve)
    message = os.urandom(200)
    signature = sign(Mechanism(CKM.ECDSA_SHA256), key, message)
    half = (curve.key_size + 7) // 8
    assert len(signature) == 2 * half
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    der = encode_dss_signature(r, s)
    (tmp_path / "sig").write_bytes(der)
    (tmp_path / "msg").write_bytes(message)
    pub = openssl.write_public_pem(key, tmp_path / "pub.pem")
    result = openssl.run("dgst", "-sha256", "-verify", pub, "-signature", tmp_path / "sig", tmp_path / "msg")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ecdsa_verifies_openssl(p256_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    key_pem = openssl.write_private_pem(p256_key, tmp_path / "key.pem")
    message = os.urandom(64)
    (tmp_path / "msg").write_bytes(message)
    result = openssl.run("dgst", "-sha384", "-sign", key_pem, tmp_path / "msg")
    assert result.returncode == 0, result.stderr
    r, s = decode_dss_signature(result.stdout)
    verify(Mechanism(CKM.ECDSA_SHA384), p256_key.public_key(), message, _raw_signature(r, s, p256_key.curve))


def test_ecdsa_raw_rules(p256_key: ec.EllipticCurvePrivateKey) -> None:
    public = p256_key.public_key()
    digest = hashlib.sha512(b"m").digest()  # longer than the order: truncated by the curve
    signature = sign(Mechanism(CKM.ECDSA), p256_key, digest)
    verify(Mechanism(CKM.ECDSA), public, digest, signature)
    with pytest.raises(DataLenRange):
        sign(Mechanism(CKM.ECDSA), p256_key, b"")  # any other length is an X9.62 input (test below)
    with pytest.raises(SignatureLenRange):
        verify(Mechanism(CKM.ECDSA), public, digest, signature + b"\0")
    with pytest.raises(SignatureLenRange):
        verify(Mechanism(CKM.ECDSA), public, digest, signature[:-1])
    with pytest.raises(SignatureInvalid):
        verify(Mechanism(CKM.ECDSA), public, hashlib.sha512(b"n").digest(), signature)


def test_ecdsa_accepts_shorter_common_length() -> None:
    # PKCS#11 3.0 "EC Signatures": r and s may be padded to a common length below nLen. On P-521 (nLen 66)
    # both fit 65 bytes about a quarter of the time.
    key = ec.generate_private_key(ec.SECP521R1())
    while True:
        signature = sign(Mechanism(CKM.ECDSA_SHA512), key, b"message")
        if signature[0] == 0 and signature[66] == 0:
            break
    shorter = signature[1:66] + signature[67:]
    verify(Mechanism(CKM.ECDSA_SHA512), key.public_key(), b"message", shorter)
    with pytest.raises(SignatureInvalid):
        verify(Mechanism(CKM.ECDSA_SHA512), key.public_key(), b"other", shorter)


# --- Ed25519: djb's sign.input (RFC 8032 test vectors are its first lines) -----------------------------

def test_ed25519_sign_input() -> None:
    cases = ed25519_sign_input(24)
    for seed, public_bytes, message, expected in cases:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        assert sign(Mechanism(CKM.EDDSA), key, message) == expected
        public = ed25519.Ed25519PublicKey.from_public_bytes(public_bytes)
        verify(Mechanism(CKM.EDDSA), public, message, expected)
        with pytest.raises(SignatureInvalid):
            verify(Mechanism(CKM.EDDSA), public, message + b"x", expected)


def test_ed25519_openssl(ed25519_key: ed25519.Ed25519PrivateKey, tmp_path: Path) -> None:
    message = os.urandom(77)
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(sign(Mechanism(CKM.EDDSA), ed25519_key, message))
    pub = openssl.write_public_pem(ed25519_key, tmp_path / "pub.pem")
    result = openssl.run("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", tmp_path / "msg",
                         "-sigfile", tmp_path / "sig")
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(MechanismParamInvalid):
        sign_init(Mechanism(CKM.EDDSA, b"ph"), ed25519_key)
    with pytest.raises(SignatureLenRange):
        verify(Mechanism(CKM.EDDSA), ed25519_key.public_key(), message, bytes(63))


# --- HMAC (RFC 2202 / RFC 4231) and AES-CMAC (NIST SP 800-38B) -----------------------------------------

HMAC_FILES = {
    CKM.SHA_1_HMAC: "HMAC/rfc-2202-sha1.txt",
    CKM.SHA224_HMAC: "HMAC/rfc-4231-sha224.txt",
    CKM.SHA256_HMAC: "HMAC/rfc-4231-sha256.txt",
    CKM.SHA384_HMAC: "HMAC/rfc-4231-sha384.txt",
    CKM.SHA512_HMAC: "HMAC/rfc-4231-sha512.txt",
}


@pytest.mark.parametrize("mechanism", list(HMAC_FILES), ids=lambda m: m.name)
def test_hmac_rfc_vectors(mechanism: CKM) -> None:
    records = nist_records(HMAC_FILES[mechanism])
    assert len(records) >= 6
    for record in records:
        key, message, expected = unhex(record["key"]), unhex(record["msg"]), unhex(record["md"])
        assert sign(Mechanism(mechanism), key, message) == expected
        verify(Mechanism(mechanism), key, message, expected)
        with pytest.raises(SignatureInvalid):
            verify(Mechanism(mechanism), key, message, bytes([expected[0] ^ 1]) + expected[1:])


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_cmac_nist_vectors(bits: int) -> None:
    records = nist_records(f"CMAC/nist-800-38b-aes{bits}.txt")
    assert len(records) == 4
    for record in records:
        key, message, expected = unhex(record["key"]), unhex(record["message"]), unhex(record["output"])
        assert sign(Mechanism(CKM.AES_CMAC), key, message) == expected
        assert sign(Mechanism(CKM.AES_CMAC_GENERAL, 4), key, message) == expected[:4]
        verify(Mechanism(CKM.AES_CMAC_GENERAL, 4), key, message, expected[:4])


def test_mac_general_lengths() -> None:
    key = os.urandom(32)
    full = sign(Mechanism(CKM.SHA256_HMAC), key, b"data")
    for length in (1, 10, 32):
        assert sign(Mechanism(CKM.SHA256_HMAC_GENERAL, length), key, b"data") == full[:length]
    for bad in (0, 33, -1, None, True, b"\x10"):
        with pytest.raises(MechanismParamInvalid):
            sign_init(Mechanism(CKM.SHA256_HMAC_GENERAL, bad), key)
    with pytest.raises(MechanismParamInvalid):
        sign_init(Mechanism(CKM.SHA256_HMAC, 16), key)
    with pytest.raises(SignatureLenRange):
        verify(Mechanism(CKM.SHA256_HMAC_GENERAL, 16), key, b"data", full)
    with pytest.raises(KeySizeRange):
        sign_init(Mechanism(CKM.SHA256_HMAC), b"")
    with pytest.raises(KeySizeRange):
        sign_init(Mechanism(CKM.AES_CMAC), bytes(20))


# --- multi-part equals single-part; key kinds --------------------------------------------------------

@pytest.mark.parametrize(
    ("mechanism", "parameter", "key_name"),
    [
        (CKM.SHA256_RSA_PKCS, None, "rsa"),
        (CKM.SHA384_RSA_PKCS_PSS, PssParams(hash_alg=CKM.SHA384, mgf=CKG.MGF1_SHA384, salt_len=0), "rsa"),
        (CKM.SHA512_HMAC, None, "secret"),
        (CKM.AES_CMAC, None, "aes"),
        (CKM.ECDSA_SHA256, None, "ec"),
    ],
)
def test_multi_part_equals_single_part(mechanism, parameter, key_name, rsa_key, p256_key) -> None:
    keys = {"rsa": (rsa_key, rsa_key.public_key()), "ec": (p256_key, p256_key.public_key()),
            "secret": (b"k" * 40, b"k" * 40), "aes": (bytes(16), bytes(16))}
    private, public = keys[key_name]
    mech = Mechanism(mechanism, parameter)
    data = os.urandom(1000)
    multi = sign_init(mech, private)
    for offset in range(0, len(data), 7):
        multi.update(data[offset : offset + 7])
    signature = multi.final()
    if key_name in ("rsa", "secret", "aes") and parameter is None:  # deterministic schemes
        assert signature == sign(mech, private, data)
    checker = verify_init(mech, public)
    for offset in range(0, len(data), 13):
        checker.update(data[offset : offset + 13])
    checker.final(signature)


def test_key_kind_errors(rsa_key, p256_key, ed25519_key) -> None:
    with pytest.raises(KeyTypeInconsistent):
        sign_init(Mechanism(CKM.ECDSA), rsa_key)
    with pytest.raises(KeyTypeInconsistent):
        sign_init(Mechanism(CKM.SHA256_RSA_PKCS), p256_key)
    with pytest.raises(KeyTypeInconsistent):
        verify_init(Mechanism(CKM.SHA256_RSA_PKCS), rsa_key)  # needs the public key
    with pytest.raises(KeyTypeInconsistent):
        sign_init(Mechanism(CKM.EDDSA), p256_key)
    with pytest.raises(KeyTypeInconsistent):
        sign_init(Mechanism(CKM.SHA256_HMAC), rsa_key)
    with pytest.raises(MechanismInvalid):
        sign_init(Mechanism(CKM.AES_GCM), bytes(16))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a 1024-bit key's size
    assert len(sign(Mechanism(CKM.SHA256_RSA_PKCS), small, b"m")) == 128


# --- raw CKM_ECDSA input of any length (ANSI X9.62: shorter is the integer, longer its leftmost bits) ---------
@pytest.mark.parametrize("curve, width", [(ec.SECP256R1(), 32), (ec.SECP384R1(), 48), (ec.SECP521R1(), 64),
                                          (ec.SECP256K1(), 32), (ec.SECP224R1(), 28)])
@pytest.mark.parametrize("length", [1, 6, 20, 31, 33, 40, 64])
def test_raw_ecdsa_takes_input_of_any_length_as_x962_says(curve, width, length):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = ec.generate_private_key(curve)
    data = os.urandom(length)
    signature = sign(Mechanism(CKM.ECDSA), key, data)
    half = len(signature) // 2
    der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
    # the same integer e, computed independently: left-pad when shorter than the order, else the leftmost bytes
    e = data.rjust(width, b"\x00") if length <= width else data[:width]
    algorithm = {28: hashes.SHA224(), 32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[width]
    key.public_key().verify(der, e, ec.ECDSA(Prehashed(algorithm)))
    verify(Mechanism(CKM.ECDSA), key.public_key(), data, signature)


def test_raw_ecdsa_refuses_empty_input():
    with pytest.raises(DataLenRange):
        sign(Mechanism(CKM.ECDSA), ec.generate_private_key(ec.SECP256R1()), b"")
