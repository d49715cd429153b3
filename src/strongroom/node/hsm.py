"""The HSM node's cryptographic boundary: store, masking key, objects, users, state, self-tests, zeroisation.

An :class:`HSM` owns one data directory. Applications reach it through :meth:`HSM.connect`, which returns an
:class:`~strongroom.node.application.Application` (one per client connection: PKCS#11 login state is per
application). Everything the boundary holds in clear (the masking key, key material, loaded key objects) stays
in this process; the store sees only sealed envelopes.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import random
import secrets
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import msgspec

from .. import crypto
from ..errors import (
    ArgumentsBad,
    DeviceError,
    FunctionFailed,
    ObjectHandleInvalid,
    StoreIntegrityError,
    StrongroomError,
    error_for,
)
from ..objects.attributes import normalize_template
from ..objects.model import HsmObject
from ..replication import Change, LocalLog, Outcome, StateMachine
from ..replication.change import CHANGE_DECODER, ENCODER, first_outcome
from ..replication.log import cluster_secret
from ..store import Barrier, ObjectRow, Store
from ..store.barrier import MASKING_KEY_BYTES, seal_masking_key, unseal_masking_key
from ..trust import cluster_certificate as cluster_identity
from ..trust.fleet import Identity
from ..util.lock import hold_lock
from ..vocab import CKA, CKO
from .users import DEFAULT_LOCKOUT_THRESHOLD, Passwords, Role, UserRecord

if TYPE_CHECKING:
    from .application import Application

FIRMWARE_VERSION = "0.1.0"
DB_NAME = "hsm.sqlite"
NODE_KEY_NAME = "node.key"
SESSION_HANDLE_BIT = 1 << 63
_CACHE_OBJECTS = 4096
HANDLE_BLOCK = 256  # token handles a node reserves from the log at a time
_CONFLICT_RETRIES = 64

# The request key of the client call being served (exactly-once writes) and the log index of the last change
# it committed (read-your-writes); set per call by the server.
request_key: contextvars.ContextVar[bytes] = contextvars.ContextVar("request_key", default=b"")
commit_index: contextvars.ContextVar[int] = contextvars.ContextVar("commit_index", default=0)


class Log(Protocol):
    """What the node needs of a replicated log (:mod:`strongroom.replication.log`)."""

    machine: StateMachine

    def commit(self, change: Change, timeout_s: float = ...) -> Outcome: ...
    def status(self) -> dict[str, Any]: ...
    def unavailable(self) -> StrongroomError | None: ...
    def close(self) -> None: ...


LogFactory = Callable[[StateMachine, bytes], Log]


def _lock_directory(data_dir: Path) -> Any:
    """Hold an exclusive lock on the data directory for this process's lifetime of the node.

    Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when another process (or another open node) already serves it.
    """
    handle = hold_lock(data_dir / "node.lock")
    if handle is None:
        raise DeviceError(f"{data_dir} is already served by another process")
    return handle


class State:
    OPERATIONAL = "operational"
    ERROR = "error"
    ZEROIZED = "zeroized"


@dataclass(frozen=True)
class Settings:
    """Node settings.

    Attributes:
        lockout_threshold: consecutive wrong passwords that lock an account.
        max_token_objects: capacity of the token store; creation beyond it returns ``CKR_DEVICE_MEMORY``.
        argon2_memory_kib, argon2_time_cost: password hashing cost (RFC 9106).
    """

    lockout_threshold: int = DEFAULT_LOCKOUT_THRESHOLD
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    max_token_objects: int = 250_000


class _Envelope(msgspec.Struct, array_like=True):
    attrs: list[tuple[int, Any]]
    material: bytes
    owner: str
    shared: list[str]


def _encode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {int(k): _encode_value(v) for k, v in value.items()}
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


class HSM:
    """One HSM node's boundary over a data directory.

    Use :meth:`initialize` for a new node and the constructor to open an existing one. Opening runs the
    power-on self-tests and checks every sealed record; a failed self-test leaves the node in the error state
    (every operation returns ``CKR_DEVICE_ERROR``), a failed record check zeroises the node.

    Args:
        data_dir: directory holding ``hsm.sqlite`` and ``node.key``.
        settings: node settings.
        self_test_fault: name of a self-test to fail on purpose (tests of the error state).
        replication: makes the replicated log from the state machine and the cluster secret; a node-local log
            (:class:`~strongroom.replication.LocalLog`) if omitted.

    Raises:
        StoreIntegrityError: ``CKR_DEVICE_ERROR``: a sealed record failed authentication; the node recorded it
            in the audit chain and zeroised itself.
        DeviceError: ``CKR_DEVICE_ERROR``: the directory holds no initialised node.
    """

    def __init__(self, data_dir: Path | str, *, settings: Settings = Settings(),
                 self_test_fault: str | None = None, replication: LogFactory | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.passwords = Passwords(settings.argon2_memory_kib, settings.argon2_time_cost)
        self.lock = threading.RLock()
        if not (self.data_dir / DB_NAME).is_file():
            raise DeviceError(f"{self.data_dir} holds no initialised HSM")
        self._dir_lock = _lock_directory(self.data_dir)
        self.store = Store(self.data_dir / DB_NAME)
        cluster = self.store.get_setting("cluster_id")
        if cluster is None:
            self.close()
            raise DeviceError(f"{self.data_dir} holds no initialised HSM")
        self.cluster_id = cluster.decode()
        self.serial = (self.store.get_setting("serial") or b"").decode()
        self.state = State.OPERATIONAL
        self.error_reason = ""
        self._objects: OrderedDict[int, HsmObject] = OrderedDict()
        self._keys: dict[int, tuple[int, Any]] = {}
        self._epochs: dict[str, int] = {}
        # wrong passwords this node could not yet record through the log (no majority), by username
        self.pending_failures: dict[str, int] = {}
        self._session_objects: dict[int, HsmObject] = {}
        self.applications: weakref.WeakSet[Any] = weakref.WeakSet()
        self.machine = StateMachine(self.store)
        self.machine.on_applied(self._applied)
        self.machine.on_reset(self._reset)
        self.log: Log | None = None
        self.masking_key = b""
        self.identity = Identity.load(self.data_dir) if Identity.present(self.data_dir) else None
        self._apply_epoch = 0  # moves on with every applied change or installed snapshot
        self._standing_at: tuple[int, bool, bool | None] | None = None  # (epoch, activated, initialized)
        self._handles: list[int] = []
        self._handles_lock = threading.Lock()
        self._session_counter = itertools.count(1)
        self._app_counter = itertools.count(1)
        self.self_test_results = self._self_test(self_test_fault)
        sealed = self.store.get_setting("sealed_mk")
        if sealed is None:
            self.state, self.error_reason = State.ZEROIZED, "the node was zeroised"
            self.barrier = None
            return
        try:
            mk = unseal_masking_key(self._node_key(), self.cluster_id, sealed)
            self.masking_key = mk
            self.barrier = Barrier(mk, self.cluster_id)
            self._check_integrity()
            factory = replication or (lambda machine, _secret: LocalLog(machine))
            self.log = factory(self.machine, cluster_secret(mk, self.cluster_id))
            self._bootstrap()
        except BaseException:
            self.close()
            raise

    def publish_endpoint(self, address: str, endpoint: str, stop: threading.Event) -> threading.Thread:
        """Record this node's client ``endpoint`` under its replication ``address`` in the replicated
        directory (clients discover members from it), in the background until it is committed or ``stop``."""

        def publish() -> None:
            while not stop.is_set():
                try:
                    if self.log_ready() and self.machine.directory().get(address) == endpoint:
                        return
                    if self.log_ready():
                        self.commit(Change(directory={address: endpoint}), record=False)
                        continue
                except Exception:  # noqa: BLE001 - retried; the node may also be closing under it
                    if stop.is_set() or self.log is None:
                        return
                stop.wait(0.5)

        thread = threading.Thread(target=publish, name="publish-endpoint", daemon=True)
        thread.start()
        return thread

    def log_ready(self) -> bool:
        """Whether this node may serve (see :meth:`unavailable`)."""
        return self.unavailable() is None

    def unavailable(self) -> StrongroomError | None:
        """Why this node may not serve requests now (``NodeBehind``: catching up; ``NoQuorum``: cut off from
        its cluster's majority), or ``None``."""
        log = self.log
        return None if log is None else log.unavailable()

    @property
    def token_objects(self) -> int:
        return self.machine.token_objects

    def _bootstrap(self) -> None:
        """Commit the founding change (the initial admin) that :meth:`initialize` left for the log."""
        pending = self.store.get_setting("bootstrap")
        if pending is None:
            return
        self.commit(CHANGE_DECODER.decode(pending), timeout_s=30.0)
        with self.store.transaction() as tx:
            tx.delete_setting("bootstrap")

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def initialize(cls, data_dir: Path | str, *, cluster_id: str | None = None, preco_password: str | None = None,
                   settings: Settings = Settings(), masking_key: bytes | None = None,
                   replication: LogFactory | None = None, open: bool = True,
                   cluster_key: bool = False) -> HSM | None:
        """Initialise a new node: node key, masking key and, for the first node of a cluster, the ``admin`` user
        in role ``unactivated-admin`` (committed as the log's first change).

        Args:
            data_dir: an empty or missing directory.
            cluster_id: the cluster this node belongs to (``cluster-`` + 11 lowercase base-32 characters if omitted).
            preco_password: the initial admin password, 8–32 characters, to be changed by activation; omitted
                for a node that joins an existing cluster (its users come from the log).
            masking_key: 32 bytes to join an existing cluster; a fresh key from the OS CSPRNG if omitted.
            replication: as for the constructor.
            open: open the new node and return it; with False, only prepare the directory (the founding change
                then commits through the log of the process that opens it, as the cluster's first entry).
            cluster_key: for the first node of a control-plane-managed cluster: generate the cluster key and its
                CSR (:mod:`strongroom.trust.cluster_certificate`), committed with the founding change.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the directory already holds a node.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a password outside 8–32 characters.
        """
        from .users import check_password

        if preco_password is not None:
            check_password(preco_password)
        elif masking_key is None:
            raise ArgumentsBad("a new cluster needs the initial admin password")
        if cluster_id is not None and (not isinstance(cluster_id, str) or not 1 <= len(cluster_id) <= 64
                                       or not cluster_id.isascii() or not cluster_id.isprintable()):
            raise ArgumentsBad("cluster_id must be 1-64 printable ASCII characters")
        if masking_key is not None and (not isinstance(masking_key, bytes) or len(masking_key) != MASKING_KEY_BYTES):
            raise ArgumentsBad(f"the masking key must be {MASKING_KEY_BYTES} bytes")
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir.chmod(0o700)
        except OSError as exc:
            raise DeviceError(f"cannot use {data_dir} as a data directory: {exc}") from exc
        if (data_dir / DB_NAME).exists():
            existing = Store(data_dir / DB_NAME)
            try:
                if existing.get_setting("sealed_mk") is not None:
                    raise DeviceError(f"{data_dir} already holds an HSM")
            finally:
                existing.close()
        cluster_id = cluster_id or "cluster-" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567")
                                                        for _ in range(11))
        node_key_path = data_dir / NODE_KEY_NAME
        fd = os.open(node_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
        masking_key = masking_key or crypto.random_bytes(MASKING_KEY_BYTES)
        store = Store(data_dir / DB_NAME)
        barrier = Barrier(masking_key, cluster_id)
        passwords = Passwords(settings.argon2_memory_kib, settings.argon2_time_cost)
        with store.transaction() as tx:
            tx.put_setting("cluster_id", cluster_id.encode())
            tx.put_setting("serial", uuid.uuid4().hex[:16].encode())
            tx.put_setting("sealed_mk", seal_masking_key(node_key_path.read_bytes(), cluster_id, masking_key))
            if preco_password is not None:
                admin = UserRecord("admin", Role.UNACTIVATED_ADMIN.value, passwords.hash(preco_password))
                founding = Change(request=b"bootstrap:" + cluster_id.encode())
                founding.put_user(admin.name, admin.version, barrier.seal("user", admin.name, admin.version,
                                                                          msgspec.msgpack.encode(admin)), expect=0)
                founding.add_audit("cluster-create", "", cluster_id=cluster_id)
                if cluster_key:
                    founding.cluster_identity = cluster_identity.new(cluster_id, barrier).encode()
                tx.put_setting("bootstrap", ENCODER.encode(founding))
            tx.audit("initialize", "", cluster_id=cluster_id, joining=preco_password is None)
        store.close()
        return cls(data_dir, settings=settings, replication=replication) if open else None

    def close(self) -> None:
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None
        self.store.close()
        self._dir_lock.close()

    def _node_key(self) -> bytes:
        return (self.data_dir / NODE_KEY_NAME).read_bytes()

    def _self_test(self, fault: str | None) -> list[Any]:
        results = crypto.run_self_tests(fault=fault)
        failed = [r.name for r in results if not r.passed]
        with self.store.transaction() as tx:
            tx.audit("self-test", "", passed=not failed, failed=failed)
        if failed:
            self.enter_error(f"self-test failed: {', '.join(failed)}")
        return results

    def enter_error(self, reason: str) -> None:
        """Put the node in the error state: every later operation returns ``CKR_DEVICE_ERROR``."""
        self.state, self.error_reason = State.ERROR, reason

    def cluster_identity(self) -> cluster_identity.ClusterIdentity | None:
        """The cluster certificate's record from the replicated state (``None`` for a cluster without one)."""
        data = self.machine.cluster_identity()
        return cluster_identity.ClusterIdentity.decode(data) if data else None

    def require_operational(self) -> None:
        """Raises ``CKR_DEVICE_ERROR`` (:class:`DeviceError`) unless the node is operational."""
        if self.state != State.OPERATIONAL:
            raise DeviceError(f"the HSM is in the {self.state} state: {self.error_reason}")

    def _check_integrity(self) -> None:
        """Open every sealed record; on any failure, audit it, zeroise and refuse the store."""
        try:
            for row in self.store.iter_objects():
                obj = self._decode(row)
                if (obj.cls != row.cls or obj.attrs.get(CKA.LABEL, "") != row.label
                        or obj.owner != row.owner or obj.attrs.get(CKA.ID, b"") != row.id):
                    raise StoreIntegrityError(f"object {row.handle}: index columns differ from the sealed record")
            for name, version, envelope in self.store.users():
                record = msgspec.msgpack.decode(self.barrier.open("user", name, version, envelope),
                                                type=UserRecord)
                if record.name != name:
                    raise StoreIntegrityError(f"user {name}: sealed record names another user")
        except StoreIntegrityError as exc:
            self.zeroize(reason=f"store integrity check failed: {exc.message}", event="store-integrity-failure")
            raise StoreIntegrityError(f"the store was refused and the node zeroised: {exc.message}") from exc
        finally:
            self._objects.clear()

    def zeroize(self, *, reason: str = "requested", event: str = "zeroize", actor: str = "") -> None:
        """Erase the masking key, every object and every user; record it in the audit chain.

        The audit chain survives. Afterwards the node is in the ``zeroized`` state and must be initialised anew.
        """
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.data_dir / "raft", ignore_errors=True)
        with self.lock, self.store.transaction() as tx:
            if event != "zeroize":
                tx.audit(event, actor, reason=reason)
            tx.audit("zeroize", actor, reason=reason)
            tx.delete_all_objects()
            tx.delete_all_users()
            tx.delete_setting("sealed_mk")
        key_path = self.data_dir / NODE_KEY_NAME
        if key_path.exists():
            with open(key_path, "r+b") as fh:
                fh.write(os.urandom(32))
                fh.flush()
                os.fsync(fh.fileno())
            key_path.unlink()
        self.barrier = None
        self.masking_key = b""
        crypto.forget_keys()
        with self.lock:
            self._objects.clear()
            self._keys.clear()
            self._session_objects.clear()
            self.machine.token_objects = 0
            self._epochs = {name: epoch + 1 for name, epoch in self._epochs.items()}
            self._apply_epoch += 1
        self.state, self.error_reason = State.ZEROIZED, reason

    # ----------------------------------------------------------------- objects
    def _decode(self, row: ObjectRow) -> HsmObject:
        plain = self.barrier.open("object", row.handle, row.version, row.envelope)
        env = msgspec.msgpack.decode(plain, type=_Envelope)
        attrs = normalize_template(dict(env.attrs))
        return HsmObject(row.handle, attrs, env.material, env.owner, frozenset(env.shared), row.version)

    def _encode(self, obj: HsmObject) -> ObjectRow:
        env = _Envelope([(int(k), _encode_value(v)) for k, v in obj.attrs.items()], obj.material, obj.owner,
                        sorted(obj.shared))
        sealed = self.barrier.seal("object", obj.handle, obj.version, msgspec.msgpack.encode(env))
        key_type = obj.attrs.get(CKA.KEY_TYPE)
        return ObjectRow(obj.handle, obj.version, int(obj.cls), None if key_type is None else int(key_type),
                         obj.attrs.get(CKA.LABEL, ""), obj.attrs.get(CKA.ID, b""), obj.owner, sealed)

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
                first = self.commit(Change(reserve_handles=HANDLE_BLOCK), record=False).first_handle
                self._handles = list(range(first + HANDLE_BLOCK - 1, first - 1, -1))
            return self._handles.pop()

    # ----------------------------------------------------------------- the log
    def commit(self, change: Change | Callable[[], Change | None], *, timeout_s: float = 3.0,
               record: bool = True) -> Outcome:
        """Commit a change through the replicated log and return its outcome.

        ``change`` may be a function that builds the change from the current state; it is called again when the
        change was refused because a record it read changed meanwhile (up to 64 times, after a short random
        pause that grows, so that writers racing on one record all get through), and may return ``None``
        when there is nothing left to do. A change that writes nothing replicated (audit events only) is
        recorded in this node's audit chain alone. Never call this holding :attr:`lock`.

        Raises:
            NoQuorum: (retryable) not committed in time.
            DeviceMemory: ``CKR_DEVICE_MEMORY`` when the token store is full.
            FunctionFailed: ``CKR_FUNCTION_FAILED`` when concurrent changes kept refusing it.
            DeviceError: ``CKR_DEVICE_ERROR`` when the node is not operational.
        """
        self.require_operational()
        key = request_key.get() if record else b""
        if key and callable(change):
            # A write sent again (its answer was lost) that this HSM has applied already: its first outcome,
            # before building it again from a state it changed (a destroyed object is gone by now).
            outcome = first_outcome(self.store.get_request(key))
            if outcome is not None and not outcome.ckr and not outcome.conflict:
                if outcome.index:
                    commit_index.set(max(commit_index.get(), outcome.index))
                return outcome
        for attempt in range(_CONFLICT_RETRIES):
            if attempt:
                time.sleep(random.uniform(0, min(0.05, 0.002 * attempt)))
            built = change() if callable(change) else change
            if built is None:
                return Outcome()
            if built.empty:
                with self.store.transaction() as tx:
                    for event in built.audit:
                        tx.audit(event.event, event.actor, **event.detail)
                return Outcome()
            if self.log is None:
                raise DeviceError("the HSM's log is closed")
            if not built.request and record:
                built.request = request_key.get()
            outcome = self.log.commit(built, timeout_s)
            if outcome.conflict:
                if callable(change):
                    continue
                raise FunctionFailed(f"{outcome.message}; retry")
            if outcome.ckr:
                raise error_for(outcome.ckr, outcome.message)
            if record and outcome.index:
                commit_index.set(max(commit_index.get(), outcome.index))
            return outcome
        raise FunctionFailed("concurrent changes to the same records kept refusing this change; retry")

    def _applied(self, change: Change, outcome: Outcome) -> None:
        """Keep caches and logins in step with an applied change (runs in the log's thread)."""
        with self.lock:
            self._apply_epoch += 1
            for put in change.objects:
                self._objects.pop(put.handle, None)
                self._keys.pop(put.handle, None)
            for handle in change.delete_objects:
                self._objects.pop(handle, None)
                self._keys.pop(handle, None)
            for name in change.revoke:
                self._epochs[name] = self._epochs.get(name, 0) + 1

    def _reset(self) -> None:
        """A snapshot replaced the state: forget every cached object and end logins of changed users."""
        with self.lock:
            self._apply_epoch += 1
            self._objects.clear()
            self._keys.clear()
            for name in list(self._epochs):
                self._epochs[name] += 1
            for app in list(self.applications):
                if app.user is not None:
                    self._epochs[app.user.name] = self._epochs.get(app.user.name, 0) + 1

    def get_object(self, handle: int) -> HsmObject:
        """Return an object by handle, token or session.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID`` for an unknown handle.
        """
        if handle & SESSION_HANDLE_BIT:
            obj = self._session_objects.get(handle)
        else:
            with self.lock:
                obj = self._objects.get(handle)
                if obj is not None:
                    self._objects.move_to_end(handle)
            if obj is None:
                epoch = self._apply_epoch
                row = self.store.get_object(handle) if 0 < handle < SESSION_HANDLE_BIT else None
                obj = self._decode(row) if row is not None else None
                if obj is not None:
                    self._remember(obj, epoch)
        if obj is None:
            raise ObjectHandleInvalid(f"no object with handle {handle}")
        return obj

    def _remember(self, obj: HsmObject, epoch: int) -> None:
        """Cache an object read from the store, unless a change was applied since the read began."""
        with self.lock:
            if epoch != self._apply_epoch:
                return
            self._objects[obj.handle] = obj
            self._objects.move_to_end(obj.handle)
            while len(self._objects) > _CACHE_OBJECTS:
                old, _ = self._objects.popitem(last=False)
                self._keys.pop(old, None)

    def put_object(self, change: Change | None, obj: HsmObject, *, new: bool = False) -> None:
        """Store a new or changed object: a token object as a sealed row in ``change`` (a changed one expects
        the version before ``obj.version``); a session object in memory at once."""
        if obj.is_token:
            assert change is not None
            change.put_object(self._encode(obj), new=new, expect=None if new else obj.version - 1)
        else:
            with self.lock:
                self._session_objects[obj.handle] = obj

    def delete_object(self, change: Change | None, obj: HsmObject) -> None:
        """Delete an object: a token object through ``change``; a session object at once."""
        if obj.is_token:
            assert change is not None
            change.delete_object(obj.handle, expect=obj.version)
            return
        with self.lock:
            self._session_objects.pop(obj.handle, None)
            self._keys.pop(obj.handle, None)

    def drop_session_objects(self, app_id: int, session: int | None = None, *, private_only: bool = False) -> None:
        """Destroy the session objects of an application (or of one of its sessions; or only private ones)."""
        with self.lock:
            for obj in list(self._session_objects.values()):
                if (obj.session and obj.session[0] == app_id and (session is None or obj.session[1] == session)
                        and (not private_only or obj.is_private or obj.cls in (CKO.SECRET_KEY, CKO.PRIVATE_KEY))):
                    self.delete_object(None, obj)

    def candidates(self, template: dict[CKA, Any]) -> list[HsmObject]:
        """Token and session objects that may match a find template (the index narrows, the caller matches)."""
        label, ident, cls = template.get(CKA.LABEL), template.get(CKA.ID), template.get(CKA.CLASS)
        rows = self.store.find_objects(label=label, id=ident, cls=None if cls is None else int(cls))
        found = []
        for row in rows:
            obj = self._objects.get(row.handle)
            if obj is None or obj.version != row.version:
                obj = self._decode(row)
            found.append(obj)
        with self.lock:
            found.extend(self._session_objects.values())
        return found

    def key_object(self, obj: HsmObject) -> Any:
        """The crypto layer's form of a key: ``bytes`` for secret keys, a loaded key object otherwise."""
        if obj.cls is CKO.SECRET_KEY:
            return obj.material
        cached = self._keys.get(obj.handle)
        if cached is not None and cached[0] == obj.version:
            return cached[1]
        if obj.cls is CKO.PRIVATE_KEY:
            key = crypto.private_key_from_der(obj.material)
        else:
            key = crypto.public_key_from_der(obj.material)
        with self.lock:
            self._keys[obj.handle] = (obj.version, key)
        return key

    # ----------------------------------------------------------------- users
    def get_user(self, name: str) -> UserRecord | None:
        for stored, version, envelope in self.store.users():
            if stored == name:
                return msgspec.msgpack.decode(self.barrier.open("user", name, version, envelope), type=UserRecord)
        return None

    def all_users(self) -> list[UserRecord]:
        return [msgspec.msgpack.decode(self.barrier.open("user", n, v, e), type=UserRecord)
                for n, v, e in self.store.users()]

    def put_user(self, change: Change, record: UserRecord, *, new: bool = False) -> None:
        """Store a user record through ``change``; a changed record expects the version before its own."""
        change.put_user(record.name, record.version,
                        self.barrier.seal("user", record.name, record.version, msgspec.msgpack.encode(record)),
                        expect=0 if new else record.version - 1)

    def login_epoch(self, name: str) -> int:
        """A counter that changes whenever logins of ``name`` must end (user deleted, password reset)."""
        return self._epochs.get(name, 0)

    # ----------------------------------------------------------------- connections
    def connect(self, peer: str = "") -> "Application":
        """Open an application context (one per client connection); ``peer`` describes the client for the
        audit trail of logins."""
        from .application import Application

        app = Application(self, next(self._app_counter), peer)
        self.applications.add(app)
        return app

    def next_session_handle(self) -> int:
        return next(self._session_counter)

    def info(self) -> dict[str, Any]:
        """Node information (``get_hsm_info``).

        Returns:
            ``serial``, ``cluster_id``, ``firmware_version``, ``state`` (``operational``, ``error`` or
            ``zeroized``) with ``error``, ``self_tests`` (name → passed), ``token_objects``,
            ``max_token_objects``, ``free_token_objects``, ``session_objects``, ``open_sessions``,
            ``applications``, ``free_disk_bytes``; ``activated`` (the initial admin has set a password) and
            ``initialized`` (a control-plane-managed cluster has its owner's certificate; ``None`` for a cluster
            without a cluster key).
        """
        import shutil

        activated, initialized = self._standing() if self.state == State.OPERATIONAL else (False, None)
        sessions = sum(len(app.sessions) for app in list(self.applications))
        return {
            "serial": self.serial,
            "cluster_id": self.cluster_id,
            "firmware_version": FIRMWARE_VERSION,
            "state": self.state,
            "error": self.error_reason,
            "self_tests": {r.name: r.passed for r in self.self_test_results},
            "token_objects": self.token_objects,
            "max_token_objects": self.settings.max_token_objects,
            "free_token_objects": max(0, self.settings.max_token_objects - self.token_objects),
            "session_objects": len(self._session_objects),
            "open_sessions": sessions,
            "applications": len(self.applications),
            "free_disk_bytes": shutil.disk_usage(self.data_dir).free,
            "activated": activated,
            "initialized": initialized,
        }

    def _standing(self) -> tuple[bool, bool | None]:
        """``activated`` and ``initialized`` for :meth:`info`, read anew only after the state changed (opening
        every user record on each call would cost in proportion to the users)."""
        epoch = self._apply_epoch
        if self._standing_at is None or self._standing_at[0] != epoch:
            identity = self.cluster_identity()
            self._standing_at = (epoch, all(u.role != Role.UNACTIVATED_ADMIN.value for u in self.all_users()),
                                 bool(identity.certificate) if identity is not None else None)
        return self._standing_at[1], self._standing_at[2]
