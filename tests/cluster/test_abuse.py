"""Faults found by using the node and SDK as a hostile or careless client; each kept as a test."""

from __future__ import annotations

import struct
import time

import msgspec
import pytest

import strongroom.client as sdk
from strongroom.errors import ArgumentsBad, DeviceError, PinIncorrect
from strongroom.node import HSM
from strongroom.protocol import PROTOCOL_VERSION, Hello, HelloReply
from strongroom.vocab import CKR

from .nodes import strongroom
from .test_protocol_edges import Raw


def test_deep_nesting_is_answered_on_its_request_id(node, pki):
    proc, _ = node
    raw = Raw(proc.endpoint, pki)
    raw.send(Hello([PROTOCOL_VERSION]))
    assert isinstance(raw.receive(), HelloReply)
    nested = b"\x91" * 5000 + b"\xc0"
    body = msgspec.msgpack.encode(["request", 42, ["find", 1]])[:-1] + nested
    raw.sock.sendall(struct.pack(">I", len(body)) + body)
    answer = raw.receive()
    assert (answer.id, answer.ckr) == (42, CKR.ARGUMENTS_BAD)
    assert "Traceback" not in proc.log_text()


def test_wrong_typed_argument_fails_fast_with_arguments_bad(cluster):
    session = cluster.open_session()
    started = time.monotonic()
    with pytest.raises(ArgumentsBad):
        session.random(1.5)
    assert time.monotonic() - started < 5
    session.close()


def test_failed_login_leaves_no_session(cluster):
    before = cluster.hsm_info()["open_sessions"]
    for _ in range(3):
        with pytest.raises(PinIncorrect) as caught:
            cluster.login("nobody", "wrong-password")
        assert caught.value.ckr == CKR.PIN_INCORRECT
    assert cluster.hsm_info()["open_sessions"] == before
    with pytest.raises(ArgumentsBad):
        cluster.login("alice", "whatever1", role="root")


def test_a_data_directory_is_served_by_one_process(node):
    proc, _ = node
    with pytest.raises(DeviceError) as info:
        HSM(proc.data_dir)
    assert "already served" in info.value.message


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:x"])
def test_bad_listen_address_is_refused(tmp_path, pki, listen):
    done = strongroom("node", "--data-dir", str(tmp_path), "--listen", listen, "--cert", str(pki["server"].cert),
                      "--key", str(pki["server"].key))
    assert done.returncode != 0 and "HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_bad_client_configuration_is_refused():
    for config in ({"endpoints": ["127.0.0.1:99999"], "trust_anchor": "ca.crt"},
                   {"endpoints": ["127.0.0.1:1"], "trust_anchor": "ca.crt", "timeout_s": -1},
                   {"endpoints": ["127.0.0.1:1"], "trust_anchor": "ca.crt", "server_name": 5}):
        with pytest.raises(ArgumentsBad):
            sdk.ClientConfig.from_dict(config)


def test_sdk_refuses_malformed_templates_and_mechanisms_before_sending(alice):
    from strongroom.vocab import CKM

    for call in (lambda: alice.find("str"), lambda: alice.find({"a": 1}), lambda: alice.find({None: 1}),
                 lambda: alice.create_object(5), lambda: alice.generate_key(CKM.AES_KEY_GEN, [1]),
                 lambda: alice.generate_key(None), lambda: alice.digest(b"x", "str"),
                 lambda: alice.digest(b"x", 1.5)):
        with pytest.raises(ArgumentsBad):
            call()
