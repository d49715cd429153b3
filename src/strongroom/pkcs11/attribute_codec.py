"""Attribute values between p11-kit's wire classes and the node's attribute kinds.

p11-kit's client encodes a value by its own fixed table (``wire.BYTE_ATTRIBUTES`` …); an attribute outside it
travels as raw bytes in the application's memory layout (a ``CK_ULONG`` as 8 little-endian bytes on x86-64, a
``CK_BBOOL`` as one byte). The node wants each value in its kind (:mod:`strongroom.objects.attributes`).
"""

from __future__ import annotations

from typing import Any

from ..attribute_kinds import KINDS, Kind
from ..errors import AttributeValueInvalid
from ..vocab import CKA, CKR
from . import wire


def _kind(cka: int) -> Kind | None:
    try:
        return KINDS.get(CKA(cka))
    except ValueError:
        return None


def _name(cka: int) -> str:
    try:
        return f"CKA_{CKA(cka).name}"
    except ValueError:
        return f"attribute 0x{cka:x}"


def to_node(template: list[tuple[int, Any]]) -> dict[int, Any]:
    """A node template from a wire template.

    Raises:
        AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` for an entry without a value or of the wrong size,
            or an attribute array that came as raw memory (``CKA_DERIVE_TEMPLATE`` from p11-kit before 0.25).
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
        elif kind is Kind.TEMPLATE:
            raise AttributeValueInvalid(f"{_name(cka)} came as the application's memory, not as an attribute "
                                        "array: p11-kit's client before 0.25 cannot carry it; set it with a newer "
                                        "client or the SDK")
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
        return wire.ATTRIBUTE_BYTES * len(value)
    if cka in wire.MECHANISM_ARRAY_ATTRIBUTES:
        return 8 * len(value)
    return len(value)


def write_requested(w: wire.Writer, cka: int, value: Any, capacity: int,
                    nested: list[wire.BufferRequest] | None, inner: bool = False) -> int:
    """One ``C_GetAttributeValue`` answer entry for a buffer of ``capacity`` bytes (0: NULL), per PKCS#11 3.0 §5.7.5.

    A length query gets the exact length; a buffer too small gets ``CK_UNAVAILABLE_INFORMATION``. An attribute
    array (``CKF_ARRAY_ATTRIBUTE``) answers a length query with entries x ``sizeof(CK_ATTRIBUTE)`` and no
    entries, as p11-kit's own server does; into a buffer large enough, each entry follows the same rules against
    the caller's buffer for it (``nested``, in order; the caller's types are ignored, §5.7.5 note). An entry's
    length query (``inner``) carries no bytes of a variable-length value: p11-kit's client would copy them into
    a non-NULL buffer it sent as length 0.

    Returns:
        ``CKR_OK``, or ``CKR_BUFFER_TOO_SMALL`` when this value or an entry of it did not fit.
    """
    encoded = to_wire(cka, value)
    length = wire_length(cka, encoded)
    if capacity and length > capacity:
        w.attribute(cka, None)
        return int(CKR.BUFFER_TOO_SMALL)
    if cka in wire.ATTRIBUTE_ARRAY_ATTRIBUTES:
        w.u32(cka).byte(1).u32(length)
        if not capacity:
            w.u32(0)
            return 0
        w.u32(len(value))
        rv = 0
        for index, (entry, entry_value) in enumerate(value.items()):
            entry_capacity, entry_nested = 0, None
            if nested is not None and index < len(nested):
                _, entry_capacity, entry_nested = nested[index]
            rv = write_requested(w, int(entry), entry_value, entry_capacity, entry_nested, True) or rv
        return rv
    if inner and not capacity and cka not in wire.BYTE_ATTRIBUTES | wire.ULONG_ATTRIBUTES:
        w.u32(cka).byte(1).u32(length)
        if cka in wire.MECHANISM_ARRAY_ATTRIBUTES:
            w.u32(0)
        else:
            w.data(b"")
        return 0
    w.attribute(cka, encoded)
    return 0
