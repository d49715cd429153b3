"""The node's two write paths: changes committed through the replicated log, and node-local writes.

Every change to token objects, users, lockout counters, membership and the cluster identity is a log entry
(:meth:`Committer.commit`): it reaches the store when the log applies it, on every member alike. Beside it
there is exactly one other path, :func:`local_write`, for what belongs to this node alone (its own audit chain
entries and its settings); see there why.

A client request's part in a write is explicit: the node server makes a :class:`RequestContext` per request
and the write calls pass it to :meth:`Committer.commit`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from ..errors import FunctionFailed, error_for
from ..replication import Change, Outcome
from ..replication.change import first_outcome
from ..store import Store, Transaction
from .state import Log, Running

_CONFLICT_RETRIES = 64


@dataclass
class RequestContext:
    """One client request's part in the writes it makes.

    Attributes:
        key: the request key (at most 32 bytes; empty for none) that makes a write exactly-once: a write sent
            again with the same key answers its first outcome instead of being done twice.
        index: out: the highest log index a write of this request committed at (0 for none), which the answer
            carries so the client can read its own writes on any HSM.
    """

    key: bytes = b""
    index: int = 0

    def committed_at(self, index: int) -> None:
        """Record that a write of this request committed at log ``index``."""
        self.index = max(self.index, index)


@contextmanager
def local_write(store: Store) -> Iterator[Transaction]:
    """A write to this node's store that bypasses the replicated log: the one write path beside it.

    It serves what is this node's own and must not be replicated: its audit chain (logins, wraps, self-tests,
    membership steps and zeroisation happen on one node, and each node's chain is a hash chain of its own
    events), and the settings that make the node (its cluster id, serial and sealed masking key, written by
    :meth:`~strongroom.node.boundary.HSM.initialize` before any log exists). Nothing written here is object, user or
    cluster state.

    Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when SQLite fails.
    """
    with store.transaction() as tx:
        yield tx


class Serving(Protocol):
    """What a committer needs of its node: its state and its log."""

    def require_operational(self) -> Running: ...

    @property
    def log(self) -> Log: ...


class Committer:
    """Commits changes through the log, building them again when they race other writers.

    Args:
        node: the node whose log commits (an :class:`~strongroom.node.boundary.HSM`).
        store: the node's store, for request keys already applied and for audit-only changes.
    """

    def __init__(self, node: Serving, store: Store) -> None:
        self._node = node
        self._store = store

    def commit(self, change: Change | Callable[[], Change | None], *, timeout_s: float = 3.0,
               request: RequestContext | None = None) -> Outcome:
        """Commit a change through the replicated log and return its outcome.

        ``change`` may be a function that builds the change from the current state; it is called again when the
        change was refused because a record it read changed meanwhile (up to 64 times, after a short random
        pause that grows, so that writers racing on one record all get through), and may return ``None``
        when there is nothing left to do. A change that writes nothing replicated (audit events only) goes to
        this node's audit chain alone (:func:`local_write`). Never call this holding the node's lock.

        Args:
            request: the client request this write serves: its key goes into the change (exactly-once), and the
                index the change committed at comes back in it. ``None`` for the node's own writes (handle
                reservations, login counters, membership), which no client retries by key.

        Raises:
            NoQuorum: (retryable) not committed in time.
            DeviceMemory: ``CKR_DEVICE_MEMORY`` when the token store is full.
            FunctionFailed: ``CKR_FUNCTION_FAILED`` when concurrent changes kept refusing it.
            DeviceError: ``CKR_DEVICE_ERROR`` when the node is not operational or its log is closed.
        """
        self._node.require_operational()
        if request is not None and request.key and callable(change):
            # A write sent again (its answer was lost) that this HSM has applied already: its first outcome,
            # before building it again from a state it changed (a destroyed object is gone by now).
            outcome = first_outcome(self._store.get_request(request.key))
            if outcome is not None and not outcome.ckr and not outcome.conflict:
                if outcome.index:
                    request.committed_at(outcome.index)
                return outcome
        for attempt in range(_CONFLICT_RETRIES):
            if attempt:
                time.sleep(random.uniform(0, min(0.05, 0.002 * attempt)))  # noqa: S311 - jitter, not a secret
            built = change() if callable(change) else change
            if built is None:
                return Outcome()
            if built.empty:
                with local_write(self._store) as tx:
                    for event in built.audit:
                        tx.audit(event.event, event.actor, **event.detail)
                return Outcome()
            log = self._node.log
            if not built.request and request is not None:
                built.request = request.key
            outcome = log.commit(built, timeout_s)
            if outcome.conflict:
                if callable(change):
                    continue
                raise FunctionFailed(f"{outcome.message}; retry")
            if outcome.ckr:
                raise error_for(outcome.ckr, outcome.message)
            if request is not None and outcome.index:
                request.committed_at(outcome.index)
            return outcome
        raise FunctionFailed("concurrent changes to the same records kept refusing this change; retry")

