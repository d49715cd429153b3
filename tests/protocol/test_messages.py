"""Wire messages (protocol/messages.py): every call in a frame, the hello exchange and responses survive
encoding (the catalogue's own round trip of each call struct is in test_calls.py)."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from strongroom.client.connection import request_frame
from strongroom.errors import ArgumentsBad
from strongroom.mechanism_params import Mechanism
from strongroom.protocol import (
    CALL_SPECS,
    CALL_TYPES,
    ClientMessage,
    FrameReader,
    Hello,
    HelloReply,
    Request,
    Response,
    ServerMessage,
    call_arguments,
)
from strongroom.vocab import CKA, CKM

CLIENT = msgspec.msgpack.Decoder(ClientMessage)
SERVER = msgspec.msgpack.Decoder(ServerMessage)
ENCODER = msgspec.msgpack.Encoder()

SAMPLES: dict[Any, Any] = {
    int: 2**40 + 3,
    bytes: b"\x00\xffdata",
    str: "alice",
    bool: True,
    list[int]: [int(CKA.LABEL), int(CKA.VALUE)],
    dict[int, list[int]]: {int(CKA.KEY_TYPE): [0x40, 0x41]},
    dict[int, Any]: {int(CKA.TOKEN): True, int(CKA.LABEL): "key", int(CKA.ID): b"\x01"},
    Mechanism: Mechanism(int(CKM.AES_CBC_PAD), b"\x00" * 16),
}


def _sample(annotation: Any) -> Any:
    if annotation in SAMPLES:
        return SAMPLES[annotation]
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    assert options, annotation
    return _sample(options[0])


def _arguments(name: str) -> tuple[list[Any], dict[str, Any]]:
    spec = CALL_SPECS[name]
    return [_sample(t) for _, t in spec.args], {n: _sample(t) for n, t, _ in spec.kwargs}


@pytest.mark.parametrize("name", sorted(CALL_SPECS))
def test_every_call_goes_through_a_frame_and_back(name):
    args, kwargs = _arguments(name)
    key = b"k" * 16 if CALL_SPECS[name].write else b""
    (body,) = FrameReader().feed(request_frame(77, name, tuple(args), kwargs, after=12, key=key))
    request = CLIENT.decode(body)
    assert isinstance(request, Request)
    assert (request.id, request.after, request.key) == (77, 12, key)
    assert call_arguments(request.call) == (name, args, kwargs)


def test_a_request_without_index_or_key_reads_as_index_0_and_no_key():
    bare = msgspec.msgpack.encode(["request", 5, ["hsm_info"]])
    assert CLIENT.decode(bare) == Request(5, CALL_TYPES["hsm_info"](), 0, b"")


def test_the_hello_exchange_round_trips():
    hello = Hello([1, 2], ["pipelining"], "pid=1")
    assert CLIENT.decode(ENCODER.encode(hello)) == hello
    assert CLIENT.decode(ENCODER.encode(Hello([1]))) == Hello([1], [], "")
    reply = HelloReply(1, ["pipelining", "oneshot-crypto"], {"name": "hsm-1"}, 17 << 20, 300.0)
    assert SERVER.decode(ENCODER.encode(reply)) == reply


@pytest.mark.parametrize("response", [
    Response(9, 0, b"\x01" * 64, "", 0),
    Response(9, 0, [1, 2, 3], "", 41),
    Response(2**64 - 1, 0xA0, None, "CKR_PIN_INCORRECT", 0),
    Response(3, 0x150, 256, "CKR_BUFFER_TOO_SMALL", 0),
])
def test_responses_round_trip(response):
    assert SERVER.decode(ENCODER.encode(response)) == response


@pytest.mark.parametrize("name, args, kwargs", [
    ("no_such_call", (), {}),
    ("hsm_info", (1,), {}),
    ("open_session", (), {}),
    ("login", (1, 1, "pin"), {"unknown": 1}),
])
def test_a_call_that_cannot_be_encoded_is_refused_before_it_leaves(name, args, kwargs):
    with pytest.raises(ArgumentsBad):
        request_frame(1, name, args, kwargs)
