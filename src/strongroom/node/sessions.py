"""Sessions and their active operations (PKCS#11 3.0 §5.6, §5.8–§5.13)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import BufferTooSmall


class OpKind(str, Enum):  # noqa: UP042 - str() and format() of a member stay as they are
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    DIGEST = "digest"
    SIGN = "sign"
    VERIFY = "verify"


@dataclass
class ActiveOperation:
    """One initialised operation of a session.

    Attributes:
        op: the crypto layer's operation object.
        key: handle of the key it uses (0 for digests).
        multi: set once an ``*Update`` call was made; single-part calls are then refused.
        final: the result of ``*Final`` or of a single-part call, computed once and kept until delivered, so a
            size query or a too-small buffer neither repeats nor changes the operation (PKCS#11 3.0 §5.2).
        final_input: for single-part calls, the input the kept result belongs to.
    """

    kind: OpKind
    mechanism: int
    op: Any
    key: int = 0
    multi: bool = False
    final: bytes | None = None
    final_input: bytes | None = None


@dataclass
class Session:
    """A session of one application. ``find`` holds the remaining handles of an active find."""

    handle: int
    app_id: int
    rw: bool
    ops: dict[OpKind, ActiveOperation] = field(default_factory=dict)
    find: list[int] | None = None


def deliver(result: bytes, out_len: int | None, query: bool) -> bytes | int:
    """Apply the output-buffer convention of PKCS#11 3.0 §5.2 to a computed result.

    Args:
        result: the complete output.
        out_len: the caller's buffer length in bytes; ``None`` means large enough.
        query: the caller passed no buffer and asks for the length.

    Returns:
        ``len(result)`` for a query, else ``result``.

    Raises:
        BufferTooSmall: ``CKR_BUFFER_TOO_SMALL`` with the exact required length.
    """
    if query:
        return len(result)
    if out_len is not None and out_len < len(result):
        raise BufferTooSmall(len(result))
    return result
