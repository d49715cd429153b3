"""The replicated log's entries: atomic changes to the cluster's state (an entry carries a batch of them, from
concurrent writers on one node), and the outcome of applying each.

A :class:`Change` records store writes (sealed object rows, sealed user records, deletions), the audit events
they come with, and the versions the writer read (compare-and-set preconditions). Every node applies the same
changes in log order, so every node's store holds the same objects and users; a change whose preconditions no
longer hold (another writer changed the record first) is refused identically everywhere and changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..store import ObjectRow


class UserPut(msgspec.Struct, array_like=True, frozen=True):
    name: str
    version: int
    envelope: bytes


class AuditEvent(msgspec.Struct, array_like=True, frozen=True):
    event: str
    actor: str
    detail: dict[str, Any]


class Change(msgspec.Struct, array_like=True, kw_only=True):
    """One log entry.

    Attributes:
        request: the client's idempotency key (``b""`` for none): a second change with the same key is not
            applied; it answers with the first one's outcome.
        objects: sealed object rows to store.
        created: the handles among them that are new objects (the change's result).
        expect_objects: ``(handle, version)`` pairs the stored objects must still have (``0``: must not exist).
        delete_objects: handles to delete.
        users, expect_users, delete_users: the same for user records, by username.
        revoke: users whose logins end on every node once the change applies (deleted, password reset).
        audit: events every node appends to its audit chain with the change.
        reserve_handles: a number of object handles to reserve for the proposing node (result: the first).
        max_objects: capacity of the token store; a change that would pass it is refused (``CKR_DEVICE_MEMORY``).
        directory: members' client endpoints by replication address (``""`` removes one), for clients to
            discover every HSM from any of them.
        step_down: the replication address of a leader asked to hand its leadership to another member (before
            its removal).
        compact: every member compacts its journal into a snapshot (before a newcomer joins, so that it
            catches up from one snapshot instead of every entry).
        cluster_identity: the cluster certificate's record (CSR, sealed key, certificate, trust anchor; see
            :mod:`strongroom.trust.cluster_certificate`), replacing the stored one.
        admit: fleet certificate fingerprints (SHA-256, hex) of HSMs the control plane admits to join; a
            fingerprint prefixed with ``-`` withdraws one (after its join).
        leaving: the replication address of a member being removed: that member stops when it applies this
            (before the membership shrinks, while it still hears from the cluster).
        mode: the cluster's mode, ``FIPS`` or ``NON_FIPS`` (the founding change only): set once, never changed.
    """

    request: bytes = b""
    objects: list[ObjectRow] = []
    created: list[int] = []
    expect_objects: list[tuple[int, int]] = []
    delete_objects: list[int] = []
    users: list[UserPut] = []
    expect_users: list[tuple[str, int]] = []
    delete_users: list[str] = []
    revoke: list[str] = []
    audit: list[AuditEvent] = []
    reserve_handles: int = 0
    max_objects: int = 0
    directory: dict[str, str] = {}
    step_down: str = ""
    compact: bool = False
    cluster_identity: bytes = b""
    admit: list[str] = []
    leaving: str = ""
    mode: str = ""

    # ------------------------------------------------------------ building (mirrors store.Transaction)
    def put_object(self, row: ObjectRow, *, new: bool, expect: int | None = None) -> None:
        """Store ``row``; ``expect`` is the version the writer read (``None``: no precondition)."""
        self.objects.append(row)
        if new:
            self.created.append(row.handle)
        if expect is not None:
            self.expect_objects.append((row.handle, expect))

    def delete_object(self, handle: int, expect: int | None = None) -> None:
        self.delete_objects.append(handle)
        if expect is not None:
            self.expect_objects.append((handle, expect))

    def put_user(self, name: str, version: int, envelope: bytes, *, expect: int | None = None) -> None:
        self.users.append(UserPut(name, version, envelope))
        if expect is not None:
            self.expect_users.append((name, expect))

    def delete_user(self, name: str, expect: int | None = None) -> None:
        self.delete_users.append(name)
        if expect is not None:
            self.expect_users.append((name, expect))

    def add_audit(self, event: str, actor: str, **detail: Any) -> None:
        self.audit.append(AuditEvent(event, actor, detail))

    @property
    def empty(self) -> bool:
        return not (self.objects or self.delete_objects or self.users or self.delete_users
                    or self.reserve_handles or self.directory or self.step_down or self.compact
                    or self.cluster_identity or self.admit or self.leaving or self.mode)


class Outcome(msgspec.Struct, array_like=True):
    """What applying a change gave.

    Attributes:
        index: the log index the change was committed at (``0`` when it was not applied).
        ckr: ``CKR_OK`` (0), or the ``CKR_*`` value that refused it.
        message: why it was refused.
        created: handles of the objects the change created, in order.
        first_handle: the first of the reserved handles.
        conflict: refused because a record changed since the writer read it; building the change again
            from the current state may succeed.
        duplicate: the change's request key had already been applied; this is that first outcome.
    """

    index: int = 0
    ckr: int = 0
    message: str = ""
    created: list[int] = []
    first_handle: int = 0
    conflict: bool = False
    duplicate: bool = False


ENCODER = msgspec.msgpack.Encoder()
CHANGE_DECODER = msgspec.msgpack.Decoder(Change)
BATCH_DECODER = msgspec.msgpack.Decoder(list[Change])
OUTCOME_DECODER = msgspec.msgpack.Decoder(Outcome)


def first_outcome(stored: bytes | None) -> Outcome | None:
    """The outcome stored with a request key (``Outcome.duplicate`` set), or ``None`` when the key is new:
    what a change sent again with that key answers."""
    if stored is None:
        return None
    first = OUTCOME_DECODER.decode(stored)
    first.duplicate = True
    return first
