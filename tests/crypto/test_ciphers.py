"""Encryption and decryption: NIST/RFC known answers, an independent implementation, PKCS#11 buffering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.crypto import decrypt_init, encrypt_init
from strongroom.errors import (
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    MechanismParamInvalid,
)
from strongroom.mechanism_params import CtrParams, GcmParams, Mechanism, OaepParams
from strongroom.vocab import CKG, CKM, CKZ

from . import openssl
from .vectors import nist_records, oaep_custom, unhex

KEY_SIZES = (128, 192, 256)


# --- AES-GCM: NIST CAVS (SP 800-38D) -------------------------------------------------------------------

def _gcm_records(kind: str, bits: int) -> list[dict]:
    records = nist_records(f"ciphers/AES/GCM/gcm{kind}{bits}.rsp")
    # 96-bit IVs and 96..128-bit tags are what Strongroom accepts; take the first case of every section.
    return [
        r for r in records
        if r["ivlen"] == "96" and int(r["taglen"]) >= 96 and r["count"] in ("0", "1")
    ]


def _gcm(record: dict) -> Mechanism:
    params = GcmParams(iv=unhex(record["iv"]), aad=unhex(record["aad"]), tag_bits=int(record["taglen"]))
    return Mechanism(CKM.AES_GCM, params)


@pytest.mark.parametrize("bits", KEY_SIZES)
def test_gcm_nist_encrypt(bits: int) -> None:
    records = _gcm_records("EncryptExtIV", bits)
    assert len(records) >= 100
    for r in records:
        mech = _gcm(r)
        output = encrypt_init(mech, unhex(r["key"])).oneshot(unhex(r["pt"]))
        assert output == unhex(r["ct"]) + unhex(r["tag"])


@pytest.mark.parametrize("bits", KEY_SIZES)
def test_gcm_nist_decrypt(bits: int) -> None:
    records = _gcm_records("Decrypt", bits)
    assert any(r.get("fail") for r in records) and not all(r.get("fail") for r in records)
    for r in records:
        mech = _gcm(r)
        operation = decrypt_init(mech, unhex(r["key"]))
        if r.get("fail"):
            with pytest.raises(EncryptedDataInvalid):
                operation.oneshot(unhex(r["ct"]) + unhex(r["tag"]))
        else:
            assert operation.oneshot(unhex(r["ct"]) + unhex(r["tag"])) == unhex(r["pt"])


@pytest.mark.parametrize("tag_bits", [96, 104, 112, 120, 128])
def test_gcm_tag_lengths_against_aesgcm(tag_bits: int) -> None:
    key, iv, aad, plaintext = os.urandom(32), os.urandom(12), b"header", os.urandom(45)
    mech = Mechanism(CKM.AES_GCM, GcmParams(iv=iv, aad=aad, tag_bits=tag_bits))
    output = encrypt_init(mech, key).oneshot(plaintext)
    reference = AESGCM(key).encrypt(iv, plaintext, aad)  # ciphertext‖128-bit tag
    assert output == reference[: len(plaintext) + tag_bits // 8]
    assert decrypt_init(mech, key).oneshot(output) == plaintext
    tampered = output[:-1] + bytes([output[-1] ^ 1])
    with pytest.raises(EncryptedDataInvalid):
        decrypt_init(mech, key).oneshot(tampered)


def test_gcm_generated_iv() -> None:
    key = os.urandom(16)
    first = encrypt_init(Mechanism(CKM.AES_GCM, GcmParams(aad=b"a")), key)
    second = encrypt_init(Mechanism(CKM.AES_GCM, GcmParams(aad=b"a")), key)
    assert first.generated_iv is not None and second.generated_iv is not None
    assert len(first.generated_iv) == 12
    assert first.generated_iv != second.generated_iv
    output = first.oneshot(b"secret")
    assert AESGCM(key).decrypt(first.generated_iv, output, b"a") == b"secret"
    assert encrypt_init(Mechanism(CKM.AES_GCM, GcmParams(iv=bytes(12))), key).generated_iv is None


@pytest.mark.parametrize(
    "params",
    [
        GcmParams(iv=bytes(11)),
        GcmParams(iv=bytes(16)),
        GcmParams(iv=bytes(12), tag_bits=88),
        GcmParams(iv=bytes(12), tag_bits=64),
        GcmParams(iv=bytes(12), tag_bits=127),
    ],
)
def test_gcm_bad_parameters(params: GcmParams) -> None:
    with pytest.raises(MechanismParamInvalid):
        encrypt_init(Mechanism(CKM.AES_GCM, params), bytes(16))


def test_gcm_decrypt_needs_iv_and_tag() -> None:
    with pytest.raises(MechanismParamInvalid):
        decrypt_init(Mechanism(CKM.AES_GCM, GcmParams()), bytes(16))
    with pytest.raises(MechanismParamInvalid):
        decrypt_init(Mechanism(CKM.AES_GCM, bytes(12)), bytes(16))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(Mechanism(CKM.AES_GCM, GcmParams(iv=bytes(12))), bytes(16)).oneshot(bytes(15))


# --- AES ECB / CBC / CTR: NIST CAVS (SP 800-38A) and RFC 3686 ------------------------------------------

def _block_records(mode: str) -> list[dict]:
    records = []
    for bits in KEY_SIZES:
        for test in ("MMT", "GFSbox", "VarKey"):
            found = nist_records(f"ciphers/AES/{mode}/{mode}{test}{bits}.rsp")
            records += found[:: max(1, len(found) // 6)]
    return records


@pytest.mark.parametrize("mode", ["ECB", "CBC"])
def test_block_modes_nist(mode: str) -> None:
    records = _block_records(mode)
    assert len(records) >= 50
    for r in records:
        mech = Mechanism(CKM.AES_ECB) if mode == "ECB" else Mechanism(CKM.AES_CBC, unhex(r["iv"]))
        key, plaintext, ciphertext = unhex(r["key"]), unhex(r["plaintext"]), unhex(r["ciphertext"])
        if r["section"] == "ENCRYPT":
            assert encrypt_init(mech, key).oneshot(plaintext) == ciphertext
        else:
            assert decrypt_init(mech, key).oneshot(ciphertext) == plaintext


@pytest.mark.parametrize("bits", KEY_SIZES)
def test_ctr_rfc3686(bits: int) -> None:
    records = nist_records(f"ciphers/AES/CTR/aes-{bits}-ctr.txt")
    assert len(records) == 3
    for r in records:
        mech = Mechanism(CKM.AES_CTR, CtrParams(cb=unhex(r["iv"]), counter_bits=32))
        key, plaintext, ciphertext = unhex(r["key"]), unhex(r["plaintext"]), unhex(r["ciphertext"])
        assert encrypt_init(mech, key).oneshot(plaintext) == ciphertext
        assert decrypt_init(mech, key).oneshot(ciphertext) == plaintext


def test_ctr_counter_must_not_wrap() -> None:
    key = os.urandom(16)
    cb = bytes(15) + b"\xfe"  # two values left in an 8-bit counter
    mech = Mechanism(CKM.AES_CTR, CtrParams(cb=cb, counter_bits=8))
    assert len(encrypt_init(mech, key).oneshot(bytes(32))) == 32
    with pytest.raises(DataLenRange):
        encrypt_init(mech, key).oneshot(bytes(33))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(mech, key).oneshot(bytes(33))
    for bad in (CtrParams(cb=bytes(16), counter_bits=0), CtrParams(cb=bytes(16), counter_bits=129),
                CtrParams(cb=bytes(8))):
        with pytest.raises(MechanismParamInvalid):
            encrypt_init(Mechanism(CKM.AES_CTR, bad), key)


# --- openssl enc as an independent implementation ------------------------------------------------------

@pytest.mark.parametrize(
    ("mechanism", "cipher", "extra"),
    [
        (CKM.AES_CBC_PAD, "aes-256-cbc", []),
        (CKM.AES_CBC, "aes-256-cbc", ["-nopad"]),
        (CKM.AES_ECB, "aes-256-ecb", ["-nopad"]),
        (CKM.AES_CTR, "aes-256-ctr", []),
    ],
)
def test_round_trip_with_openssl_enc(mechanism: CKM, cipher: str, extra: list[str]) -> None:
    key, iv = os.urandom(32), os.urandom(16)
    length = 77 if mechanism in (CKM.AES_CBC_PAD, CKM.AES_CTR) else 80
    plaintext = os.urandom(length)
    parameter = {CKM.AES_ECB: None, CKM.AES_CTR: CtrParams(cb=iv)}.get(mechanism, iv)
    mech = Mechanism(mechanism, parameter)
    args = ["enc", f"-{cipher}", "-K", key.hex(), *extra]
    if mechanism != CKM.AES_ECB:
        args += ["-iv", iv.hex()]

    ours = encrypt_init(mech, key).oneshot(plaintext)
    theirs = openssl.run(*args, data=plaintext)
    assert theirs.returncode == 0, theirs.stderr
    assert ours == theirs.stdout
    decrypted = openssl.run(*args, "-d", data=ours)
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == plaintext
    assert decrypt_init(mech, key).oneshot(theirs.stdout) == plaintext


# --- block-mode errors ---------------------------------------------------------------------------------

def test_block_mode_length_errors() -> None:
    key = bytes(16)
    with pytest.raises(DataLenRange):
        encrypt_init(Mechanism(CKM.AES_ECB), key).oneshot(bytes(17))
    with pytest.raises(DataLenRange):
        encrypt_init(Mechanism(CKM.AES_CBC, bytes(16)), key).oneshot(bytes(15))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(Mechanism(CKM.AES_ECB), key).oneshot(bytes(31))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(Mechanism(CKM.AES_CBC_PAD, bytes(16)), key).oneshot(bytes(24))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(Mechanism(CKM.AES_CBC_PAD, bytes(16)), key).oneshot(b"")


def test_cbc_pad_bad_padding() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    # A raw CBC encryption of a block ending in 0x00 can never be valid PKCS#7.
    ciphertext = encrypt_init(Mechanism(CKM.AES_CBC, iv), key).oneshot(bytes(32))
    with pytest.raises(EncryptedDataInvalid):
        decrypt_init(Mechanism(CKM.AES_CBC_PAD, iv), key).oneshot(ciphertext)


def test_cbc_pad_pads_a_whole_block_onto_aligned_input() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    assert len(encrypt_init(Mechanism(CKM.AES_CBC_PAD, iv), key).oneshot(bytes(32))) == 48
    assert len(encrypt_init(Mechanism(CKM.AES_CBC_PAD, iv), key).oneshot(b"")) == 16


@pytest.mark.parametrize(
    ("mech", "key", "error"),
    [
        (Mechanism(CKM.AES_CBC, bytes(15)), bytes(16), MechanismParamInvalid),
        (Mechanism(CKM.AES_CBC_PAD), bytes(16), MechanismParamInvalid),
        (Mechanism(CKM.AES_ECB, bytes(16)), bytes(16), MechanismParamInvalid),
        (Mechanism(CKM.AES_ECB), bytes(20), KeySizeRange),
        (Mechanism(CKM.AES_ECB), "not a key", KeyTypeInconsistent),
        (Mechanism(CKM.AES_CMAC), bytes(16), MechanismInvalid),
        (Mechanism(CKM.AES_KEY_WRAP, bytes(8)), bytes(16), MechanismParamInvalid),
    ],
)
def test_init_errors(mech: Mechanism, key: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encrypt_init(mech, key)


# --- PKCS#11 buffering: update_size is exact, multi-part equals single-part ----------------------------

def _mechanisms() -> list[Mechanism]:
    iv = bytes(range(16))
    return [
        Mechanism(CKM.AES_ECB),
        Mechanism(CKM.AES_CBC, iv),
        Mechanism(CKM.AES_CBC_PAD, iv),
        Mechanism(CKM.AES_CTR, CtrParams(cb=iv)),
        Mechanism(CKM.AES_GCM, GcmParams(iv=iv[:12], aad=b"aad", tag_bits=112)),
        Mechanism(CKM.AES_KEY_WRAP_KWP),
    ]


CHUNKINGS = [[1], [3, 5], [15], [16], [17], [31, 1], [33], [7, 16, 9], [64]]


@pytest.mark.parametrize("mech", _mechanisms(), ids=lambda m: CKM(m.mechanism).name)
@pytest.mark.parametrize("chunking", CHUNKINGS, ids=str)
def test_update_size_is_exact(mech: Mechanism, chunking: list[int]) -> None:
    key = bytes(range(32))
    aligned = mech.mechanism in (CKM.AES_ECB, CKM.AES_CBC)
    plaintext = bytes(range(96)) if aligned else bytes(range(83))

    def drive(operation, data: bytes) -> bytes:
        output, offset, step = b"", 0, 0
        while offset < len(data):
            size = chunking[step % len(chunking)]
            chunk = data[offset : offset + size]
            predicted = operation.update_size(len(chunk))
            assert operation.update_size(len(chunk)) == predicted  # asking twice changes nothing
            out = operation.update(chunk)
            assert len(out) == predicted
            output += out
            offset, step = offset + size, step + 1
        return output + operation.final()

    ciphertext = drive(encrypt_init(mech, key), plaintext)
    assert ciphertext == encrypt_init(mech, key).oneshot(plaintext)
    assert drive(decrypt_init(mech, key), ciphertext) == plaintext


def test_buffering_rules() -> None:
    key, iv = bytes(16), bytes(16)
    cbc_pad = decrypt_init(Mechanism(CKM.AES_CBC_PAD, iv), key)
    assert cbc_pad.update_size(16) == 0  # the last block may carry padding
    assert cbc_pad.update_size(32) == 16
    assert cbc_pad.update_size(33) == 32
    gcm = decrypt_init(Mechanism(CKM.AES_GCM, GcmParams(iv=bytes(12))), key)
    assert gcm.update_size(1000) == 0  # nothing before the tag is checked
    ecb = encrypt_init(Mechanism(CKM.AES_ECB), key)
    assert ecb.update(bytes(10)) == b""
    assert ecb.update_size(6) == 16
    assert encrypt_init(Mechanism(CKM.AES_GCM, GcmParams(iv=bytes(12))), key).update_size(5) == 5


# --- RSA: OAEP known answers (pyca oaep-custom, derived from the NIST vectors) and PKCS#1 v1.5 ------------

OAEP_HASHES = {
    "sha1": (CKM.SHA_1, CKG.MGF1_SHA1),
    "sha224": (CKM.SHA224, CKG.MGF1_SHA224),
    "sha256": (CKM.SHA256, CKG.MGF1_SHA256),
    "sha384": (CKM.SHA384, CKG.MGF1_SHA384),
    "sha512": (CKM.SHA512, CKG.MGF1_SHA512),
}


def _private_key(numbers: dict) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(numbers["e"], numbers["n"])
    return rsa.RSAPrivateNumbers(
        numbers["p"], numbers["q"], numbers["d"], numbers["dmp1"], numbers["dmq1"], numbers["iqmp"], public
    ).private_key()


@pytest.mark.parametrize("name", ["sha224", "sha256", "sha384", "sha512"])
def test_oaep_decrypt_vectors(name: str) -> None:
    keys = oaep_custom(f"asymmetric/RSA/oaep-custom/oaep-{name}-{name}.txt")
    hash_alg, mgf = OAEP_HASHES[name]
    mech = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(hash_alg=hash_alg, mgf=mgf))
    checked = 0
    for numbers in keys[:3]:
        key = _private_key(numbers)
        for message, ciphertext in numbers["examples"][:3]:
            assert decrypt_init(mech, key).oneshot(ciphertext) == message
            checked += 1
    assert checked == 9


def test_oaep_round_trip_with_label(rsa_key: rsa.RSAPrivateKey) -> None:
    mech = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"lbl"))
    ciphertext = encrypt_init(mech, rsa_key.public_key()).oneshot(b"message")
    reference = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"lbl")
    assert rsa_key.decrypt(ciphertext, reference) == b"message"
    assert decrypt_init(mech, rsa_key).oneshot(ciphertext) == b"message"
    wrong_label = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED))
    with pytest.raises(EncryptedDataInvalid):
        decrypt_init(wrong_label, rsa_key).oneshot(ciphertext)


@pytest.mark.parametrize(
    "params",
    [
        OaepParams(hash_alg=CKM.SHA256, mgf=0x77),
        OaepParams(hash_alg=CKM.SHA256_HMAC, mgf=CKG.MGF1_SHA256),
        OaepParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256, source=7),
        OaepParams(hash_alg=CKM.SHA256, mgf=CKG.MGF1_SHA256, source=0, source_data=b"label"),
    ],
)
def test_oaep_bad_parameters(rsa_key: rsa.RSAPrivateKey, params: OaepParams) -> None:
    with pytest.raises(MechanismParamInvalid):
        encrypt_init(Mechanism(CKM.RSA_PKCS_OAEP, params), rsa_key.public_key())


def test_rsa_lengths_and_failures(rsa_key: rsa.RSAPrivateKey) -> None:
    public = rsa_key.public_key()
    oaep = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256))
    assert len(encrypt_init(oaep, public).oneshot(bytes(256 - 66))) == 256
    with pytest.raises(DataLenRange):
        encrypt_init(oaep, public).oneshot(bytes(256 - 65))
    pkcs = Mechanism(CKM.RSA_PKCS)
    assert len(encrypt_init(pkcs, public).oneshot(bytes(245))) == 256
    with pytest.raises(DataLenRange):
        encrypt_init(pkcs, public).oneshot(bytes(246))
    with pytest.raises(EncryptedDataLenRange):
        decrypt_init(pkcs, rsa_key).oneshot(bytes(255))
    ciphertext = bytearray(encrypt_init(oaep, public).oneshot(b"x"))
    ciphertext[10] ^= 1
    with pytest.raises(EncryptedDataInvalid):
        decrypt_init(oaep, rsa_key).oneshot(bytes(ciphertext))
    with pytest.raises(KeyTypeInconsistent):
        encrypt_init(pkcs, rsa_key)
    with pytest.raises(KeyTypeInconsistent):
        decrypt_init(pkcs, public)
    with pytest.raises(MechanismParamInvalid):
        encrypt_init(Mechanism(CKM.RSA_PKCS, b"x"), public)


def test_rsa_multi_part_buffers_until_final(rsa_key: rsa.RSAPrivateKey) -> None:
    operation = encrypt_init(Mechanism(CKM.RSA_PKCS), rsa_key.public_key())
    assert operation.update_size(10) == 0
    assert operation.update(b"hello ") == b""
    assert operation.update(b"world") == b""
    ciphertext = operation.final()
    assert rsa_key.decrypt(ciphertext, padding.PKCS1v15()) == b"hello world"


def test_rsa_pkcs_interoperates_with_openssl_pkeyutl(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    public_pem = openssl.write_public_pem(rsa_key, tmp_path / "pub.pem")
    private_pem = openssl.write_private_pem(rsa_key, tmp_path / "key.pem")
    ours = encrypt_init(Mechanism(CKM.RSA_PKCS), rsa_key.public_key()).oneshot(b"to openssl")
    decrypted = openssl.run("pkeyutl", "-decrypt", "-inkey", private_pem, data=ours)
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == b"to openssl"
    theirs = openssl.run(
        "pkeyutl", "-encrypt", "-pubin", "-inkey", public_pem, "-pkeyopt", "rsa_padding_mode:oaep",
        "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256", data=b"from openssl",
    )
    assert theirs.returncode == 0, theirs.stderr
    oaep = Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256))
    assert decrypt_init(oaep, rsa_key).oneshot(theirs.stdout) == b"from openssl"
