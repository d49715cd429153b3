"""Attribute arrays (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE) read with PKCS#11 3.0 §5.7.5's
two-call pattern, and every fixed-width string of C_GetInfo / C_GetSlotInfo / C_GetTokenInfo cut on a UTF-8
character boundary: through p11-kit's client of Debian 12 (0.24.1, which cannot carry an attribute array's value),
of Debian 13 (0.25.5, protocol version 1) and of sid (0.26.x, version 2), with ctypes for exact structures, and
through the SDK."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.pkcs11 import wire
from strongroom.vocab import CKA, CKK, CKO, CKR

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT, agent_log, serving_agent
from .downloads import unreachable
from .newer_p11kit import client, default_cache
from .raw import RawApplication, initialized, ok, request, u64s

HERE = Path(__file__).parent
LABEL = "é" * 15 + "x"  # 31 bytes of UTF-8: the field holds it whole, then one blank
WRAP = {CKA.CLASS: int(CKO.SECRET_KEY), CKA.KEY_TYPE: int(CKK.AES), CKA.EXTRACTABLE: True}
UNWRAP = {CKA.LABEL: "déballée", CKA.SENSITIVE: True}
DERIVE = {CKA.ENCRYPT: True, CKA.VALUE_LEN: 16, CKA.LABEL: "derived"}
ENTRY = 24  # sizeof(CK_ATTRIBUTE) on x86-64


def _blank(text: bytes, size: int) -> str:
    return text.ljust(size, b" ").hex()


@pytest.fixture(scope="module")
def labelled_agent(node, tmp_path_factory):
    with serving_agent(node[1], tmp_path_factory.mktemp("labelled"), "--token-label", LABEL) as socket_path:
        yield socket_path


@pytest.fixture(scope="module")
def sdk_key(alice):
    return alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(range(32)),
                                CKA.TOKEN: True, CKA.LABEL: "arrays-by-sdk", CKA.WRAP: True, CKA.UNWRAP: True,
                                CKA.DERIVE: True, CKA.WRAP_TEMPLATE: WRAP, CKA.UNWRAP_TEMPLATE: UNWRAP,
                                CKA.DERIVE_TEMPLATE: DERIVE})


def _run(agent: Path, command: list[str]) -> dict:
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr + agent_log(agent).read_text()[-3000:]
    return json.loads(done.stdout)


def _wire(value) -> bytes:
    """A node value as the application's memory holds it (x86-64): CK_ULONG 8 bytes LE, CK_BBOOL one byte."""
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return value.to_bytes(8, "little")
    return value.encode() if isinstance(value, str) else bytes(value)


def _assert_read(steps: dict, expected: dict) -> None:
    """The two-call pattern gave exactly ``expected``, entry by entry; the too-small cases per §5.7.5."""
    n = len(expected)
    assert steps["size"] == {"rv": 0, "type": steps["size"]["type"], "len": n * ENTRY}
    assert steps["lengths"]["rv"] == 0 and steps["lengths"]["len"] == n * ENTRY
    assert {e["type"]: e["len"] for e in steps["lengths"]["entries"]} == {
        int(k): len(_wire(v)) for k, v in expected.items()}
    assert steps["values"]["rv"] == 0
    assert {e["type"]: bytes.fromhex(e["value"]) for e in steps["values"]["entries"]} == {
        int(k): _wire(v) for k, v in expected.items()}
    if n > 1:
        assert steps["top_too_small"]["rv"] == CKR.BUFFER_TOO_SMALL and steps["top_too_small"]["len"] == -1
    entries = steps["entry_too_small"]
    assert entries["rv"] == CKR.BUFFER_TOO_SMALL and entries["len"] == n * ENTRY
    lengths = [e["len"] for e in steps["values"]["entries"]]
    longest = lengths.index(max(lengths))  # given a one-byte buffer: CK_UNAVAILABLE_INFORMATION, the rest filled
    assert [e["len"] for e in entries["entries"]] == [-1 if i == longest else n for i, n in enumerate(lengths)]
    assert [e["type"] for e in entries["entries"]] == [e["type"] for e in steps["values"]["entries"]]


def _assert_fields(out: dict) -> None:
    assert out["token_rv"] == out["slot_rv"] == out["info_rv"] == 0
    assert out["token"]["label"] == _blank(LABEL.encode(), 32)
    assert bytes.fromhex(out["token"]["label"]).decode("utf-8") == LABEL + " "
    assert out["token"]["manufacturerID"] == _blank(b"Strongroom", 32)
    assert out["token"]["model"] == _blank(b"Strongroom HSM", 16)
    assert out["token"]["serialNumber"] == hashlib.sha256(b"cluster-test0000001").hexdigest()[:16].encode().hex()
    assert out["slot"] == {"slotDescription": _blank(b"Strongroom cluster", 64),
                           "manufacturerID": _blank(b"Strongroom", 32)}
    assert out["info"] == {"manufacturerID": _blank(b"Strongroom", 32),
                           "libraryDescription": _blank(b"Strongroom PKCS#11 agent", 32)}


def test_debian12_client_reads_fields_and_is_told_it_cannot_carry_arrays(labelled_agent, sdk_key, alice):
    for made in alice.find(label="arrays-by-p11"):
        made.destroy()
    out = _run(labelled_agent, [sys.executable, str(HERE / "p11_attr_arrays.py"), str(P11_KIT_CLIENT)])
    _assert_fields(out)
    # 0.24.1 carries CKA_WRAP_TEMPLATE and CKA_UNWRAP_TEMPLATE in requests, CKA_DERIVE_TEMPLATE only as raw memory
    assert (out["create_rv"], out["create_without_derive_rv"]) == (CKR.ATTRIBUTE_VALUE_INVALID, 0)
    for made in ("by_p11", "by_sdk"):
        for name in ("wrap", "unwrap", "derive"):
            # 0.24.1 refuses any reply naming an array type (the connection would die): a clean refusal instead
            assert out[made][name] == {"size": {"rv": CKR.ATTRIBUTE_TYPE_INVALID, "type": out[made][name]["size"][
                "type"], "len": 0}, "after": {"rv": 0, "type": int(CKA.LABEL), "len": 13}}
    assert out["finalize"] == 0
    made = alice.find(label="arrays-by-p11")
    assert len(made) == 1
    assert out["set_rv"] == 0 and out["after_set"]["size"]["rv"] == CKR.ATTRIBUTE_TYPE_INVALID
    assert made[0].get(CKA.WRAP_TEMPLATE, CKA.UNWRAP_TEMPLATE) == {CKA.WRAP_TEMPLATE: {CKA.KEY_TYPE: CKK.AES},
                                                                   CKA.UNWRAP_TEMPLATE: UNWRAP}


@pytest.mark.network
@pytest.mark.parametrize("suite", ["trixie", "sid"])
def test_newer_client_reads_each_array_with_the_two_call_pattern(labelled_agent, sdk_key, alice, suite):
    newer = client(suite, default_cache())
    if newer is None:
        unreachable("Debian's package registry cannot be reached")
    for made in alice.find(label="arrays-by-p11"):
        made.destroy()
    out = _run(labelled_agent, newer.command([sys.executable, str(HERE / "p11_attr_arrays.py"), str(newer.module)]))
    _assert_fields(out)
    assert out["create_rv"] == 0 and "create_without_derive_rv" not in out
    for made in ("by_p11", "by_sdk"):
        _assert_read(out[made]["wrap"], WRAP)
        _assert_read(out[made]["unwrap"], UNWRAP)
        _assert_read(out[made]["derive"], DERIVE)
    assert out["set_rv"] == 0
    _assert_read(out["after_set"], {CKA.KEY_TYPE: CKK.AES})
    assert sdk_key.get(CKA.WRAP_TEMPLATE, CKA.UNWRAP_TEMPLATE, CKA.DERIVE_TEMPLATE) == {
        CKA.WRAP_TEMPLATE: WRAP, CKA.UNWRAP_TEMPLATE: UNWRAP, CKA.DERIVE_TEMPLATE: DERIVE}


def test_a_token_label_longer_than_its_field_is_refused(node, tmp_path):
    (tmp_path / "cluster.json").write_text(json.dumps(node[1]))
    done = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config", str(tmp_path / "cluster.json"),
                           "--socket", str(tmp_path / "p11.sock"), "--token-label", "é" * 19 + "x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("Error: the token label is 39 bytes in UTF-8; a PKCS#11 token label holds at most 32: "
                           "shorten it\n")



def test_each_request_layout_gets_its_exact_answer(labelled_agent, sdk_key):
    """The bytes of p11-kit's four ``fA`` layouts for CKA_WRAP_TEMPLATE and the agent's exact replies."""
    def login(version: int) -> tuple[RawApplication, int]:
        app = initialized(labelled_agent, version)
        session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
        pin = u64s(session, 1) + wire.Writer().byte(1).data(f"alice:{ALICE_PW}".encode()).bytes()
        assert app.call(request(18, "uuay", pin)) == wire.reply_body(18, "")
        return app, session

    def get(app: RawApplication, session: int, attrs: bytes) -> bytes:
        return app.call(request(24, "uufA", u64s(session, sdk_key.handle) + attrs))

    wrap = int(CKA.WRAP_TEMPLATE).to_bytes(4, "big")
    label = int(CKA.LABEL).to_bytes(4, "big")
    size_answer = wire.reply_body(24, "aAu", wire.Writer().u32(1).u32(int(CKA.WRAP_TEMPLATE)).byte(1).u32(72)
                                  .u32(0).u64(0))
    # 0.24.1 (version 0) and 0.25.0-0.25.3 (version 1) send no nested list and refuse any answer naming an array
    for version in (0, 1):
        app, session = login(version)
        assert get(app, session, bytes.fromhex("00000001") + wrap + bytes(4)) == wire.error_body(
            int(CKR.ATTRIBUTE_TYPE_INVALID))
        assert get(app, session, bytes.fromhex("00000001") + label + bytes(4)) == wire.reply_body(
            24, "aAu", wire.Writer().u32(1).attribute(int(CKA.LABEL), b"arrays-by-sdk").u64(0))
    # 0.25.4 and 0.25.5: a nested list after every array entry, a count 0 for a NULL buffer
    app, session = login(1)
    assert get(app, session, bytes.fromhex("00000001") + wrap + bytes(4) + bytes(4)) == size_answer
    # 0.25.6 and later: a nested list only after a non-NULL buffer; three entries, the third one byte too small
    app, session = login(2)
    assert get(app, session, bytes.fromhex("00000001") + wrap + bytes(4)) == size_answer
    nested = wire.Writer().u32(3).u32(0).u32(8).u32(0).u32(0).u32(0).u32(0).bytes()  # lengths 8, 0 (NULL), 0 (NULL)
    values = (wire.Writer().u32(1).u32(int(CKA.WRAP_TEMPLATE)).byte(1).u32(72).u32(3)
              .u32(int(CKA.CLASS)).byte(1).u32(8).u64(int(CKO.SECRET_KEY))
              .u32(int(CKA.KEY_TYPE)).byte(1).u32(8).u64(int(CKK.AES))
              .u32(int(CKA.EXTRACTABLE)).byte(1).u32(1).byte(1).u64(0))
    assert get(app, session, bytes.fromhex("00000001") + wrap + (72).to_bytes(4, "big") + nested) == \
        wire.reply_body(24, "aAu", values)
    short = wire.Writer().u32(3).u32(0).u32(8).u32(0).u32(4).u32(0).u32(1).bytes()  # KEY_TYPE into 4 bytes
    assert get(app, session, bytes.fromhex("00000001") + wrap + (72).to_bytes(4, "big") + short) == \
        wire.reply_body(24, "aAu", wire.Writer().u32(1).u32(int(CKA.WRAP_TEMPLATE)).byte(1).u32(72).u32(3)
                        .u32(int(CKA.CLASS)).byte(1).u32(8).u64(int(CKO.SECRET_KEY))
                        .u32(int(CKA.KEY_TYPE)).byte(0)
                        .u32(int(CKA.EXTRACTABLE)).byte(1).u32(1).byte(1).u64(int(CKR.BUFFER_TOO_SMALL)))
    # the whole array into 48 bytes: too small, CK_UNAVAILABLE_INFORMATION
    two = wire.Writer().u32(2).u32(0).u32(8).u32(0).u32(0).bytes()
    assert get(app, session, bytes.fromhex("00000001") + wrap + (48).to_bytes(4, "big") + two) == \
        wire.reply_body(24, "aAu", wire.Writer().u32(1).u32(int(CKA.WRAP_TEMPLATE)).byte(0)
                        .u64(int(CKR.BUFFER_TOO_SMALL)))
    # an entry after one that did not fit is still answered
    assert get(app, session, bytes.fromhex("00000002") + wrap + (48).to_bytes(4, "big") + two + label +
               (64).to_bytes(4, "big")) == wire.reply_body(
        24, "aAu", wire.Writer().u32(2).u32(int(CKA.WRAP_TEMPLATE)).byte(0)
        .attribute(int(CKA.LABEL), b"arrays-by-sdk").u64(int(CKR.BUFFER_TOO_SMALL)))
