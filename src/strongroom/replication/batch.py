"""The leader's batching of changes: the changes one log entry carries and the clients waiting on them."""

from __future__ import annotations

import threading

from .change import Outcome


class Batch:
    """Changes sent to the log as one entry, and whether their waiters were answered."""

    __slots__ = ("members", "settled")

    def __init__(self) -> None:
        self.members: list[tuple[bytes, Waiter]] = []
        self.settled = False


class Waiter:
    """One change's client: its outcome or error once the entry is applied (or given up)."""

    __slots__ = ("batch", "done", "error", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: Exception | None = None
        self.batch: Batch | None = None


def array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` items (the batch's changes follow, already encoded)."""
    if count < 16:
        return bytes((0x90 | count,))
    return b"\xdc" + count.to_bytes(2, "big")
