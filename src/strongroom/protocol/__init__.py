"""The wire protocol: length-prefixed msgpack frames over TLS 1.3, with request ids for pipelining."""

from .calls import CALL_SPECS, CATALOGUE, CallSpec, Template
from .frames import DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameTooLarge, encode_frame
from .messages import (
    CALL_TYPES,
    CAPABILITIES,
    PROTOCOL_VERSION,
    ClientMessage,
    Hello,
    HelloReply,
    Request,
    Response,
    ServerMessage,
    call_arguments,
)

__all__ = [
    "CALL_SPECS",
    "CALL_TYPES",
    "CAPABILITIES",
    "CATALOGUE",
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "CallSpec",
    "ClientMessage",
    "FrameReader",
    "FrameTooLarge",
    "Hello",
    "HelloReply",
    "Request",
    "Response",
    "ServerMessage",
    "Template",
    "call_arguments",
    "encode_frame",
]
