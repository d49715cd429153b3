"""Key derivation: ECDH (NIST KAS ZZ-only vectors, ANSI X9.63 KDF vectors) and SP 800-108 counter mode."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from strongroom.crypto import derive, ecdh_kdf
from strongroom.crypto.der import OCTET_STRING, encode
from strongroom.errors import (
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    MechanismParamInvalid,
)
from strongroom.mechanism_params import (
    CounterFormat,
    DkmLengthFormat,
    Ecdh1DeriveParams,
    Mechanism,
    PrfDataParam,
    Sp800108Params,
)
from strongroom.vocab import CK_SP800_108, CK_SP800_108_DKM_LENGTH, CKD, CKM

from .vectors import nist_records, unhex

KAS_CURVES = {"EB": ec.SECP224R1(), "EC": ec.SECP256R1(), "ED": ec.SECP384R1(), "EE": ec.SECP521R1()}


def _point(public: ec.EllipticCurvePublicKey, form: PublicFormat = PublicFormat.UncompressedPoint) -> bytes:
    return public.public_bytes(Encoding.X962, form)


def _ecdh(kdf: int = CKD.NULL, public_data: bytes = b"", shared_data: bytes = b"") -> Mechanism:
    params = Ecdh1DeriveParams(kdf=kdf, shared_data=shared_data, public_data=public_data)
    return Mechanism(CKM.ECDH1_DERIVE, params)


def test_ecdh_nist_kas_zz_only() -> None:
    checked = {"match": 0, "mismatch": 0, "bad point": 0}
    for record in nist_records("asymmetric/ECDH/KASValidityTest_ECCStaticUnified_NOKC_ZZOnly_init.fax"):
        curve = KAS_CURVES.get(record["section"][:2])
        # Cases about the IUT's own key pair being invalid do not apply: Strongroom holds valid keys only.
        if curve is None or "z" not in record or "IUT's Static" in record["result"]:
            continue
        private = ec.derive_private_key(int(record["dsiut"], 16), curve)
        size = (curve.key_size + 7) // 8
        # P-521 fields carry extra leading zero bytes; normalise them to the field size.
        x, y = int(record["qscavsx"], 16), int(record["qscavsy"], 16)
        peer = b"\x04" + x.to_bytes(size, "big") + y.to_bytes(size, "big")
        result = record["result"]
        if result.startswith("P"):
            assert derive(_ecdh(public_data=peer), private, 0) == int(record["z"], 16).to_bytes(size, "big")
            checked["match"] += 1
        elif "CAVS's Static public key" in result:
            with pytest.raises(MechanismParamInvalid):
                derive(_ecdh(public_data=peer), private, 0)
            checked["bad point"] += 1
        elif "Z changed" in result:
            assert derive(_ecdh(public_data=peer), private, 0) != int(record["z"], 16).to_bytes(size, "big")
            checked["mismatch"] += 1
    assert checked == {"match": 72, "mismatch": 8, "bad point": 16}


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()],
                         ids=lambda c: c.name)
def test_ecdh_agreement_and_point_forms(curve: ec.EllipticCurve) -> None:
    alice, bob = ec.generate_private_key(curve), ec.generate_private_key(curve)
    expected = alice.exchange(ec.ECDH(), bob.public_key())
    forms = [
        _point(bob.public_key()),
        encode(OCTET_STRING, _point(bob.public_key())),
        _point(bob.public_key(), PublicFormat.CompressedPoint),
    ]
    for public_data in forms:
        assert derive(_ecdh(public_data=public_data), alice, 0) == expected
    assert derive(_ecdh(public_data=_point(alice.public_key())), bob, 0) == expected
    # CKD_NULL truncation removes bytes from the leading end.
    assert derive(_ecdh(public_data=forms[0]), alice, 16) == expected[-16:]
    # The X9.63 KDF, checked against cryptography's own.
    derived = derive(_ecdh(CKD.SHA256_KDF, forms[1], b"info"), alice, 42)
    assert derived == X963KDF(algorithm=hashes.SHA256(), length=42, sharedinfo=b"info").derive(expected)


def test_ecdh_errors(p256_key: ec.EllipticCurvePrivateKey) -> None:
    peer = _point(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(KeySizeRange):
        derive(_ecdh(public_data=peer), p256_key, 33)
    with pytest.raises(MechanismParamInvalid):
        derive(_ecdh(public_data=peer, shared_data=b"x"), p256_key, 16)
    with pytest.raises(MechanismParamInvalid):
        derive(_ecdh(kdf=CKD.SHA1_KDF_ASN1, public_data=peer), p256_key, 16)
    with pytest.raises(MechanismParamInvalid):
        derive(_ecdh(public_data=peer[:-1] + bytes([peer[-1] ^ 1])), p256_key, 16)  # off the curve
    with pytest.raises(MechanismParamInvalid):
        derive(_ecdh(public_data=_point(ec.generate_private_key(ec.SECP384R1()).public_key())), p256_key, 16)
    with pytest.raises(MechanismParamInvalid):
        derive(Mechanism(CKM.ECDH1_DERIVE, None), p256_key, 16)
    with pytest.raises(KeyTypeInconsistent):
        derive(_ecdh(public_data=peer), bytes(32), 16)
    with pytest.raises(KeySizeRange):
        derive(_ecdh(CKD.SHA256_KDF, peer), p256_key, 0)
    with pytest.raises(MechanismInvalid):
        derive(Mechanism(CKM.SHA256_HMAC), bytes(32), 16)


X963_HASHES = {"SHA-1": CKD.SHA1_KDF, "SHA-224": CKD.SHA224_KDF, "SHA-256": CKD.SHA256_KDF,
               "SHA-384": CKD.SHA384_KDF, "SHA-512": CKD.SHA512_KDF}


def test_x963_kdf_vectors() -> None:
    records = [r for r in nist_records("KDF/ansx963_2001.txt") if "key_data" in r]
    assert len(records) >= 50
    for record in records[::4]:
        expected = unhex(record["key_data"])
        kdf = X963_HASHES[record["section"]]
        assert ecdh_kdf(kdf, unhex(record["z"]), unhex(record["sharedinfo"]), len(expected)) == expected


# --- SP 800-108 counter mode: NIST CAVS KBKDF vectors ---------------------------------------------------

PRFS = {
    "HMAC_SHA1": CKM.SHA_1_HMAC, "HMAC_SHA224": CKM.SHA224_HMAC, "HMAC_SHA256": CKM.SHA256_HMAC,
    "HMAC_SHA384": CKM.SHA384_HMAC, "HMAC_SHA512": CKM.SHA512_HMAC,
    "CMAC_AES128": CKM.AES_CMAC, "CMAC_AES192": CKM.AES_CMAC, "CMAC_AES256": CKM.AES_CMAC,
}


def _byte_array(value: bytes) -> list[PrfDataParam]:
    return [PrfDataParam(CK_SP800_108.BYTE_ARRAY, value)] if value else []


def test_kbkdf_nist_counter_vectors() -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for record in nist_records("KDF/nist-800-108-KBKDF-CTR.txt"):
        prf = PRFS.get(record["prf"])
        combination = (record["prf"], record["ctrlocation"], record["rlen"])
        if prf is None or "ko" not in record or seen.get(combination, 0) >= 2:
            continue
        seen[combination] = seen.get(combination, 0) + 1
        counter = [PrfDataParam(CK_SP800_108.ITERATION_VARIABLE,
                                CounterFormat(width_bits=int(record["rlen"].split("_")[0])))]
        if record["ctrlocation"] == "MIDDLE_FIXED":
            before, after = unhex(record["databeforectrdata"]), unhex(record["dataafterctrdata"])
            data = _byte_array(before) + counter + _byte_array(after)
        elif record["ctrlocation"] == "BEFORE_FIXED":
            data = counter + _byte_array(unhex(record["fixedinputdata"]))
        else:
            data = _byte_array(unhex(record["fixedinputdata"])) + counter
        expected = unhex(record["ko"])
        assert int(record["l"]) == 8 * len(expected)
        mech = Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(prf_type=prf, data_params=data))
        assert derive(mech, unhex(record["ki"]), len(expected)) == expected, combination
    assert len(seen) == 8 * 3 * 4


def test_kbkdf_dkm_length_matches_label_context_layout() -> None:
    key, label, context = os.urandom(32), b"label", b"context"
    data = [
        PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(width_bits=32)),
        PrfDataParam(CK_SP800_108.BYTE_ARRAY, label),
        PrfDataParam(CK_SP800_108.BYTE_ARRAY, b"\x00"),
        PrfDataParam(CK_SP800_108.BYTE_ARRAY, context),
        PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(width_bits=32)),
    ]
    mech = Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(prf_type=CKM.SHA256_HMAC, data_params=data))
    # SP 800-108 §4 canonical input [i]‖Label‖0x00‖Context‖[L], as cryptography builds it itself.
    reference = KBKDFHMAC(
        hashes.SHA256(), Mode.CounterMode, 48, 4, 4, CounterLocation.BeforeFixed, label, context, None
    )
    assert derive(mech, key, 48) == reference.derive(key)

    segments = Sp800108Params(
        prf_type=CKM.SHA256_HMAC,
        data_params=[*data[:4], PrfDataParam(CK_SP800_108.DKM_LENGTH,
                                             DkmLengthFormat(method=CK_SP800_108_DKM_LENGTH.SUM_OF_SEGMENTS))],
    )
    rounded = KBKDFHMAC(
        hashes.SHA256(), Mode.CounterMode, 64, 4, 4, CounterLocation.BeforeFixed, label, context, None
    )
    # With L counted in whole PRF outputs (64 bytes), the first 48 bytes equal a 64-byte derivation's.
    assert derive(Mechanism(CKM.SP800_108_COUNTER_KDF, segments), key, 48) == rounded.derive(key)[:48]


@pytest.mark.parametrize(
    ("data", "prf"),
    [
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(little_endian=True))], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(width_bits=12))], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(width_bits=64))], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.BYTE_ARRAY, b"x")], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat())] * 2, CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, b"not a format")], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat()),
          PrfDataParam(CK_SP800_108.OPTIONAL_COUNTER, CounterFormat())], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat()),
          PrfDataParam(CK_SP800_108.BYTE_ARRAY, b"")], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat()),
          PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(width_bits=4))], CKM.SHA256_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(width_bits=8))], CKM.SHA_1_HMAC),
        ([PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat())], CKM.SHA256),
    ],
)
def test_kbkdf_unsupported_parameters(data: list[PrfDataParam], prf: int) -> None:
    mech = Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(prf_type=prf, data_params=data))
    # 8-bit counters number at most 255 SHA-1 blocks (5100 bytes).
    with pytest.raises(MechanismParamInvalid):
        derive(mech, bytes(32), 6000)


def test_kbkdf_key_checks() -> None:
    data = [PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat())]
    with pytest.raises(KeySizeRange):
        derive(Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(CKM.AES_CMAC, data)), bytes(20), 16)
    with pytest.raises(KeyTypeInconsistent):
        derive(Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(CKM.SHA256_HMAC, data)), None, 16)
    with pytest.raises(KeySizeRange):
        derive(Mechanism(CKM.SP800_108_COUNTER_KDF, Sp800108Params(CKM.SHA256_HMAC, data)), bytes(32), 0)
    with pytest.raises(MechanismParamInvalid):
        derive(Mechanism(CKM.SP800_108_COUNTER_KDF, None), bytes(32), 16)
