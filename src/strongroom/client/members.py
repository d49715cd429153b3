"""What the client knows of each HSM of the cluster and of each application session, and how it picks an HSM
for a request (least outstanding requests, ties taken in turn)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from ..errors import SessionParallelNotSupported, SessionReadWriteSoExists
from ..protocol import CALL_SPECS
from ..vocab import CKF, CKU
from .connection import NodeConnection


@dataclass(eq=False)
class Member:
    """One HSM of the cluster as the client sees it: its connection (``generation`` counts reconnections, so a
    session handle from an earlier connection is known stale), the requests in flight on it from the event loop
    (``outstanding``) and from the synchronous API's threads (``threaded``), and whether the application is
    logged in there."""

    endpoint: str
    conn: NodeConnection | None = None
    generation: int = 0
    outstanding: int = 0
    logged_in: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconnecting: bool = False
    retired: bool = False  # left the cluster: no reconnecting
    threaded: int = 0  # requests in flight from the synchronous API's own threads
    threaded_lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self) -> None:
        with self.threaded_lock:
            self.threaded += 1

    def ended(self) -> None:
        with self.threaded_lock:
            self.threaded -= 1

    @property
    def load(self) -> int:
        return self.outstanding + self.threaded

    @property
    def up(self) -> bool:
        return self.conn is not None and self.conn.is_open


_OPERATION_FLAGS = {"encrypt": CKF.ENCRYPT, "decrypt": CKF.DECRYPT, "digest": CKF.DIGEST, "sign": CKF.SIGN,
                    "verify": CKF.VERIFY, "find": CKF.FIND_OBJECTS}


@dataclass(eq=False)
class VirtualSession:
    """An application session: real session handles per HSM (``endpoint → (generation, handle)``)."""

    vid: int
    flags: int
    handles: dict[str, tuple[int, int]] = field(default_factory=dict)
    pinned: Member | None = None  # a multi-part operation is in progress there
    operations: set[str] = field(default_factory=set)  # the operations in progress there (``"sign"`` …)
    last: Member | None = None  # where its last request was answered

    def ended(self, operation: str, rest: tuple[Any, ...] = ()) -> None:
        """``operation`` ended; for ``C_SessionCancel`` (no operation of its own) those its flags name (``rest``:
        the call's arguments after the session). The session is unpinned when none is left."""
        if operation:
            self.operations.discard(operation)
        else:
            flags = rest[0] if rest and isinstance(rest[0], int) else ~0
            self.operations -= {name for name, flag in _OPERATION_FLAGS.items() if flags & flag}
        if not self.operations:
            self.pinned = None

    def failed(self, name: str, ckr: int, lost: bool) -> None:
        """Call ``name`` failed with ``ckr`` for good (``lost``: its HSM is gone, which ends every operation
        there). A call on an active operation that fails with anything but ``CKR_BUFFER_TOO_SMALL`` ends it
        (PKCS#11 3.0 §5.2, §5.8–§5.13; a search goes on after an error of ``C_FindObjects``)."""
        call = CALL_SPECS[name]
        if self.pinned is None or ckr == 0x150:  # CKR_BUFFER_TOO_SMALL keeps the operation active
            return
        if lost:
            self.operations.clear()
            self.pinned = None
        elif call.operation and (call.ends or (call.operation != "find" and not call.starts and not call.once)):
            self.ended(call.operation)


SESSION_OBJECT_BIT = 1 << 63
CKA_TOKEN = 0x1


def may_make_session_objects(name: str, args: tuple[Any, ...]) -> bool:
    """Whether a call may make a session object (an object template without ``CKA_TOKEN`` true; a copy
    keeps the original's unless its template says): such objects live on one HSM, which every session of the
    application must then use (PKCS#11 3.0 §4.4)."""
    if not CALL_SPECS[name].makes_objects:
        return False
    templates = [a for a in args if isinstance(a, dict)]
    if name == "copy_object":
        return not any(t.get(CKA_TOKEN) for t in templates)
    return not templates or any(not t.get(CKA_TOKEN) for t in templates)


def least_loaded(nodes: list[Member], avoid: AbstractSet[Member], turn: int) -> Member | None:
    """The connected HSM with the fewest requests in flight, outside ``avoid`` if any is; ties go round by
    ``turn``; ``None`` when none is connected."""
    if len(nodes) == 1:
        return nodes[0] if nodes[0].up else None
    up = [n for n in nodes if n.up and n not in avoid] or [n for n in nodes if n.up]
    if not up:
        return None
    least = min(n.load for n in up)
    candidates = [n for n in up if n.load == least]
    return candidates[turn % len(candidates)]


def check_session_flags(flags: int, credentials: tuple[int, str] | None) -> None:
    """The checks ``C_OpenSession`` makes before any HSM is asked (PKCS#11 3.0 §5.6.1).

    Args:
        flags: the ``CKF`` flags of the new session.
        credentials: ``(CKU user type, PIN)`` of the application's login, or None.

    Raises:
        SessionParallelNotSupported: ``CKR_SESSION_PARALLEL_NOT_SUPPORTED`` without ``CKF_SERIAL_SESSION``.
        SessionReadWriteSoExists: ``CKR_SESSION_READ_WRITE_SO_EXISTS``: a read-only session while an admin
            (``CKU_SO``) is logged in.
    """
    if not flags & CKF.SERIAL_SESSION:
        raise SessionParallelNotSupported("C_OpenSession needs CKF_SERIAL_SESSION")
    if credentials is not None and credentials[0] == CKU.SO and not flags & CKF.RW_SESSION:
        raise SessionReadWriteSoExists("an admin is logged in: only read-write sessions may open")
