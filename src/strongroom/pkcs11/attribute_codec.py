"""Attribute values between p11-kit's wire classes and the node's attribute kinds.

p11-kit's client encodes a value by its own fixed table (``wire.BYTE_ATTRIBUTES`` …); an attribute outside it
travels as raw bytes in the application's memory layout (a ``CK_ULONG`` as 8 little-endian bytes on x86-64, a
``CK_BBOOL`` as one byte). The node wants each value in its kind (:mod:`strongroom.objects.attributes`).
"""

from __future__ import annotations

from typing import Any

from ..attribute_kinds import KINDS, Kind
from ..errors import AttributeValueInvalid
from ..vocab import CKA
from . import wire


def _kind(cka: int) -> Kind | None:
    try:
        return KINDS.get(CKA(cka))
    except ValueError:
        return None


def to_node(template: list[tuple[int, Any]]) -> dict[int, Any]:
    """A node template from a wire template.

    Raises:
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` for an entry without a value or of the wrong size.
    """
    out: dict[int, Any] = {}
    for cka, value in template:
        if value is None:
            raise AttributeValueInvalid(f"attribute 0x{cka:x} has no value")
        kind = _kind(cka)
        if kind is Kind.BOOL and isinstance(value, bytes):
            if len(value) != 1:
                raise AttributeValueInvalid(f"attribute 0x{cka:x} is a CK_BBOOL")
            value = value != b"\x00"
        elif kind is Kind.ULONG and isinstance(value, bytes):
            if len(value) not in (4, 8):
                raise AttributeValueInvalid(f"attribute 0x{cka:x} is a CK_ULONG")
            value = int.from_bytes(value, "little")
        elif kind is Kind.DATE and isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        elif kind is Kind.TEMPLATE and isinstance(value, list):
            value = to_node(value)
        out[cka] = value
    return out


def to_wire(cka: int, value: Any) -> Any:
    """A node value in the form p11-kit's client decodes for that attribute type."""
    if cka in wire.BYTE_ATTRIBUTES:
        return bool(value)
    if cka in wire.ULONG_ATTRIBUTES:
        return int(value)
    if cka in wire.ATTRIBUTE_ARRAY_ATTRIBUTES:
        return [(int(k), to_wire(int(k), v)) for k, v in value.items()]
    if cka in wire.MECHANISM_ARRAY_ATTRIBUTES:
        return [int(m) for m in value]
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return value.to_bytes(8, "little")
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def wire_length(cka: int, value: Any) -> int:
    """The length the application sees for a wire value (``ulValueLen``)."""
    if cka in wire.BYTE_ATTRIBUTES:
        return 1
    if cka in wire.ULONG_ATTRIBUTES:
        return wire.ULONG_BYTES
    if cka in wire.ATTRIBUTE_ARRAY_ATTRIBUTES:
        return 24 * len(value)
    if cka in wire.MECHANISM_ARRAY_ATTRIBUTES:
        return 8 * len(value)
    return len(value)
