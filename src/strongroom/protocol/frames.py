"""Length-prefixed frames: a 4-byte big-endian body length, then the body (a msgpack message).

A frame longer than the agreed maximum is refused before its body is read, so a peer cannot make the other
side buffer more than ``max_frame_bytes``.
"""

from __future__ import annotations

import struct

from ..errors import ArgumentsBad

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
DEFAULT_MAX_FRAME_BYTES = 17 * 1024 * 1024  # 16 MiB of data plus room for the message around it


class FrameTooLarge(ArgumentsBad):
    """A frame announced a body longer than the maximum; the connection cannot be resynchronised."""


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length."""
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frame bodies.

    Args:
        max_frame_bytes: the largest body accepted.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frame bodies now available, in order.

        Raises:
            FrameTooLarge: a header announced more than ``max_frame_bytes``.
        """
        buf = self._buffer
        buf += data
        bodies = []
        start = 0
        end = len(buf)
        while end - start >= HEADER_BYTES:
            (length,) = HEADER.unpack_from(buf, start)
            if length > self.max_frame_bytes:
                raise FrameTooLarge(f"frame of {length} bytes exceeds the maximum of {self.max_frame_bytes}")
            if end - start - HEADER_BYTES < length:
                break
            body_start = start + HEADER_BYTES
            bodies.append(bytes(buf[body_start:body_start + length]))
            start = body_start + length
        if start:
            del buf[:start]
        return bodies

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)
