"""The wire protocol: length-prefixed msgpack frames over TLS 1.3, with request ids for pipelining."""

from .frames import DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameTooLarge, encode_frame
from .messages import (
    CALL_TYPES,
    CALLS,
    CAPABILITIES,
    PROTOCOL_VERSION,
    WRITE_CALLS,
    ClientMessage,
    Hello,
    HelloReply,
    Request,
    Response,
    ServerMessage,
    call_arguments,
)

__all__ = [
    "CALLS",
    "CALL_TYPES",
    "CAPABILITIES",
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "WRITE_CALLS",
    "ClientMessage",
    "FrameReader",
    "FrameTooLarge",
    "Hello",
    "HelloReply",
    "Request",
    "Response",
    "ServerMessage",
    "call_arguments",
    "encode_frame",
]
