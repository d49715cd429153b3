"""The HSM node's cryptographic boundary: its data directory, lifecycle and state.

An :class:`HSM` owns one data directory. It is made of three parts, each in its own module: its state
(:mod:`.state`: running with the masking key, the barrier and the log; failed; or zeroised), its repository
(:mod:`.repository`: objects and users, sealed in the store and cached in clear) and its committer
(:mod:`.commit`: changes committed through the replicated log, and the one node-local write path beside it).

This module holds the lifecycle that ties them together: initialisation, opening (self-tests, record checks),
bootstrap, the error state, zeroisation and ``get_hsm_info``. Applications reach an HSM through
:class:`~strongroom.node.application.Application` (one per client connection), which this module does not
know. Everything the boundary holds in clear (the masking key, key material, loaded key objects) stays in this
process; the store sees only sealed envelopes.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import threading
import uuid
import weakref
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import crypto
from ..errors import ArgumentsBad, DeviceError, StoreIntegrityError, StrongroomError
from ..mechanism_catalogue import FIPS, MODES
from ..replication import Change, LocalLog, Outcome, StateMachine
from ..replication.change import CHANGE_DECODER, ENCODER
from ..replication.peer_tls import cluster_secret
from ..store import Barrier, Store
from ..store.barrier import MASKING_KEY_BYTES, seal_masking_key, unseal_masking_key
from ..trust import cluster_certificate as cluster_identity
from ..trust.fleet import Identity
from ..util.lock import hold_lock
from ..vocab import CKA
from .commit import Committer, RequestContext, local_write
from .repository import Repository, open_object, open_user, seal_user
from .state import Failed, Log, LogFactory, NodeState, Running, State, Zeroized, held
from .users import DEFAULT_LOCKOUT_THRESHOLD, Passwords, Role, UserRecord, new_initial_password, write_initial_password

FIRMWARE_VERSION = "0.1.0"
DB_NAME = "hsm.sqlite"
NODE_KEY_NAME = "node.key"


def _lock_directory(data_dir: Path) -> Any:
    """Hold an exclusive lock on the data directory for this process's lifetime of the node.

    Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when another process (or another open node) already serves it.
    """
    handle = hold_lock(data_dir / "node.lock")
    if handle is None:
        raise DeviceError(f"{data_dir} is already served by another process")
    return handle


@dataclass(frozen=True)
class Settings:
    """Node settings.

    Attributes:
        lockout_threshold: consecutive wrong passwords that lock an account.
        lockout_backoff_s, lockout_backoff_max_s: the back-off after the second consecutive wrong password and
            its bound (:func:`~strongroom.node.users.backoff_s`).
        max_token_objects: capacity of the token store; creation beyond it returns ``CKR_DEVICE_MEMORY``.
        argon2_memory_kib, argon2_time_cost: password hashing cost (RFC 9106).
    """

    lockout_threshold: int = DEFAULT_LOCKOUT_THRESHOLD
    lockout_backoff_s: float = 1.0
    lockout_backoff_max_s: float = 60.0
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    max_token_objects: int = 250_000


class Attached(Protocol):
    """What the boundary reads of an application attached to it (login state, for ``get_hsm_info`` and for
    ending logins when a snapshot replaces the users)."""

    @property
    def user(self) -> UserRecord | None: ...

    @property
    def sessions(self) -> Sized: ...


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

    Attributes:
        repository: the node's objects and users (:class:`~strongroom.node.repository.Repository`).
        machine: the replicated state machine that applies committed changes to the store.
        pending_failures: wrong passwords this node could not yet record through the log (no majority), by
            username.

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
        self._state: NodeState = Failed("the node is being opened", None)
        self._closed = False
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
        self.pending_failures: dict[str, int] = {}
        self.applications: weakref.WeakSet[Attached] = weakref.WeakSet()
        self.machine = StateMachine(self.store)
        self.repository = Repository(self.store, self.lock, lambda: self.barrier, self._reserve_handles)
        self._committer = Committer(self, self.store)
        self.machine.on_applied(self.repository.applied)
        self.machine.on_reset(self._reset)
        self.identity = Identity.load(self.data_dir) if Identity.present(self.data_dir) else None
        self._standing_at: tuple[int, bool, bool | None] | None = None  # (epoch, activated, initialized)
        self._session_counter = itertools.count(1)
        self._app_counter = itertools.count(1)
        self.self_test_results, failure = self._self_test(self_test_fault)
        if failure:
            self._state = Failed(failure, None)
        sealed = self.store.get_setting("sealed_mk")
        if sealed is None:
            self._state = Zeroized("the node was zeroised")
            return
        try:
            mk = unseal_masking_key(self._node_key(), self.cluster_id, sealed)
            barrier = Barrier(mk, self.cluster_id)
            self._check_integrity(barrier)
            factory = replication or (lambda machine, _secret: LocalLog(machine))
            running = Running(mk, barrier, factory(self.machine, cluster_secret(mk, self.cluster_id)))
            self._state = running if not failure else Failed(failure, running)
            self._bootstrap()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> str:
        """The state's name: :attr:`State.OPERATIONAL`, :attr:`State.ERROR` or :attr:`State.ZEROIZED`."""
        return self._state.name

    @property
    def error_reason(self) -> str:
        """Why the node is not operational (empty when it is)."""
        return self._state.reason

    def require_operational(self) -> Running:
        """The running state's keys and log.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` unless the node is operational.
        """
        state = self._state
        if not isinstance(state, Running):
            raise DeviceError(f"the HSM is in the {state.name} state: {state.reason}")
        return state

    def enter_error(self, reason: str) -> None:
        """Put the node in the error state: every later operation returns ``CKR_DEVICE_ERROR``."""
        self._state = Failed(reason, held(self._state))

    @property
    def barrier(self) -> Barrier:
        """The barrier over the masking key (also in the error state).

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the node holds no masking key (zeroised).
        """
        return self._held("masking key").barrier

    @property
    def masking_key(self) -> bytes:
        """The cluster's masking key, in clear (32 bytes).

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the node holds none (zeroised).
        """
        return self._held("masking key").masking_key

    @property
    def log(self) -> Log:
        """The replicated log.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the node holds none (zeroised) or was closed.
        """
        log = self._open_log()
        if log is None:
            raise DeviceError("the HSM's log is closed")
        return log

    def _held(self, what: str) -> Running:
        running = held(self._state)
        if running is None:
            raise DeviceError(f"the HSM holds no {what}: it is in the {self._state.name} state")
        return running

    def _open_log(self) -> Log | None:
        running = None if self._closed else held(self._state)
        return None if running is None else running.log

    def unavailable(self) -> StrongroomError | None:
        """Why this node may not serve requests now (``NodeBehind``: catching up; ``NoQuorum``: cut off from
        its cluster's majority), or ``None``."""
        log = self._open_log()
        return None if log is None else log.unavailable()

    def log_ready(self) -> bool:
        """Whether this node may serve (see :meth:`unavailable`)."""
        return self.unavailable() is None

    @property
    def token_objects(self) -> int:
        return self.machine.token_objects

    # ----------------------------------------------------------------- writes
    def commit(self, change: Change | Callable[[], Change | None], *, timeout_s: float = 3.0,
               request: RequestContext | None = None) -> Outcome:
        """Commit a change through the replicated log (:meth:`strongroom.node.commit.Committer.commit`)."""
        return self._committer.commit(change, timeout_s=timeout_s, request=request)

    def _reserve_handles(self, count: int) -> int:
        return self.commit(Change(reserve_handles=count)).first_handle

    def publish_endpoint(self, address: str, endpoint: str, stop: threading.Event) -> threading.Thread:
        """Record this node's client ``endpoint`` under its replication ``address`` in the replicated
        directory (clients discover members from it), in the background until it is committed or ``stop``."""

        def publish() -> None:
            while not stop.is_set():
                try:
                    if self.log_ready() and self.machine.directory().get(address) == endpoint:
                        return
                    if self.log_ready():
                        self.commit(Change(directory={address: endpoint}))
                        continue
                except Exception:  # retried; the node may also be closing under it
                    if stop.is_set() or self._open_log() is None:
                        return
                stop.wait(0.5)

        thread = threading.Thread(target=publish, name="publish-endpoint", daemon=True)
        thread.start()
        return thread

    def _reset(self) -> None:
        """A snapshot replaced the state: forget every cached object and end logins of changed users."""
        with self.lock:
            logged_in = [app.user.name for app in list(self.applications) if app.user is not None]
            self.repository.reset(logged_in)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def initialize(cls, data_dir: Path | str, *, cluster_id: str | None = None, settings: Settings = Settings(),
                   masking_key: bytes | None = None, replication: LogFactory | None = None, open: bool = True,
                   cluster_key: bool = False, initial_password_file: Path | None = None,
                   mode: str = FIPS) -> HSM | None:
        """Initialise a new node: node key, masking key and, for the first node of a cluster, the ``admin`` user
        in role ``unactivated-admin`` with a random initial password made here (committed as the log's first
        change). The appliance user reads that password with ``initial_password`` until the admin activates.

        Side effects: the node's settings (cluster id, serial, sealed masking key, the founding change) and an
        ``initialize`` audit event are a node-local write (:func:`~strongroom.node.commit.local_write`): no log
        exists yet.

        Args:
            data_dir: an empty or missing directory.
            cluster_id: the cluster this node belongs to (``cluster-`` + 11 lowercase base-32 characters if omitted).
            masking_key: 32 bytes to join an existing cluster (its users come from the log); a fresh key from the
                OS CSPRNG and a new cluster if omitted.
            replication: as for the constructor.
            open: open the new node and return it; with False, only prepare the directory (the founding change
                then commits through the log of the process that opens it, as the cluster's first entry).
            cluster_key: for the first node of a control-plane-managed cluster: generate the cluster key and its
                CSR (:mod:`strongroom.trust.cluster_certificate`), committed with the founding change.
            initial_password_file: for the first node of a cluster assembled by hand (no control plane and so no
                appliance): a new file (mode 0600) to write the initial admin password into.
            mode: the new cluster's ``FIPS`` or ``NON_FIPS`` (:mod:`strongroom.mechanism_catalogue`), in the
                founding change; a joining node learns it from the log.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the directory already holds a node.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an initial password file given to a joining node, or a bad mode.
        """
        founder = masking_key is None
        if mode not in MODES:
            raise ArgumentsBad(f"the cluster mode is FIPS or NON_FIPS, not {mode!r}")
        if initial_password_file is not None and not founder:
            raise ArgumentsBad("a node that joins a cluster has no initial password")
        if cluster_id is not None and (not isinstance(cluster_id, str) or not 1 <= len(cluster_id) <= 64
                                       or not cluster_id.isascii() or not cluster_id.isprintable()):
            raise ArgumentsBad("cluster_id must be 1-64 printable ASCII characters")
        if masking_key is not None and (not isinstance(masking_key, bytes) or len(masking_key) != MASKING_KEY_BYTES):
            raise ArgumentsBad(f"the masking key must be {MASKING_KEY_BYTES} bytes")
        initial = new_initial_password()
        if founder and initial_password_file is not None:  # before the directory is touched
            write_initial_password(initial_password_file, initial)
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
        with local_write(store) as tx:
            tx.put_setting("cluster_id", cluster_id.encode())
            tx.put_setting("serial", uuid.uuid4().hex[:16].encode())
            tx.put_setting("sealed_mk", seal_masking_key(node_key_path.read_bytes(), cluster_id, masking_key))
            if founder:
                admin = UserRecord("admin", Role.UNACTIVATED_ADMIN.value, passwords.hash(initial),
                                   initial_password=initial)
                founding = Change(request=b"bootstrap:" + cluster_id.encode(), mode=mode)
                founding.put_user(admin.name, admin.version, seal_user(barrier, admin), expect=0)
                founding.add_audit("cluster-create", "", cluster_id=cluster_id, mode=mode)
                if cluster_key:
                    founding.cluster_identity = cluster_identity.new(cluster_id, barrier).encode()
                tx.put_setting("bootstrap", ENCODER.encode(founding))
            tx.audit("initialize", "", cluster_id=cluster_id, joining=not founder)
        store.close()
        return cls(data_dir, settings=settings, replication=replication) if open else None

    def _bootstrap(self) -> None:
        """Commit the founding change (the initial admin) that :meth:`initialize` left for the log."""
        pending = self.store.get_setting("bootstrap")
        if pending is None:
            return
        self.commit(CHANGE_DECODER.decode(pending), timeout_s=30.0)
        with local_write(self.store) as tx:
            tx.delete_setting("bootstrap")

    def close(self) -> None:
        log = self._open_log()
        self._closed = True
        if log is not None:
            log.close()
        self.store.close()
        self._dir_lock.close()

    def _node_key(self) -> bytes:
        return (self.data_dir / NODE_KEY_NAME).read_bytes()

    def _self_test(self, fault: str | None) -> tuple[list[Any], str]:
        """Run the power-on self-tests and audit them; the results and why they failed ("" when they passed)."""
        results = crypto.run_self_tests(fault=fault)
        failed = [r.name for r in results if not r.passed]
        with local_write(self.store) as tx:
            tx.audit("self-test", "", passed=not failed, failed=failed)
        return results, f"self-test failed: {', '.join(failed)}" if failed else ""

    def cluster_identity(self) -> cluster_identity.ClusterIdentity | None:
        """The cluster certificate's record from the replicated state (``None`` for a cluster without one)."""
        data = self.machine.cluster_identity()
        return cluster_identity.ClusterIdentity.decode(data) if data else None

    def _check_integrity(self, barrier: Barrier) -> None:
        """Open every sealed record; on any failure, audit it, zeroise and refuse the store."""
        try:
            for row in self.store.iter_objects():
                obj = open_object(barrier, row)
                if (obj.cls != row.cls or obj.attrs.get(CKA.LABEL, "") != row.label
                        or obj.owner != row.owner or obj.attrs.get(CKA.ID, b"") != row.id):
                    raise StoreIntegrityError(f"object {row.handle}: index columns differ from the sealed record")
            for name, version, envelope in self.store.users():
                if open_user(barrier, name, version, envelope).name != name:
                    raise StoreIntegrityError(f"user {name}: sealed record names another user")
        except StoreIntegrityError as exc:
            self.zeroize(reason=f"store integrity check failed: {exc.message}", event="store-integrity-failure")
            raise StoreIntegrityError(f"the store was refused and the node zeroised: {exc.message}") from exc
        finally:
            self.repository.drop_cached()

    def zeroize(self, *, reason: str = "requested", event: str = "zeroize", actor: str = "") -> None:
        """Erase the masking key, every object and every user; record it in the audit chain.

        The audit chain survives (a node-local write). From the start, the node is in the ``zeroized`` state and
        must be initialised anew.
        """
        log = self._open_log()
        self._state = Zeroized(reason)
        if log is not None:
            log.close()
        shutil.rmtree(self.data_dir / "raft", ignore_errors=True)
        with self.lock, local_write(self.store) as tx:
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
        crypto.forget_keys()
        with self.lock:
            self.repository.forget_all()
            self.machine.token_objects = 0

    # ----------------------------------------------------------------- applications
    def attach(self, app: Attached) -> int:
        """Count ``app`` among this node's applications (``get_hsm_info``); returns its application id."""
        self.applications.add(app)
        return next(self._app_counter)

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
            without a cluster key); ``mode`` (``FIPS`` or ``NON_FIPS``, fixed when the cluster was created).
        """
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
            "session_objects": self.repository.session_objects,
            "open_sessions": sessions,
            "applications": len(self.applications),
            "free_disk_bytes": shutil.disk_usage(self.data_dir).free,
            "activated": activated,
            "initialized": initialized,
            "mode": self.machine.mode(),
        }

    def _standing(self) -> tuple[bool, bool | None]:
        """``activated`` and ``initialized`` for :meth:`info`, read anew only after the state changed (opening
        every user record on each call would cost in proportion to the users)."""
        epoch = self.repository.apply_epoch
        if self._standing_at is None or self._standing_at[0] != epoch:
            identity = self.cluster_identity()
            self._standing_at = (epoch, all(u.role != Role.UNACTIVATED_ADMIN.value
                                            for u in self.repository.all_users()),
                                 bool(identity.certificate) if identity is not None else None)
        return self._standing_at[1], self._standing_at[2]
