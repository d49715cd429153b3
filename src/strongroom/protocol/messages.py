"""Wire messages: the hello exchange, requests (one struct per call) and responses.

Every message is msgpack (msgspec). A request is ``[id, [call, arg…]]``; its call is one of the call catalogue's
(:mod:`strongroom.protocol.calls`), each a node operation with the arguments of the node ``Application`` method
of the same name. A
response is ``[id, ckr, value, message]``: ``ckr`` is ``CKR_OK`` (0) with the call's value, or the ``CKR_*``
of the error with a message. Requests on one connection may be answered in any order; ids pair them up.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from .calls import CALL_SPECS, CATALOGUE, CallSpec

PROTOCOL_VERSION = 1
CAPABILITIES = ("pipelining", "oneshot-crypto")


class Hello(msgspec.Struct, array_like=True, tag="hello"):
    """The client's first frame: the protocol versions and capabilities it speaks."""

    versions: list[int]
    capabilities: list[str] = []
    client: str = ""


class HelloReply(msgspec.Struct, array_like=True, tag="hello-reply"):
    """The node's answer: the chosen version, its capabilities, and limits (bytes, seconds). ``node`` holds
    ``serial``, ``cluster_id``, ``firmware_version`` and ``time``, the node's clock (UTC, seconds since the epoch)
    when it answered, from which a client measures its clock's skew."""

    version: int
    capabilities: list[str]
    node: dict[str, Any]
    max_frame_bytes: int
    idle_timeout_s: float


def _struct(call: CallSpec) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [*call.args, *call.kwargs]
    return msgspec.defstruct(call.name, fields, tag=call.name, array_like=True, frozen=True)


CALL_TYPES: dict[str, type[msgspec.Struct]] = {call.name: _struct(call) for call in CATALOGUE}
"""The wire struct of every call of the catalogue, by name."""
Call = Union[tuple(CALL_TYPES.values())]  # type: ignore[valid-type]  # noqa: UP007 - built from the catalogue


class Request(msgspec.Struct, array_like=True, tag="request", omit_defaults=True):
    """One call with the id its response will carry (an unsigned 64-bit integer chosen by the client).

    Attributes:
        after: the highest log index the client has seen; the node answers once it has applied it
            (read-your-writes), or with the retryable ``NodeBehind`` error after a bounded wait.
        key: the request key of a write (up to 32 bytes): a write sent again with the same key, to any node,
            answers with the first attempt's result instead of being done twice.
    """

    id: int
    call: Call  # type: ignore[valid-type]
    after: int = 0
    key: bytes = b""


class Response(msgspec.Struct, array_like=True, tag="response"):
    """The answer to the request with the same id: ``ckr`` 0 and a value, or a ``CKR_*`` and a message;
    ``index`` is the log index a write committed at (0 for calls that wrote nothing)."""

    id: int
    ckr: int
    value: Any = None
    message: str = ""
    index: int = 0


ClientMessage = Hello | Request
ServerMessage = HelloReply | Response


def call_arguments(call: msgspec.Struct) -> tuple[str, list[Any], dict[str, Any]]:
    """The method name, positional and keyword arguments a call struct stands for."""
    name = str(type(call).__struct_config__.tag)
    record = CALL_SPECS[name]
    return name, [getattr(call, n) for n, _ in record.args], {n: getattr(call, n) for n, _, _ in record.kwargs}
