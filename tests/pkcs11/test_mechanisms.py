"""Mechanism arguments as each p11-kit client generation writes them (golden bytes), and what each is offered."""

from __future__ import annotations

import pytest

from strongroom.errors import MechanismParamInvalid
from strongroom.mechanism_catalogue import MECHANISMS
from strongroom.mechanism_params import CtrParams, Ecdh1DeriveParams, GcmParams, Mechanism, OaepParams, PssParams
from strongroom.pkcs11 import mechanism_codec, wire
from strongroom.vocab import CKD, CKG, CKM, CKZ

KEY = "0000000000000007"  # the key handle that follows the mechanism in C_SignInit (`uMu`)
PSS_FIELDS = "0000000000000250" "0000000000000002" "0000000000000020"  # SHA256, MGF1_SHA256, 32
PSS = Mechanism(CKM.RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 32))
IV = bytes(range(16))
GCM_IV = bytes(range(12))
POINT = bytes.fromhex("04" + "11" * 64)


def _read(hex_body: str, version: int) -> Mechanism | None:
    reader = wire.Reader(bytes.fromhex(hex_body))
    mechanism = mechanism_codec.read(reader, version)
    assert reader.u64() == 7  # the bytes after the mechanism are where the client put them
    reader.done()
    return mechanism


GOLDEN = [
    # version 0: p11-kit 0.24 (Debian 12, Ubuntu 22.04)
    (0, "00000040" "ffffffff", Mechanism(CKM.SHA256_RSA_PKCS)),
    (0, "00001041" "ffffffff", Mechanism(CKM.ECDSA)),
    (0, "0000000d" + PSS_FIELDS, PSS),
    (0, "00000009" "0000000000000250" "0000000000000002" "0000000000000001" "00000003" "616263",
     Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, b"abc"))),
    # version 1: p11-kit 0.25.0-0.25.5 (Debian 13): more fixed-field parameters, NULL mechanism marker
    (1, "00001044" "ffffffff", Mechanism(CKM.ECDSA_SHA256)),
    (1, "00000043" + PSS_FIELDS, Mechanism(CKM.SHA256_RSA_PKCS_PSS, PSS.parameter)),
    (1, "00001082" "00000010" + IV.hex(), Mechanism(CKM.AES_CBC, IV)),
    (1, "00001085" "00000010" + IV.hex(), Mechanism(CKM.AES_CBC_PAD, IV)),
    (1, "00001086" "0000000000000020" "00000010" + IV.hex(), Mechanism(CKM.AES_CTR, CtrParams(IV, 32))),
    (1, "00001087" "0000000c" + GCM_IV.hex() + "0000000000000060" "00000002" "aad0" "0000000000000080",
     Mechanism(CKM.AES_GCM, GcmParams(GCM_IV, b"\xaa\xd0", 128, 96))),
    (1, "00001087" "0000000c" + GCM_IV.hex() + "0000000000000060" "ffffffff" "0000000000000060",
     Mechanism(CKM.AES_GCM, GcmParams(GCM_IV, b"", 96, 96))),
    # ulIvBits travels as the application set it; the node's rules judge it against the IV (0x3039 = 12345)
    (1, "00001087" "0000000c" + GCM_IV.hex() + "0000000000003039" "ffffffff" "0000000000000080",
     Mechanism(CKM.AES_GCM, GcmParams(GCM_IV, b"", 128, 12345))),
    (1, "00000252" "0000000000000010", Mechanism(CKM.SHA256_HMAC_GENERAL, 16)),
    (1, "00001050" "0000000000000001" "ffffffff" "00000041" + POINT.hex(),
     Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.NULL, b"", POINT))),
    (1, "ffffffff", None),
    # version 2: p11-kit 0.25.6 and later: nothing after a parameter-less type, a presence byte otherwise
    (2, "00001041", Mechanism(CKM.ECDSA)),
    (2, "00000040", Mechanism(CKM.SHA256_RSA_PKCS)),
    (2, "0000000d" "01" + PSS_FIELDS, PSS),
    (2, "0000000d" "00", Mechanism(CKM.RSA_PKCS_PSS)),
    (2, "00001082" "01" "00000010" + IV.hex(), Mechanism(CKM.AES_CBC, IV)),
    (2, "00001087" "01" "0000000c" + GCM_IV.hex() + "0000000000000060" "00000000" "0000000000000078",
     Mechanism(CKM.AES_GCM, GcmParams(GCM_IV, b"", 120, 96))),
    (2, "ffffffff", None),
]


@pytest.mark.parametrize(("version", "body", "expected"), GOLDEN)
def test_each_client_generation_mechanism_encoding_decodes(version, body, expected):
    assert _read(body + KEY, version) == expected


def test_a_parameter_on_a_mechanism_without_one_is_param_invalid():
    with pytest.raises(MechanismParamInvalid):
        _read("00001041" "00000002" "0102" + KEY, 0)
    with pytest.raises(MechanismParamInvalid):  # version 2: an unknown type with its parameter as raw bytes
        _read("80001234" "01" "00000002" "0102" + KEY, 2)


def test_gcm_without_an_iv_is_refused_since_a_generated_one_could_not_reach_the_application():
    with pytest.raises(MechanismParamInvalid, match="IV"):
        _read("00001087" "ffffffff" "0000000000000000" "ffffffff" "0000000000000080" + KEY, 1)


def test_version_2_parses_a_parameter_less_type_strongroom_does_not_have():
    # CKM_MD5 is in the client's parameter-less list: nothing follows it, and the key handle must still be found
    assert _read("00000210" + KEY, 2) == Mechanism(0x210)


def test_truncated_parameters_are_wire_errors():
    for version, body in ((0, "0000000d" "0000000000000250"), (1, "00001087" "0000000c" "0001"), (2, "0000000d")):
        with pytest.raises(wire.WireError):
            mechanism_codec.read(wire.Reader(bytes.fromhex(body)), version)


def test_each_generation_is_offered_exactly_what_its_client_forwards():
    v0, v1, v2 = (set(mechanism_codec.forwardable(v, MECHANISMS)) for v in (0, 1, 2))
    assert v1 == v2
    # what 0.24 forwards: parameter-less types of its list, PSS and OAEP; no AES modes with an IV, no ECDH
    assert {CKM.RSA_PKCS, CKM.RSA_PKCS_PSS, CKM.RSA_PKCS_OAEP, CKM.SHA256_RSA_PKCS, CKM.ECDSA, CKM.ECDSA_SHA1,
            CKM.AES_ECB, CKM.SHA256_HMAC, CKM.EC_KEY_PAIR_GEN, CKM.AES_KEY_GEN} <= v0
    assert not {CKM.ECDSA_SHA256, CKM.SHA256_RSA_PKCS_PSS, CKM.AES_GCM, CKM.AES_CBC, CKM.ECDH1_DERIVE} & v0
    assert {CKM.ECDSA_SHA256, CKM.SHA256_RSA_PKCS_PSS, CKM.AES_GCM, CKM.AES_CBC, CKM.AES_CBC_PAD, CKM.AES_CTR,
            CKM.ECDH1_DERIVE, CKM.SHA256_HMAC_GENERAL, CKM.AES_CMAC} <= v1
    # no client generation can carry these parameters: never advertised
    assert not {CKM.AES_KEY_WRAP, CKM.AES_KEY_WRAP_PAD, CKM.RSA_AES_KEY_WRAP, CKM.EDDSA,
                CKM.SP800_108_COUNTER_KDF} & (v0 | v1)
