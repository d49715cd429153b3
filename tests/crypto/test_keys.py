"""Key generation, curves, serialisation, public attributes and check values."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519

from strongroom.crypto import (
    ED25519,
    check_value,
    curve_from_ec_params,
    ec_params_for,
    generate_key_pair,
    generate_secret,
    private_key_from_der,
    private_key_to_der,
    public_attributes,
    public_key_from_attributes,
    public_key_from_der,
    public_key_to_der,
)
from strongroom.errors import (
    AttributeValueInvalid,
    CurveNotSupported,
    DomainParamsInvalid,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    TemplateIncomplete,
    WrappedKeyInvalid,
)
from strongroom.vocab import CKA, CKK, CKM

from . import openssl

# DER of each curve's OBJECT IDENTIFIER.
P256 = bytes.fromhex("06082a8648ce3d030107")
ED25519_OID = bytes.fromhex("06032b6570")
CURVES = [ec.SECP224R1(), ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()]


def _printable(name: str) -> bytes:
    return bytes([0x13, len(name)]) + name.encode()


# --- secret keys ------------------------------------------------------------------------------------------

def test_generate_secret() -> None:
    for size in (16, 24, 32):
        assert len(generate_secret(CKM.AES_KEY_GEN, size)) == size
    assert generate_secret(CKM.AES_KEY_GEN, 32) != generate_secret(CKM.AES_KEY_GEN, 32)
    for size in (1, 64, 800):
        assert len(generate_secret(CKM.GENERIC_SECRET_KEY_GEN, size)) == size
    for mechanism, size in ((CKM.AES_KEY_GEN, 15), (CKM.AES_KEY_GEN, 20), (CKM.GENERIC_SECRET_KEY_GEN, 0),
                            (CKM.GENERIC_SECRET_KEY_GEN, 801)):
        with pytest.raises(KeySizeRange):
            generate_secret(mechanism, size)
    with pytest.raises(MechanismInvalid):
        generate_secret(CKM.EC_KEY_PAIR_GEN, 32)


def test_check_values() -> None:
    # AES-128 under the all-zero key of a zero block: 66e94bd4… (FIPS 197 / NIST AESAVS VarTxt).
    assert check_value(CKK.AES, bytes(16)) == bytes.fromhex("66e94b")
    assert check_value(CKK.GENERIC_SECRET, b"abc") == hashlib.sha1(b"abc").digest()[:3]
    with pytest.raises(KeySizeRange):
        check_value(CKK.AES, bytes(17))
    with pytest.raises(KeyTypeInconsistent):
        check_value(CKK.RSA, bytes(16))


# --- key pairs ---------------------------------------------------------------------------------------------

def test_rsa_generation(rsa_key: rsa.RSAPrivateKey) -> None:
    assert rsa_key.key_size == 2048
    assert rsa_key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("bits", [1024, 1536, 2050, 4352, 8192])
def test_rsa_generation_sizes(bits: int) -> None:
    with pytest.raises(KeySizeRange):
        generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, modulus_bits=bits)


def test_rsa_generation_errors() -> None:
    with pytest.raises(TemplateIncomplete):
        generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN)
    for exponent in (3, 65539, 65536):
        with pytest.raises(AttributeValueInvalid):
            generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, modulus_bits=2048, public_exponent=exponent)
    with pytest.raises(MechanismInvalid):
        generate_key_pair(CKM.AES_KEY_GEN)


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_ec_generation_and_params(curve: ec.EllipticCurve) -> None:
    params = ec_params_for(ec.generate_private_key(curve))
    key = generate_key_pair(CKM.EC_KEY_PAIR_GEN, ec_params=params)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve.name
    # The DER OID must be the one inside the key's own SubjectPublicKeyInfo (RFC 5480).
    assert params in public_key_to_der(key)
    assert curve_from_ec_params(_printable(curve.name)).name == curve.name


def test_curve_names_and_errors() -> None:
    assert curve_from_ec_params(_printable("prime256v1")).name == "secp256r1"
    assert curve_from_ec_params(ED25519_OID) is ED25519
    assert curve_from_ec_params(_printable("edwards25519")) is ED25519
    for unknown in (bytes.fromhex("06082a8648ce3d030101"),  # secp192r1
                    bytes.fromhex("06092b2403030208010107"),  # brainpoolP256r1
                    _printable("curve25519")):
        with pytest.raises(CurveNotSupported):
            curve_from_ec_params(unknown)
    for malformed in (b"", b"\x06", P256 + b"\x00", bytes.fromhex("0500"), bytes.fromhex("3003020101")):
        with pytest.raises(DomainParamsInvalid):
            curve_from_ec_params(malformed)


def test_edwards_generation(tmp_path: Path) -> None:
    for params in (ED25519_OID, _printable("edwards25519")):
        key = generate_key_pair(CKM.EC_EDWARDS_KEY_PAIR_GEN, ec_params=params)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        assert ec_params_for(key) == ED25519_OID
    with pytest.raises(CurveNotSupported):
        generate_key_pair(CKM.EC_EDWARDS_KEY_PAIR_GEN, ec_params=P256)
    with pytest.raises(CurveNotSupported):
        generate_key_pair(CKM.EC_KEY_PAIR_GEN, ec_params=ED25519_OID)
    with pytest.raises(TemplateIncomplete):
        generate_key_pair(CKM.EC_KEY_PAIR_GEN)


# --- serialisation -----------------------------------------------------------------------------------------

def test_private_der_round_trip(rsa_key, p256_key, ed25519_key, tmp_path: Path) -> None:
    for key in (rsa_key, p256_key, ed25519_key):
        der = private_key_to_der(key)
        # openssl reads it as PKCS#8.
        (tmp_path / "key.der").write_bytes(der)
        parsed = openssl.run("pkey", "-inform", "DER", "-in", tmp_path / "key.der", "-noout")
        assert parsed.returncode == 0, parsed.stderr
        restored = private_key_from_der(der)
        assert public_key_to_der(restored) == public_key_to_der(key)
        assert private_key_from_der(der + bytes(7)) is not None
        with pytest.raises(WrappedKeyInvalid):
            private_key_from_der(der + b"\x01")
        with pytest.raises(WrappedKeyInvalid):
            private_key_from_der(der[:-1])


def test_private_der_rejections() -> None:
    with pytest.raises(WrappedKeyInvalid):
        private_key_from_der(os.urandom(40))
    with pytest.raises(WrappedKeyInvalid):
        private_key_from_der(b"")
    other_types = (x25519.X25519PrivateKey.generate(), dsa.generate_private_key(1024))  # noqa: S505 - refused by type
    for key in other_types:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with pytest.raises(WrappedKeyInvalid):
            private_key_from_der(der)
    p192 = ec.generate_private_key(ec.SECP192R1())
    with pytest.raises(CurveNotSupported):
        private_key_from_der(p192.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(WrappedKeyInvalid):
        private_key_from_der(encrypted)
    with pytest.raises(KeyTypeInconsistent):
        private_key_to_der(bytes(16))


def test_public_der(rsa_key, ed25519_key) -> None:
    for key in (rsa_key, ed25519_key):
        der = public_key_to_der(key)
        assert public_key_to_der(public_key_from_der(der)) == der
        assert public_key_to_der(key.public_key()) == der
    with pytest.raises(AttributeValueInvalid):
        public_key_from_der(b"\x30\x00")


# --- public attributes -------------------------------------------------------------------------------------

def test_rsa_public_attributes(rsa_key: rsa.RSAPrivateKey) -> None:
    attrs = public_attributes(rsa_key)
    numbers = rsa_key.public_key().public_numbers()
    assert attrs == {
        CKA.MODULUS: numbers.n.to_bytes(256, "big"),
        CKA.MODULUS_BITS: 2048,
        CKA.PUBLIC_EXPONENT: bytes.fromhex("010001"),
    }
    rebuilt = public_key_from_attributes(CKK.RSA, attrs)
    assert rebuilt.public_numbers() == numbers
    assert public_attributes(rsa_key.public_key()) == attrs


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_ec_public_attributes(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    attrs = public_attributes(key)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    length = len(point)
    header = bytes([0x04, length]) if length < 128 else bytes([0x04, 0x81, length])
    assert attrs == {CKA.EC_PARAMS: ec_params_for(key), CKA.EC_POINT: header + point}
    assert public_key_from_attributes(CKK.EC, attrs).public_numbers() == key.public_key().public_numbers()
    # Raw (un-wrapped) points are tolerated too.
    raw = {CKA.EC_PARAMS: attrs[CKA.EC_PARAMS], CKA.EC_POINT: point}
    assert public_key_from_attributes(CKK.EC, raw).public_numbers() == key.public_key().public_numbers()


def test_ed25519_public_attributes(ed25519_key: ed25519.Ed25519PrivateKey) -> None:
    attrs = public_attributes(ed25519_key)
    raw = ed25519_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert attrs == {CKA.EC_PARAMS: ED25519_OID, CKA.EC_POINT: b"\x04\x20" + raw}
    rebuilt = public_key_from_attributes(CKK.EC_EDWARDS, attrs)
    assert rebuilt.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw


def test_public_key_from_attributes_errors(p256_key) -> None:
    attrs = public_attributes(p256_key)
    with pytest.raises(TemplateIncomplete):
        public_key_from_attributes(CKK.EC, {CKA.EC_PARAMS: attrs[CKA.EC_PARAMS]})
    with pytest.raises(AttributeValueInvalid):
        public_key_from_attributes(CKK.EC, {**attrs, CKA.EC_POINT: b"\x04\x03abc"})
    with pytest.raises(AttributeValueInvalid):
        public_key_from_attributes(CKK.EC, {**attrs, CKA.EC_POINT: "text"})
    point = attrs[CKA.EC_POINT]
    with pytest.raises(AttributeValueInvalid):
        public_key_from_attributes(CKK.EC, {**attrs, CKA.EC_POINT: point[:-1] + bytes([point[-1] ^ 1])})
    with pytest.raises(CurveNotSupported):
        public_key_from_attributes(CKK.EC_EDWARDS, attrs)
    with pytest.raises(AttributeValueInvalid):
        public_key_from_attributes(CKK.RSA, {CKA.MODULUS: bytes([0xFF] * 256), CKA.PUBLIC_EXPONENT: b"\x02"})
    with pytest.raises(KeySizeRange):
        small = {CKA.MODULUS: bytes([0xFF] * 64), CKA.PUBLIC_EXPONENT: b"\x01\x00\x01"}  # 512 bits
        public_key_from_attributes(CKK.RSA, small)
    with pytest.raises(AttributeValueInvalid):
        public_key_from_attributes(CKK.AES, {})
    with pytest.raises(KeyTypeInconsistent):
        public_attributes(bytes(16))
