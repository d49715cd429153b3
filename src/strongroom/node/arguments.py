"""Checks on the arguments callers pass into the boundary, before anything acts on them.

Callers reach the node from the wire and from Python; whatever arrives, a bad argument is a ``CKR_*``
error naming what is wrong, never a Python exception from deep inside.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import ArgumentsBad, MechanismInvalid, MechanismParamInvalid
from ..mechanism_params import Mechanism
from ..objects.attributes import as_text

ULONG_MAX = 2**64 - 1
MAX_DATA_BYTES = 16 * 1024 * 1024
MAX_RANDOM_BYTES = 1024 * 1024


def ulong(value: Any, what: str) -> int:
    """An unsigned 64-bit integer (``CK_ULONG``: handles, counts, flags, user types).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ULONG_MAX:
        raise ArgumentsBad(f"{what} must be an unsigned 64-bit integer, got {value!r:.40}")
    return value


def data(value: Any, what: str = "data") -> bytes:
    """Input bytes of at most 16 MiB.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a non-bytes value (an ``int`` is not taken as a length).
    """
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ArgumentsBad(f"{what} must be bytes, got {type(value).__name__}")
    out = bytes(value)
    if len(out) > MAX_DATA_BYTES:
        raise ArgumentsBad(f"{what} is {len(out)} bytes; one call takes at most {MAX_DATA_BYTES}")
    return out


def out_len(value: Any) -> int | None:
    """The caller's output buffer length in bytes, or ``None`` for "large enough"."""
    return None if value is None else ulong(value, "out_len")


def template(value: Any) -> dict[int, Any]:
    """An attribute template: a mapping (or ``None`` for empty).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for anything else.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArgumentsBad(f"a template must be a mapping of attribute types to values, got {type(value).__name__}")
    return value


def text(value: Any, what: str) -> str:
    """A string that is valid Unicode (encodable as UTF-8).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD``.
    """
    try:
        return as_text(value)
    except ValueError as exc:
        raise ArgumentsBad(f"{what} {exc}") from None


def mechanism(value: Any) -> Mechanism:
    """A :class:`Mechanism` whose parameter has the exact types its struct declares.

    Raises:
        MechanismInvalid: ``CKR_MECHANISM_INVALID`` when the mechanism type is not a ``CK_ULONG``.
        MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID`` when the parameter does not match its struct.
    """
    if not isinstance(value, Mechanism):
        raise MechanismInvalid(f"expected a Mechanism, got {type(value).__name__}")
    kind = value.mechanism
    if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= ULONG_MAX:
        raise MechanismInvalid(f"the mechanism type must be a CK_ULONG, got {kind!r:.40}")
    if value.parameter is None:
        return value
    try:
        return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=Mechanism)
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise MechanismParamInvalid(f"the mechanism parameter is malformed: {exc}") from None
