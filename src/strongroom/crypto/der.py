"""The few DER shapes that PKCS#11 attributes carry (ITU-T X.690 §8.1 identifier and length octets).

Handled: one-byte tags with definite, minimally encoded lengths. That covers ``CKA_EC_POINT`` (an OCTET
STRING), the oId and curveName choices of ``CKA_EC_PARAMS``, and the outer ``SEQUENCE`` of a PKCS#8
PrivateKeyInfo. Everything else is left to ``cryptography``'s own parsers.
"""

from __future__ import annotations

OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
PRINTABLE_STRING = 0x13
SEQUENCE = 0x30


def encode(tag: int, content: bytes) -> bytes:
    """Encode one DER value.

    Args:
        tag: the one-byte identifier octet (e.g. :data:`OCTET_STRING`).
        content: the content octets.

    Returns:
        ``tag‖length‖content`` with the length in short form below 128 bytes, long form above.
    """
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def read(data: bytes) -> tuple[int, bytes, int]:
    """Parse the first DER value at the start of ``data``.

    Args:
        data: bytes starting with a DER value; anything after it is ignored.

    Returns:
        ``(tag, content, end)``: the identifier octet, the content octets and the offset just past the value.

    Raises:
        ValueError: truncated input, an indefinite or non-minimal length, or a length over 4 octets.
    """
    if len(data) < 2:
        raise ValueError("truncated DER value")
    tag, first = data[0], data[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        if length < 0x80 or data[2] == 0:
            raise ValueError("non-minimal DER length")
        offset = 2 + count
    end = offset + length
    if len(data) < end:
        raise ValueError("truncated DER value")
    return tag, data[offset:end], end


def decode(tag: int, data: bytes) -> bytes:
    """Return the content of ``data``, which must be exactly one DER value with identifier ``tag``.

    Raises:
        ValueError: malformed, another tag, or bytes after the value.
    """
    actual, content, end = read(data)
    if actual != tag or end != len(data):
        raise ValueError(f"expected exactly one DER value with tag 0x{tag:02x}")
    return content
