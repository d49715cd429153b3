"""Rows of the parameter-consistency table through the agent, as each p11-kit client generation writes the
parameter (tests/pkcs11/raw.py sends the exact bytes a client would): the init call answers exactly
``CKR_MECHANISM_PARAM_INVALID`` (0x71) for an inconsistent parameter and ``CKR_OK`` for its consistent twin, and the
session stays usable after each refusal. Real p11-kit clients carry a few rows too: Debian 12's (0.24) carries
CK_RSA_PKCS_OAEP_PARAMS, the newer ones (tests/pkcs11/newer_p11kit.py) CK_GCM_PARAMS as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.pkcs11 import wire
from strongroom.vocab import CKA, CKG, CKK, CKM, CKO, CKR, CKZ

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT
from .downloads import unreachable
from .newer_p11kit import client, default_cache
from .raw import RawApplication, initialized, ok, request, u64s

HERE = Path(__file__).parent

ENCRYPT_INIT, ENCRYPT, SIGN_INIT, VERIFY_INIT = 29, 30, 42, 48
PARAM_INVALID = wire.error_body(int(CKR.MECHANISM_PARAM_INVALID))
IV = bytes(range(12))


def _session(agent, version: int) -> tuple[RawApplication, int]:
    app = initialized(agent, version)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    login = wire.Writer().u64(session).u64(1).byte_array(f"alice:{ALICE_PW}".encode()).bytes()
    assert app.call(request(18, "uuay", login)) == wire.reply_body(18, "")
    return app, session


def _mech(version: int, kind: int, fields: bytes) -> bytes:
    return wire.Writer().u32(kind).bytes() + (b"\x01" if version >= 2 else b"") + fields


def _gcm(iv_bits: int, tag_bits: int = 128) -> bytes:
    return wire.Writer().data(IV).u64(iv_bits).data(b"header").u64(tag_bits).bytes()


def _init(app: RawApplication, call: int, session: int, mech: bytes, key: int) -> bytes:
    return app.call(request(call, "uMu", u64s(session) + mech + u64s(key)))


@pytest.fixture(scope="module")
def keys(alice):
    aes_value = bytes(range(32))
    aes = alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: aes_value,
                               CKA.ENCRYPT: True, CKA.DECRYPT: True, CKA.TOKEN: True, CKA.LABEL: "rules-aes"})
    hmac = alice.generate_key(CKM.GENERIC_SECRET_KEY_GEN, value_len=32, sign=True, verify=True, label="rules-hmac")
    public, private = alice.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN,
                                              {CKA.MODULUS_BITS: 2048, CKA.ENCRYPT: True, CKA.VERIFY: True},
                                              {CKA.DECRYPT: True, CKA.SIGN: True}, label="rules-rsa")
    return {"aes_value": aes_value, "aes": aes.handle, "hmac": hmac.handle, "rsa_public": public.handle,
            "rsa_private": private.handle}


@pytest.mark.parametrize("version", [1, 2])
def test_gcm_iv_bits_tag_bits_ctr_and_mac_length_rows_through_newer_client_encodings(agent, keys, version):
    app, session = _session(agent, version)
    aes = keys["aes"]
    # the cases: ulIvBits 12345 and 64 for a 12-byte IV
    for iv_bits in (12345, 64, 8):
        assert _init(app, ENCRYPT_INIT, session, _mech(version, CKM.AES_GCM, _gcm(iv_bits)), aes) == PARAM_INVALID
    for tag_bits in (0, 64, 100, 136):
        assert _init(app, ENCRYPT_INIT, session, _mech(version, CKM.AES_GCM, _gcm(96, tag_bits)), aes) \
            == PARAM_INVALID
    for counter_bits in (0, 129):
        ctr = wire.Writer().u64(counter_bits).data(bytes(16)).bytes()
        assert _init(app, ENCRYPT_INIT, session, _mech(version, CKM.AES_CTR, ctr), aes) == PARAM_INVALID
    for length in (0, 33):
        general = wire.Writer().u64(length).bytes()
        assert _init(app, SIGN_INIT, session, _mech(version, CKM.SHA256_HMAC_GENERAL, general), keys["hmac"]) \
            == PARAM_INVALID
    # ulIvBits 0 (left unset) and 96 (ulIvLen * 8) are both accepted, and encrypt as the standard says
    for iv_bits in (0, 96):
        assert _init(app, ENCRYPT_INIT, session, _mech(version, CKM.AES_GCM, _gcm(iv_bits)), aes) \
            == wire.reply_body(ENCRYPT_INIT, "")
        sealed = ok(app.call(request(ENCRYPT, "uayfy", u64s(session) + wire.Writer().byte_array(b"plain text")
                                     .u32(256).bytes())), ENCRYPT, "ay")
        sealed.byte()
        assert sealed.data() == AESGCM(keys["aes_value"]).encrypt(IV, b"plain text", b"header")
    # once the key and mechanism type are proven, the agent answers repeated inits itself: an inconsistent
    # parameter is still another mechanism, refused at the init
    assert _init(app, ENCRYPT_INIT, session, _mech(version, CKM.AES_GCM, _gcm(12345)), aes) == PARAM_INVALID


def test_oaep_source_and_pss_hash_rows_through_the_version_0_client_encoding(agent, keys):
    app, session = _session(agent, 0)

    def oaep(source: int, label: bytes | None) -> bytes:
        return _mech(0, CKM.RSA_PKCS_OAEP, u64s(CKM.SHA256, CKG.MGF1_SHA256, source) + wire.Writer().data(label)
                     .bytes())

    public = keys["rsa_public"]
    for source, label in ((0, b"label"), (2, None), (2, b"label")):
        assert _init(app, ENCRYPT_INIT, session, oaep(source, label), public) == PARAM_INVALID
    hmac_hash = _mech(0, CKM.RSA_PKCS_OAEP, u64s(CKM.SHA256_HMAC, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED)
                      + wire.Writer().data(None).bytes())
    assert _init(app, ENCRYPT_INIT, session, hmac_hash, public) == PARAM_INVALID
    bad_mgf = _mech(0, CKM.RSA_PKCS_PSS, u64s(CKM.SHA256, 9, 32))
    assert _init(app, VERIFY_INIT, session, bad_mgf, public) == PARAM_INVALID
    # the consistent twins are accepted, and source 0 without a label (the leniency pkcs11-tool needs)
    assert _init(app, ENCRYPT_INIT, session, oaep(0, None), public) == wire.reply_body(ENCRYPT_INIT, "")
    sealed = ok(app.call(request(ENCRYPT, "uayfy", u64s(session) + wire.Writer().byte_array(b"x").u32(256).bytes())),
                ENCRYPT, "ay")
    sealed.byte()
    assert len(sealed.data()) == 256
    assert _init(app, ENCRYPT_INIT, session, oaep(CKZ.DATA_SPECIFIED, b"label"), public) \
        == wire.reply_body(ENCRYPT_INIT, "")
    assert _init(app, VERIFY_INIT, session, _mech(0, CKM.RSA_PKCS_PSS, u64s(CKM.SHA256, CKG.MGF1_SHA256, 32)),
                 public) == wire.reply_body(VERIFY_INIT, "")


def _through(command: list[str], agent) -> dict[str, int]:
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_oaep_source_through_debian_12s_p11_kit_client(agent):
    out = _through([sys.executable, str(HERE / "p11_param_rules.py"), str(P11_KIT_CLIENT), "oaep"], agent)
    assert out == {"oaep_source_0": CKR.OK, "oaep_source_2": CKR.MECHANISM_PARAM_INVALID, "oaep_source_1": CKR.OK}


@pytest.mark.network
@pytest.mark.parametrize("suite", ["trixie", "sid"])
def test_gcm_iv_bits_through_newer_p11_kit_clients(agent, suite):
    newer = client(suite, default_cache())
    if newer is None:
        unreachable("Debian's package registry cannot be reached")
    out = _through(newer.command([sys.executable, str(HERE / "p11_param_rules.py"), str(newer.module), "gcm",
                                  "oaep"]), agent)
    assert out == {"gcm_iv_bits_12345": CKR.MECHANISM_PARAM_INVALID, "gcm_iv_bits_64": CKR.MECHANISM_PARAM_INVALID,
                   "gcm_iv_bits_96": CKR.OK, "gcm_iv_bits_0": CKR.OK,
                   "oaep_source_0": CKR.OK, "oaep_source_2": CKR.MECHANISM_PARAM_INVALID, "oaep_source_1": CKR.OK}


def test_pkcs11_tool_oaep_decrypts_with_source_0_and_no_label(agent, alice, tmp_path):
    # OpenSC's pkcs11-tool (0.23, Debian 12) sends CK_RSA_PKCS_OAEP_PARAMS.source 0 on every OAEP call: the one
    # leniency of the table (docs/pkcs11.md, "Mechanism parameters")
    public, _ = alice.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 2048, CKA.ID: b"\x0a\xe9"},
                                        {CKA.DECRYPT: True, CKA.ID: b"\x0a\xe9"}, label="rules-oaep-tool")
    key = rsa.RSAPublicNumbers(int.from_bytes(public[CKA.PUBLIC_EXPONENT], "big"),
                               int.from_bytes(public[CKA.MODULUS], "big")).public_key()
    sealed = tmp_path / "sealed"
    sealed.write_bytes(key.encrypt(b"OAEP from pkcs11-tool", asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()),
                                                                               hashes.SHA256(), None)))
    plain = tmp_path / "plain"
    done = subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "-l", "-p", f"alice:{ALICE_PW}",
                           "--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256",
                           "--id", "0ae9", "-i", str(sealed), "-o", str(plain)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert plain.read_bytes() == b"OAEP from pkcs11-tool"
