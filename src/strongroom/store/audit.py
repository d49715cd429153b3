"""The audit chain: append-only, gap-free, each entry holding the SHA-256 of the previous one.

Entry digest = SHA-256 over ``prev digest (32) ‖ canonical JSON of [seq, time, event, actor, detail]``.
The first entry's previous digest is 32 zero bytes. The chain head (last sequence number and digest) is kept in
the settings table as well, so that cutting entries off the end is detected too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)


def canonical(seq: int, time: str, event: str, actor: str, detail: dict[str, Any]) -> bytes:
    """The bytes an entry's digest covers (sorted-key compact JSON, UTF-8)."""
    return json.dumps([seq, time, event, actor, detail], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def entry_digest(prev: bytes, seq: int, time: str, event: str, actor: str, detail: dict[str, Any]) -> bytes:
    """SHA-256 of the previous digest and this entry's canonical bytes (32 bytes)."""
    return hashlib.sha256(prev + canonical(seq, time, event, actor, detail)).digest()


@dataclass(frozen=True)
class AuditEntry:
    """One audit record. ``time`` is ISO 8601 UTC; ``detail`` a JSON object; ``digest`` 32 bytes."""

    seq: int
    time: str
    event: str
    actor: str
    detail: dict[str, Any]
    prev: bytes
    digest: bytes


@dataclass(frozen=True)
class AuditReport:
    """The verifier's verdict.

    Attributes:
        ok: whether the whole chain verified.
        entries: how many entries were read.
        first_bad_seq: sequence number of the first modified, missing or reordered entry (``None`` if ok).
        reason: what was wrong at that entry.
    """

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify(rows: list[tuple[int, str, str, str, str, bytes, bytes]], head: tuple[int, bytes] | None) -> AuditReport:
    """Verify a chain read in storage order.

    Args:
        rows: ``(seq, time, event, actor, detail JSON, prev, digest)`` in the order storage returns them
            (ascending row id).
        head: ``(last seq, last digest)`` as recorded beside the chain, or ``None`` for an empty chain.

    Returns:
        An :class:`AuditReport` naming the first entry that is modified (digest mismatch), missing (sequence
        gap or broken link), or reordered (sequence out of order), or a truncated tail.
    """
    prev, expected_seq = GENESIS, 1
    for seq, time, event, actor, detail_json, row_prev, digest in rows:
        if seq != expected_seq:
            kind = "missing" if seq > expected_seq else "reordered"
            return AuditReport(False, expected_seq - 1, expected_seq,
                               f"entry {expected_seq} is {kind}: found {seq} in its place")
        if bytes(row_prev) != prev:
            return AuditReport(False, seq - 1, seq, f"entry {seq} does not link to entry {seq - 1}")
        try:
            detail = json.loads(detail_json)
        except ValueError:
            return AuditReport(False, seq - 1, seq, f"entry {seq} has an unreadable detail")
        if entry_digest(prev, seq, time, event, actor, detail) != bytes(digest):
            return AuditReport(False, seq - 1, seq, f"entry {seq} was modified")
        prev, expected_seq = bytes(digest), seq + 1
    last = expected_seq - 1
    if head is not None and (head[0] != last or bytes(head[1]) != prev):
        if head[0] > last:
            return AuditReport(False, last, last + 1, f"entries {last + 1}..{head[0]} were cut off the end")
        return AuditReport(False, last, head[0], "the chain head does not match the last entry")
    return AuditReport(True, last)
