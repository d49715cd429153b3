"""p11-kit RPC wire format: frames, primitive values, attribute templates, error frames.

The agent speaks the protocol of p11-kit's ``p11-kit-client.so`` (the PKCS#11 module that forwards every call
over a unix socket). A frame is a 12-byte header — call code (a per-connection sequence number the reply echoes),
options length, body length, all big-endian u32 — then the options and the body. A request body is the call id
(u32), its signature string (a byte string such as ``"uayfy"``) and the arguments in signature order; a success
reply repeats the call id with the reply signature; an error reply is call id 0, signature ``"u"`` and the
``CK_RV`` as a u64. Every ``CK_ULONG`` travels as a u64. A byte string is a u32 length and its bytes; the
length ``0xFFFFFFFF`` stands for a NULL pointer.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import TransportError
from ..vocab import CKR

HEADER = struct.Struct(">III")
NULL_LENGTH = 0xFFFFFFFF
MAX_FRAME_BYTES = 17 * 1024 * 1024  # what an HSM takes in one request, with room for the message around it
MAX_TEMPLATE_ATTRIBUTES = 1024  # attributes in one template (a PKCS#11 object has fewer than 100 kinds)
ERROR_CALL_ID = 0

# Attribute value classes of the p11-kit client (its table decides how a value travels).
BYTE_ATTRIBUTES = frozenset({
    0x1, 0x2, 0x86, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10A, 0x10B, 0x10C, 0x162, 0x163, 0x164,
    0x165, 0x170, 0x171, 0x200, 0x202, 0x210, 0x301, 0x302, 0x405,
})
ULONG_ATTRIBUTES = frozenset({
    0x0, 0x80, 0x87, 0x88, 0x100, 0x121, 0x133, 0x134, 0x160, 0x161, 0x166, 0x201, 0x300, 0x400, 0x401, 0x402,
    0x403, 0x404, 0x406, 0x500,
})
DATE_ATTRIBUTES = frozenset({0x110, 0x111})
ATTRIBUTE_ARRAY_ATTRIBUTES = frozenset({0x40000211, 0x40000212, 0x40000213})
MECHANISM_ARRAY_ATTRIBUTES = frozenset({0x40000600})
ULONG_BYTES = 8  # the declared length of a ULONG value for 64-bit clients
ATTRIBUTE_BYTES = 24  # sizeof(CK_ATTRIBUTE) for 64-bit clients: an attribute array's length is entries x 24

BufferRequest = tuple[int, int, "list[BufferRequest] | None"]
"""One ``fA`` entry: attribute type, the caller's buffer length (0: NULL), the nested list of an array buffer."""


def _has_nested(requests: list[BufferRequest]) -> bool:
    return any(nested is not None for _, _, nested in requests)


class WireError(TransportError, ValueError):
    """``CKR_ARGUMENTS_BAD``: a frame or body that does not follow the protocol (answered with an error frame
    carrying ``CKR_ARGUMENTS_BAD``, never a drop). Also a ``ValueError``, as a parse error."""

    ckr = CKR.ARGUMENTS_BAD


def encode_frame(code: int, body: bytes, options: bytes = b"") -> bytes:
    return HEADER.pack(code, len(options), len(body)) + options + body


class FrameReader:
    """Splits a byte stream into ``(code, options, body)`` frames; tolerates any segmentation.

    A frame over the size limit is skipped as its bytes arrive (never buffered) and comes out with body
    ``None``, so that it can be answered with an error and the stream stays in step.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.buffer = bytearray()
        self.max_frame_bytes = max_frame_bytes
        self.skipping = 0  # bytes of an oversized frame still to discard

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes | None]]:
        self.buffer += data
        frames: list[tuple[int, bytes, bytes | None]] = []
        while True:
            if self.skipping:
                dropped = min(self.skipping, len(self.buffer))
                del self.buffer[:dropped]
                self.skipping -= dropped
                if self.skipping:
                    break
            if len(self.buffer) < HEADER.size:
                break
            code, options_len, body_len = HEADER.unpack_from(self.buffer)
            if options_len + body_len > self.max_frame_bytes:
                del self.buffer[:HEADER.size]
                self.skipping = options_len + body_len
                frames.append((code, b"", None))
                continue
            end = HEADER.size + options_len + body_len
            if len(self.buffer) < end:
                break
            options = bytes(self.buffer[HEADER.size:HEADER.size + options_len])
            body = bytes(self.buffer[HEADER.size + options_len:end])
            del self.buffer[:end]
            frames.append((code, options, body))
        return frames


class Reader:
    """Reads the values of one body in order; every read checks the bounds (:class:`WireError`)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.body):
            raise WireError("the body ends early")
        chunk = self.body[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def data(self) -> bytes | None:
        """A byte string; ``None`` for a NULL pointer."""
        length = self.u32()
        if length == NULL_LENGTH:
            return None
        if length >= 0x7FFFFFFF:
            raise WireError(f"byte string length {length} is invalid")
        return self._take(length)

    def version(self) -> tuple[int, int]:
        major, minor = self._take(2)
        return major, minor

    def signature(self) -> str:
        value = self.data()
        if value is None:
            raise WireError("the signature is missing")
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise WireError("the signature is not ASCII") from None

    def byte_array(self) -> tuple[bytes | None, int]:
        """``ay``: ``(data, length)``; data ``None`` when only a length (or a NULL pointer) was sent."""
        if self.byte():
            value = self.data()
            return value, 0 if value is None else len(value)
        return None, self.u32()

    def buffer_size(self) -> int | None:
        """``fy``/``fu``: the caller's buffer capacity; ``None`` for a NULL buffer (a size query)."""
        size = self.u32()
        if size == 0:
            return None
        return 0 if size == NULL_LENGTH else size

    def ulong_array(self) -> list[int] | int:
        """``au``: the values, or only their count when the sender gave no array."""
        present = self.byte()
        count = self.u32()
        if not present:
            return count
        if count > (len(self.body) - self.pos) // 8:
            raise WireError("the array is longer than the body")
        return [self.u64() for _ in range(count)]

    def attribute_value(self, cka: int) -> Any:
        if cka in BYTE_ATTRIBUTES:
            return bool(self.byte())
        if cka in ULONG_ATTRIBUTES:
            return self.u64()
        if cka in ATTRIBUTE_ARRAY_ATTRIBUTES:
            return self.template()
        if cka in MECHANISM_ARRAY_ATTRIBUTES:
            count = self.u32()
            if count > (len(self.body) - self.pos) // 8:
                raise WireError("the mechanism array is longer than the body")
            return [self.u64() for _ in range(count)]
        value = self.data()  # DATE and every byte-array attribute travel as byte strings
        return b"" if value is None else value

    def template(self, depth: int = 0) -> list[tuple[int, Any]]:
        """``aA``: ``(type, value)`` pairs; a value is ``None`` for an entry sent as not valid."""
        if depth > 4:
            raise WireError("attribute templates are nested too deeply")
        count = self.u32()
        if count > MAX_TEMPLATE_ATTRIBUTES or count > (len(self.body) - self.pos) // 5:
            raise WireError(f"a template of {count} attributes (at most {MAX_TEMPLATE_ATTRIBUTES})")
        attrs: list[tuple[int, Any]] = []
        for _ in range(count):
            cka = self.u32()
            if not self.byte():
                attrs.append((cka, None))
                continue
            declared = self.u32()  # the value's own encoding carries what is needed, but for one case:
            if cka in ATTRIBUTE_ARRAY_ATTRIBUTES and declared and self.body[self.pos:self.pos + 4] == \
                    declared.to_bytes(4, "big"):
                # p11-kit before 0.25 knows CKA_DERIVE_TEMPLATE as no array: it sends the caller's CK_ATTRIBUTE
                # structures as bytes (count x 24, pointers included), where an array sends its count (x 1)
                value: Any = self.data()
            elif cka in ATTRIBUTE_ARRAY_ATTRIBUTES:
                value = self.template(depth + 1)
            else:
                value = self.attribute_value(cka)
            attrs.append((cka, value))
        return attrs

    def attribute_buffers(self) -> list[tuple[int, int]]:
        """``fA`` without nested lists: ``(type, buffer length)`` per wanted attribute (0: a length query)."""
        return [(cka, capacity) for cka, capacity, _ in self._buffer_list("flat", 0)]

    def attribute_requests(self) -> tuple[list[BufferRequest], bool]:
        """``fA`` as the last argument, in whichever of p11-kit's layouts fills the rest of the body exactly.

        Returns ``(requests, nested)``: per wanted attribute ``(type, buffer length, nested)`` where
        ``nested`` lists the same for the entries of an attribute-array buffer (``None`` when the client sent
        none); ``nested`` is True when the client sent nested lists, i.e. can take attribute-array values.
        p11-kit up to 0.25.3 sends no nested list; 0.25.4 and 0.25.5 follow every attribute-array entry with
        one (a count 0 for a NULL buffer); 0.25.6 and later only a non-NULL one. The bytes decide: the three
        layouts consume different lengths whenever they differ.

        Raises:
            WireError: no layout fits the body.
        """
        start, error = self.pos, None
        for layout in ("non-null", "always", "flat"):
            self.pos = start
            try:
                requests = self._buffer_list(layout, 0)
            except WireError as exc:
                error = error or exc
                continue
            if self.pos == len(self.body):
                return requests, layout != "flat" and _has_nested(requests)
        self.pos = start
        raise error or WireError("the attribute list does not fill the body")

    def _buffer_list(self, layout: str, depth: int) -> list[BufferRequest]:
        if depth > 4:
            raise WireError("attribute lists are nested too deeply")
        count = self.u32()
        if count > MAX_TEMPLATE_ATTRIBUTES or count > (len(self.body) - self.pos) // 8:
            raise WireError(f"a list of {count} attributes (at most {MAX_TEMPLATE_ATTRIBUTES})")
        out: list[BufferRequest] = []
        for _ in range(count):
            cka, capacity = self.u32(), self.u32()
            nested = None
            if cka in ATTRIBUTE_ARRAY_ATTRIBUTES and (layout == "always" or (layout == "non-null" and capacity)):
                nested = self._buffer_list(layout, depth + 1)
            out.append((cka, capacity, nested))
        return out

    def done(self) -> None:
        if self.pos != len(self.body):
            raise WireError(f"{len(self.body) - self.pos} bytes left over after the arguments")


class Writer:
    """Builds one body."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def byte(self, value: int) -> Writer:
        self.parts.append(bytes((value & 0xFF,)))
        return self

    def u32(self, value: int) -> Writer:
        self.parts.append(value.to_bytes(4, "big"))
        return self

    def u64(self, value: int) -> Writer:
        self.parts.append((value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big"))
        return self

    def data(self, value: bytes | None) -> Writer:
        if value is None:
            return self.u32(NULL_LENGTH)
        self.u32(len(value))
        self.parts.append(bytes(value))
        return self

    def padded(self, text: str, size: int) -> Writer:
        """``s``: a blank-padded fixed-length string of exactly ``size`` bytes (PKCS#11 3.0 §3.2 info fields).

        A text longer than the field is cut on a UTF-8 character boundary, so the field stays valid UTF-8.
        """
        return self.data(fixed_field(text, size))

    def version(self, major: int, minor: int) -> Writer:
        self.parts.append(bytes((major, minor)))
        return self

    def byte_array(self, value: bytes | None, length: int | None = None) -> Writer:
        """``ay`` in a reply: the data, or (``value`` None) only the length the caller needs."""
        if value is not None:
            return self.byte(1).data(value)
        return self.byte(0).u32(length or 0)

    def ulong_array(self, values: list[int] | None, count: int | None = None) -> Writer:
        if values is None:
            return self.byte(0).u32(count or 0)
        self.byte(1).u32(len(values))
        for value in values:
            self.u64(value)
        return self

    def attribute(self, cka: int, value: Any) -> Writer:
        """One ``aA`` entry; ``value`` None sends it as not valid (length ``CK_UNAVAILABLE_INFORMATION``)."""
        self.u32(cka)
        if value is None:
            return self.byte(0)
        self.byte(1)
        if cka in BYTE_ATTRIBUTES:
            return self.u32(1).byte(1 if value else 0)
        if cka in ULONG_ATTRIBUTES:
            return self.u32(ULONG_BYTES).u64(int(value))
        if cka in ATTRIBUTE_ARRAY_ATTRIBUTES:
            self.u32(len(value) * 24)
            return self.template(value)
        if cka in MECHANISM_ARRAY_ATTRIBUTES:
            self.u32(len(value) * 8).u32(len(value))
            for mechanism in value:
                self.u64(mechanism)
            return self
        raw = bytes(value)
        return self.u32(len(raw)).data(raw or None)  # an empty value travels as p11-kit encodes it: NULL

    def template(self, attrs: list[tuple[int, Any]]) -> Writer:
        self.u32(len(attrs))
        for cka, value in attrs:
            self.attribute(cka, value)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def fixed_field(text: str, size: int) -> bytes:
    """``text`` as a blank-padded field of exactly ``size`` bytes, cut before any character that would not fit.

    Example: a 39-byte label of 19 "é" (2 bytes each) and "x" gives 16 "é" (32 bytes) in a 32-byte field.
    """
    encoded = text.encode("utf-8")
    if len(encoded) > size:
        end = size
        while end > 0 and encoded[end] & 0xC0 == 0x80:  # a continuation byte starts no character
            end -= 1
        encoded = encoded[:end]
    return encoded.ljust(size, b" ")


def reply_body(call_id: int, signature: str, writer: Writer | None = None) -> bytes:
    """A success reply: the call id, the reply signature, the outputs."""
    head = Writer().u32(call_id).data(signature.encode("ascii")).bytes()
    return head + (writer.bytes() if writer is not None else b"")


def error_body(rv: int) -> bytes:
    """An error reply carrying ``rv`` (a ``CKR_*`` other than ``CKR_OK``)."""
    return Writer().u32(ERROR_CALL_ID).data(b"u").u64(rv).bytes()
