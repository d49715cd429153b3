"""The node's objects and users: sealed envelopes in the store, decoded ones in memory, handles, logins' epochs.

Token objects and users live in the store as sealed envelopes (:mod:`strongroom.store.barrier`: AES-256-GCM
under the masking key, the record's kind, id and version in the associated data). This module is where they
are sealed and opened, where decoded objects and loaded keys are cached (and dropped when the log applies a
change to them), and where session objects live (in memory only, never in the store). Writes of token objects
and users are not made here: they are put into a :class:`~strongroom.replication.Change` that the caller
commits through the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from .. import crypto
from ..errors import ObjectHandleInvalid
from ..objects.attributes import normalize_template
from ..objects.model import HsmObject
from ..replication import Change, Outcome
from ..store import Barrier, ObjectRow, Store
from ..vocab import CKA, CKK, CKO
from .public_objects import PublicObjectBudget, object_bytes, open_to_public_sessions
from .users import UserRecord

SESSION_HANDLE_BIT = 1 << 63
HANDLE_BLOCK = 256  # token handles a node reserves from the log at a time
_CACHE_OBJECTS = 4096


class _Envelope(msgspec.Struct, array_like=True):
    attrs: list[tuple[int, Any]]
    material: bytes
    owner: str
    shared: list[str]


def _encode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {int(k): _encode_value(v) for k, v in value.items()}
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def open_object(barrier: Barrier, row: ObjectRow) -> HsmObject:
    """Open a stored object's envelope.

    Raises:
        StoreIntegrityError: ``CKR_DEVICE_ERROR`` when the envelope fails authentication.
    """
    plain = barrier.open("object", row.handle, row.version, row.envelope)
    env = msgspec.msgpack.decode(plain, type=_Envelope)
    attrs = normalize_template(dict(env.attrs))
    return HsmObject(row.handle, attrs, env.material, env.owner, frozenset(env.shared), row.version)


def seal_object(barrier: Barrier, obj: HsmObject) -> ObjectRow:
    """A token object as a store row: the sealed envelope plus the clear index columns (class, key type,
    label, id, owner) that searches narrow by and never trust without the envelope."""
    env = _Envelope([(int(k), _encode_value(v)) for k, v in obj.attrs.items()], obj.material, obj.owner,
                    sorted(obj.shared))
    sealed = barrier.seal("object", obj.handle, obj.version, msgspec.msgpack.encode(env))
    key_type = obj.attrs.get(CKA.KEY_TYPE)
    return ObjectRow(obj.handle, obj.version, int(obj.cls), None if key_type is None else int(key_type),
                     obj.attrs.get(CKA.LABEL, ""), obj.attrs.get(CKA.ID, b""), obj.owner, sealed)


def open_user(barrier: Barrier, name: str, version: int, envelope: bytes) -> UserRecord:
    """Open a stored user record.

    Raises:
        StoreIntegrityError: ``CKR_DEVICE_ERROR`` when the envelope fails authentication.
    """
    return msgspec.msgpack.decode(barrier.open("user", name, version, envelope), type=UserRecord)


def seal_user(barrier: Barrier, record: UserRecord) -> bytes:
    """A user record's sealed envelope."""
    return barrier.seal("user", record.name, record.version, msgspec.msgpack.encode(record))


class Repository:
    """Objects and users of one node, read from its store and its memory.

    Args:
        store: the node's store (read here; written by the log's state machine).
        lock: the node's lock, held for every change to the caches and the session objects.
        barrier: the node's barrier; raises ``CKR_DEVICE_ERROR`` when the node holds none (zeroised).
        reserve_handles: commits the reservation of a block of token handles; returns the first.
    """

    def __init__(self, store: Store, lock: threading.RLock, barrier: Callable[[], Barrier],
                 reserve_handles: Callable[[int], int]) -> None:
        self._store = store
        self._lock = lock
        self._barrier = barrier
        self._reserve_handles = reserve_handles
        self._objects: OrderedDict[int, HsmObject] = OrderedDict()
        self._keys: dict[int, tuple[int, Any]] = {}
        self._epochs: dict[str, int] = {}
        self._session_objects: dict[int, HsmObject] = {}
        self.public_budget = PublicObjectBudget()
        self._charged: dict[int, tuple[int, int]] = {}  # public session object handle → (application id, bytes)
        self._apply_epoch = 0  # moves on with every applied change or installed snapshot
        self._handles: list[int] = []
        self._handles_lock = threading.Lock()
        # token key handle → (version, keyed digest of its material, of its RSA modulus): key families without
        # opening every envelope; the digest key lives in this process only
        self._digests: dict[int, tuple[int, bytes, bytes]] = {}
        self._digest_key = os.urandom(32)

    @property
    def apply_epoch(self) -> int:
        """A counter that moves on whenever the log applies a change or installs a snapshot."""
        return self._apply_epoch

    @property
    def session_objects(self) -> int:
        """How many session objects the node holds."""
        return len(self._session_objects)

    # ----------------------------------------------------------------- the log's callbacks
    def applied(self, change: Change, outcome: Outcome) -> None:
        """Keep caches and logins in step with an applied change (runs in the log's thread)."""
        with self._lock:
            self._apply_epoch += 1
            for put in change.objects:
                self._objects.pop(put.handle, None)
                self._keys.pop(put.handle, None)
            for handle in change.delete_objects:
                self._objects.pop(handle, None)
                self._keys.pop(handle, None)
                self._digests.pop(handle, None)
            for name in change.revoke:
                self._epochs[name] = self._epochs.get(name, 0) + 1

    def reset(self, logged_in: Iterable[str]) -> None:
        """A snapshot replaced the state: forget every cached object and end the logins of users who may have
        changed (every user with an epoch, and ``logged_in``)."""
        with self._lock:
            self._apply_epoch += 1
            self._objects.clear()
            self._keys.clear()
            self._digests.clear()
            for name in list(self._epochs):
                self._epochs[name] += 1
            for name in logged_in:
                self._epochs[name] = self._epochs.get(name, 0) + 1

    def forget_all(self) -> None:
        """Zeroisation: drop every cached object and key and every session object, and end every login."""
        with self._lock:
            self._objects.clear()
            self._keys.clear()
            self._digests.clear()
            self._session_objects.clear()
            self._charged.clear()
            self.public_budget.clear()
            self._epochs = {name: epoch + 1 for name, epoch in self._epochs.items()}
            self._apply_epoch += 1

    def drop_cached(self) -> None:
        """Forget the decoded token objects (as after a restart); the next read opens them from the store."""
        with self._lock:
            self._objects.clear()

    # ----------------------------------------------------------------- objects
    def get_object(self, handle: int) -> HsmObject:
        """Return an object by handle, token or session.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID`` for an unknown handle.
        """
        obj: HsmObject | None
        if handle & SESSION_HANDLE_BIT:
            obj = self._session_objects.get(handle)
        else:
            with self._lock:
                obj = self._objects.get(handle)
                if obj is not None:
                    self._objects.move_to_end(handle)
            if obj is None:
                epoch = self._apply_epoch
                row = self._store.get_object(handle) if 0 < handle < SESSION_HANDLE_BIT else None
                obj = open_object(self._barrier(), row) if row is not None else None
                if obj is not None:
                    self._remember(obj, epoch)
        if obj is None:
            raise ObjectHandleInvalid(f"no object with handle {handle}")
        return obj

    def _remember(self, obj: HsmObject, epoch: int) -> None:
        """Cache an object read from the store, unless a change was applied since the read began."""
        with self._lock:
            if epoch != self._apply_epoch:
                return
            self._objects[obj.handle] = obj
            self._objects.move_to_end(obj.handle)
            while len(self._objects) > _CACHE_OBJECTS:
                old, _ = self._objects.popitem(last=False)
                self._keys.pop(old, None)

    def put_object(self, change: Change | None, obj: HsmObject, *, new: bool = False) -> None:
        """Store a new or changed object: a token object as a sealed row in ``change`` (a changed one expects
        the version before ``obj.version``); a session object in memory at once.

        Raises:
            DeviceMemory: ``CKR_DEVICE_MEMORY`` for a public session object past its connection's or the node's
                cap (:mod:`.public_objects`); nothing is stored.
        """
        if obj.is_token:
            if change is None:
                raise ValueError("a token object is stored through a change")
            change.put_object(seal_object(self._barrier(), obj), new=new, expect=None if new else obj.version - 1)
        else:
            with self._lock:
                self._charge(obj)
                self._session_objects[obj.handle] = obj

    def _charge(self, obj: HsmObject) -> None:
        """Count a new or changed session object against the public session objects' caps (holding the lock)."""
        app_id, before = self._charged.get(obj.handle, (obj.session[0] if obj.session else 0, 0))
        after = object_bytes(obj) if open_to_public_sessions(obj.attrs) else 0
        objects = (after > 0) - (before > 0)
        self.public_budget.check(app_id, objects, after - before)
        self.public_budget.add(app_id, objects, after - before)
        if after:
            self._charged[obj.handle] = (app_id, after)
        else:
            self._charged.pop(obj.handle, None)

    def delete_object(self, change: Change | None, obj: HsmObject) -> None:
        """Delete an object: a token object through ``change``; a session object at once."""
        if obj.is_token:
            if change is None:
                raise ValueError("a token object is deleted through a change")
            change.delete_object(obj.handle, expect=obj.version)
            return
        with self._lock:
            self._session_objects.pop(obj.handle, None)
            self._keys.pop(obj.handle, None)
            charged = self._charged.pop(obj.handle, None)
            if charged is not None:
                self.public_budget.add(charged[0], -1, -charged[1])

    def check_public_room(self, app_id: int, objects: list[HsmObject]) -> None:
        """Whether new session ``objects`` of application ``app_id`` fit under the public session objects'
        caps, before anything is done for them (:meth:`put_object` checks again as it stores them).

        Raises:
            DeviceMemory: ``CKR_DEVICE_MEMORY`` past a cap.
        """
        public = [object_bytes(o) for o in objects if not o.is_token and open_to_public_sessions(o.attrs)]
        if public:
            with self._lock:
                self.public_budget.check(app_id, len(public), sum(public))

    def drop_session_objects(self, app_id: int, session: int | None = None, *, private_only: bool = False) -> None:
        """Destroy the session objects of an application (or of one of its sessions; or only private ones)."""
        with self._lock:
            for obj in list(self._session_objects.values()):
                if (obj.session and obj.session[0] == app_id and (session is None or obj.session[1] == session)
                        and (not private_only or obj.is_private)):
                    self.delete_object(None, obj)

    def _digest(self, value: bytes) -> bytes:
        return hmac.new(self._digest_key, value, hashlib.sha256).digest() if value else b""

    def _value_digests(self, obj: HsmObject) -> tuple[bytes, bytes]:
        material = obj.material if obj.cls in (CKO.SECRET_KEY, CKO.PRIVATE_KEY) else b""
        modulus = obj.attrs.get(CKA.MODULUS, b"") if obj.key_type is CKK.RSA else b""
        return self._digest(material), self._digest(modulus)

    def same_value(self, obj: HsmObject) -> list[HsmObject]:
        """Token and session keys holding ``obj``'s value: secret and private keys of the same material, and
        for an RSA key the public and private keys of its modulus (``obj`` included when stored).

        Token keys are judged by a keyed digest remembered per handle and version, so an envelope is opened
        once, not at every call.
        """
        material, modulus = self._value_digests(obj)
        found = []
        keys = (int(CKO.SECRET_KEY), int(CKO.PRIVATE_KEY), int(CKO.PUBLIC_KEY))
        for handle, version in self._store.key_versions(keys):
            known = self._digests.get(handle)
            if known is None or known[0] != version:
                row = self._store.get_object(handle)
                if row is None:
                    continue  # destroyed meanwhile
                known = (row.version, *self._value_digests(open_object(self._barrier(), row)))
                with self._lock:
                    self._digests[handle] = known
            if (material and known[1] == material) or (modulus and known[2] == modulus):
                try:
                    found.append(self.get_object(handle))
                except ObjectHandleInvalid:
                    continue
        with self._lock:
            session = list(self._session_objects.values())
        for other in session:
            other_material, other_modulus = self._value_digests(other)
            if (material and other_material == material) or (modulus and other_modulus == modulus):
                found.append(other)
        return found

    def candidates(self, template: dict[CKA, Any]) -> list[HsmObject]:
        """Token and session objects that may match a find template (the index narrows, the caller matches)."""
        label, ident, cls = template.get(CKA.LABEL), template.get(CKA.ID), template.get(CKA.CLASS)
        rows = self._store.find_objects(label=label, id=ident, cls=None if cls is None else int(cls))
        found = []
        for row in rows:
            obj = self._objects.get(row.handle)
            if obj is None or obj.version != row.version:
                obj = open_object(self._barrier(), row)
            found.append(obj)
        with self._lock:
            found.extend(self._session_objects.values())
        return found

    def key_object(self, obj: HsmObject) -> Any:
        """The crypto layer's form of a key: ``bytes`` for secret keys, a loaded key object otherwise."""
        if obj.cls is CKO.SECRET_KEY:
            return obj.material
        cached = self._keys.get(obj.handle)
        if cached is not None and cached[0] == obj.version:
            return cached[1]
        key: Any
        if obj.cls is CKO.PRIVATE_KEY:
            key = crypto.private_key_from_der(obj.material)
        else:
            key = crypto.public_key_from_der(obj.material)
        with self._lock:
            self._keys[obj.handle] = (obj.version, key)
        return key

    # ----------------------------------------------------------------- handles
    def new_handle(self, token: bool) -> int:
        """A fresh object handle from the blocks this node reserves through the log, so that no two HSMs of the
        cluster ever hand out the same number; session handles also carry the top bit. Never reused: a handle an
        application kept from an HSM that failed cannot name another object on the HSM it moves to.

        Raises:
            NoQuorum: (retryable) a new block of handles could not be reserved.
        """
        return self._reserved_handle() | (0 if token else SESSION_HANDLE_BIT)

    def _reserved_handle(self) -> int:
        with self._handles_lock:
            if not self._handles:
                first = self._reserve_handles(HANDLE_BLOCK)
                self._handles = list(range(first + HANDLE_BLOCK - 1, first - 1, -1))
            return self._handles.pop()

    # ----------------------------------------------------------------- users
    def get_user(self, name: str) -> UserRecord | None:
        """The user ``name``'s record, or ``None``."""
        for stored, version, envelope in self._store.users():
            if stored == name:
                return open_user(self._barrier(), name, version, envelope)
        return None

    def all_users(self) -> list[UserRecord]:
        """Every user's record."""
        return [open_user(self._barrier(), n, v, e) for n, v, e in self._store.users()]

    def put_user(self, change: Change, record: UserRecord, *, new: bool = False) -> None:
        """Store a user record through ``change``; a changed record expects the version before its own."""
        change.put_user(record.name, record.version, seal_user(self._barrier(), record),
                        expect=0 if new else record.version - 1)

    def login_epoch(self, name: str) -> int:
        """A counter that changes whenever logins of ``name`` must end (user deleted, password reset)."""
        return self._epochs.get(name, 0)
