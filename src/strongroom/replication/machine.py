"""The replicated state machine: applies log entries (each a batch of
:class:`~strongroom.replication.change.Change`) to a node's store, in log order, exactly once each.

The store records the index of the last entry it applied in the same SQLite transaction as the entry's writes,
so a node killed at any instant restarts with a store that equals a prefix of the log; entries at or below that
index are skipped when the log is replayed. Applying is deterministic: preconditions, capacity and duplicate
requests are decided from the store alone, so every node reaches the same state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DeviceMemory
from ..store import Store
from .change import BATCH_DECODER, ENCODER, Change, Outcome, first_outcome

log = logging.getLogger("strongroom.replication")

# Outcomes of client requests are kept for this many log entries, so a write retried after a failover within
# that window answers with its first outcome.
REQUEST_WINDOW = 200_000

Listener = Callable[[Change, Outcome], None]


def _refused(tx: Any, index: int, reason: str) -> Outcome:
    """A change whose preconditions failed: nothing but an audit entry is written."""
    tx.audit("change-refused", "", index=index, reason=reason)
    return Outcome(index=0, conflict=True, ckr=0x5, message=reason)


class StateMachine:
    """Applies changes to one store.

    Args:
        store: the node's store.

    Attributes:
        token_objects: the number of stored objects (kept in step with the store by :meth:`apply`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.token_objects = store.count_objects()
        self.applied = store.applied_index()
        self._listeners: list[Listener] = []
        self._reset_listeners: list[Callable[[], None]] = []
        self._advance_listeners: list[Callable[[int], None]] = []

    def on_applied(self, listener: Listener) -> None:
        """Call ``listener(change, outcome)`` after each applied change (in the applying thread)."""
        self._listeners.append(listener)

    def on_advance(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(index)`` whenever the applied index advances (in the applying thread)."""
        self._advance_listeners.append(listener)

    def on_reset(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after a snapshot replaced the state."""
        self._reset_listeners.append(listener)

    def apply(self, index: int, entry: bytes) -> list[Outcome]:
        """Apply the log entry at ``index``: a batch of changes, in order, in one store transaction.

        Returns:
            One outcome per change; for an index this store already holds, empty outcomes (a replay after
            restart).

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the store cannot be written; the entry stays unapplied.
        """
        if index <= self.applied:
            return []
        try:
            changes = BATCH_DECODER.decode(entry)
        except Exception as exc:  # an entry no node of this version can read: record and skip it
            log.error("log entry %d is not a batch of changes: %s", index, exc)
            with self.store.transaction() as tx:
                tx.set_applied_index(index)
                tx.audit("log-entry-unreadable", "", index=index)
            self._advance(index)
            return []
        count = self.token_objects
        with self.store.transaction() as tx:
            tx.set_applied_index(index)
            outcomes = []
            for change in changes:
                outcome, count = self._apply(tx, index, change, count)
                outcomes.append(outcome)
            if index % 1000 == 0:
                tx.forget_requests(index - REQUEST_WINDOW)
        self.token_objects = count
        self._advance(index)
        for change, outcome in zip(changes, outcomes, strict=True):
            if outcome.ckr == 0 and not outcome.duplicate:
                for listener in self._listeners:
                    try:
                        listener(change, outcome)
                    except Exception:  # a cache that failed to update is dropped by its owner, not the log
                        log.exception("listener failed after log entry %d", index)
        return outcomes

    def _apply(self, tx: Any, index: int, change: Change, count: int) -> tuple[Outcome, int]:
        """Apply one change inside the entry's transaction; returns its outcome and the new object count."""
        if change.request:
            first = first_outcome(tx.get_request(change.request))
            if first is not None:
                return first, count
        for handle, version in change.expect_objects:
            if tx.object_version(handle) != version:
                return _refused(tx, index, f"object {handle} changed while this change was made"), count
        for name, version in change.expect_users:
            if tx.user_version(name) != version:
                return _refused(tx, index, f"user {name} changed while this change was made"), count
        stored_mode = tx.get_setting("mode")
        if change.mode and stored_mode is not None and stored_mode.decode() != change.mode:
            return _refused(tx, index, f"the cluster's mode is {stored_mode.decode()}; it never changes"), count
        added = sum(1 for put in change.objects if tx.object_version(put.handle) == 0)
        removed = sum(1 for handle in set(change.delete_objects) if tx.object_version(handle) != 0)
        if added and change.max_objects and count + added - removed > change.max_objects:
            err = DeviceMemory(f"the token store is full ({change.max_objects} objects)")
            return Outcome(index=0, ckr=int(err.ckr), message=err.message), count
        outcome = Outcome(index=index, created=list(change.created))
        if change.reserve_handles:
            outcome.first_handle = tx.next_counter("next_handle", change.reserve_handles)
        for event in change.audit:
            tx.audit(event.event, event.actor, **event.detail)
        for put in change.objects:
            tx.put_object(put)
        for handle in change.delete_objects:
            tx.delete_object(handle)
        for user in change.users:
            tx.put_user(user.name, user.version, user.envelope)
        for name in change.delete_users:
            tx.delete_user(name)
        if change.directory:
            directory = json.loads(tx.get_setting("directory") or b"{}")
            for address, endpoint in change.directory.items():
                if endpoint:
                    directory[address] = endpoint
                else:
                    directory.pop(address, None)
            tx.put_setting("directory", json.dumps(directory, sort_keys=True).encode())
        if change.cluster_identity:
            tx.put_setting("cluster_identity", change.cluster_identity)
        if change.mode and stored_mode is None:
            tx.put_setting("mode", change.mode.encode())
        if change.admit:
            admitted = set(json.loads(tx.get_setting("admitted") or b"[]"))
            for fingerprint in change.admit:
                if fingerprint.startswith("-"):
                    admitted.discard(fingerprint[1:])
                else:
                    admitted.add(fingerprint)
            tx.put_setting("admitted", json.dumps(sorted(admitted)).encode())
        if change.request:
            tx.put_request(change.request, index, ENCODER.encode(outcome))
        return outcome, count + added - removed

    def _advance(self, index: int) -> None:
        self.applied = index
        for listener in self._advance_listeners:
            listener(index)

    def directory(self) -> dict[str, str]:
        """Members' client endpoints (``host:port``) by replication address (``host:port``)."""
        directory: dict[str, str] = json.loads(self.store.get_setting("directory") or b"{}")
        return directory

    def cluster_identity(self) -> bytes | None:
        """The encoded cluster certificate record, if the cluster has one."""
        return self.store.get_setting("cluster_identity")

    def mode(self) -> str:
        """The cluster's mode, ``FIPS`` or ``NON_FIPS``; ``FIPS`` for a cluster founded before modes existed."""
        return (self.store.get_setting("mode") or b"FIPS").decode()

    def admitted(self) -> set[str]:
        """Fingerprints of the fleet certificates the control plane admitted to join."""
        return set(json.loads(self.store.get_setting("admitted") or b"[]"))

    # ----------------------------------------------------------------- snapshots
    def save_snapshot(self, path: Path | str, meta: bytes) -> None:
        """Write the state at the current applied index to ``path`` with the log's ``meta`` bytes."""
        self.store.export_replicated(path, meta)

    def load_snapshot(self, path: Path | str) -> bytes:
        """Install a snapshot unless this store is already at or past its index; return its meta bytes.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the file cannot be read or installed.
        """
        index, meta = Store.snapshot_info(path)
        if index > self.applied:
            self.store.import_replicated(path, {"index": index, "previous_index": self.applied})
            self.token_objects = self.store.count_objects()
            self._advance(index)
            for listener in self._reset_listeners:
                listener()
        return meta
