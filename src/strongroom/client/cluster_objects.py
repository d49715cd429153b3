"""Pythonic objects over a node connection: cluster → session → key.

The same classes serve the synchronous and the asyncio API: with :func:`strongroom.client.connect` every
method returns its value; with :func:`strongroom.client.connect_async` every method returns an awaitable. To the
type checker the two faces are ``Cluster[Sync]`` and ``Cluster[Async]`` (and their sessions and keys): the
methods of an ``Async`` object return ``Awaitable`` of what the ``Sync`` one returns.

Example::

    with strongroom.client.connect("cluster.json") as cluster:
        with cluster.login("alice", "alice-password") as session:
            key = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="data", encrypt=True, decrypt=True)
            sealed = key.encrypt(b"secret")          # AES-GCM with an HSM-generated IV in front
            assert key.decrypt(sealed) == b"secret"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, overload

from ..errors import ArgumentsBad
from ..mechanism_params import GcmParams, Mechanism
from ..vendor import LOGIN_ROLES
from ..vocab import CKA, CKF, CKM, CKU
from .builders import mechanism, template
from .faces import Async, F, Sync, _Runner

GCM_IV_BYTES = 12


class Cluster(Generic[F]):
    """A connection to an HSM cluster; open sessions with :meth:`login` or :meth:`open_session`."""

    def __init__(self, runner: _Runner[F], close: Callable[[], Any], node: dict[str, Any]) -> None:
        self._run = runner
        self._close = close
        self.node = node

    @overload
    def open_session(self: Cluster[Sync], rw: bool = True) -> Session[Sync]: ...
    @overload
    def open_session(self: Cluster[Async], rw: bool = True) -> Awaitable[Session[Async]]: ...

    def open_session(self, rw: bool = True) -> Any:
        """``C_OpenSession``: a new (not logged-in) session."""
        flags = int(CKF.SERIAL_SESSION | (CKF.RW_SESSION if rw else 0))
        return self._run("open_session", flags, then=lambda handle: Session(self, handle))

    @overload
    def login(self: Cluster[Sync], username: str, password: str, role: str = "crypto-user") -> Session[Sync]: ...
    @overload
    def login(self: Cluster[Async], username: str, password: str,
              role: str = "crypto-user") -> Awaitable[Session[Async]]: ...

    def login(self: Cluster[Any], username: str, password: str, role: str = "crypto-user") -> Any:
        """Open a read-write session and log in (``C_OpenSession`` + ``C_Login`` with ``username:password``).

        Args:
            role: ``"crypto-user"`` (``CKU_USER``), ``"admin"`` (``CKU_SO``) or ``"appliance"``.

        Raises:
            ArgumentsBad: (``CKR_ARGUMENTS_BAD``) another role.
            PinIncorrect, PinLocked, UserTypeInvalid, UserAlreadyLoggedIn: as ``C_Login``.
        """
        if role not in LOGIN_ROLES:
            raise ArgumentsBad(f"role must be one of {sorted(LOGIN_ROLES)}, got {role!r:.40}")
        user_type = int(LOGIN_ROLES[role])
        # the runner's mode is the face this cluster serves
        if not self._run.is_async:
            blocking: Cluster[Sync] = self
            session = blocking.open_session()
            try:
                session.login(username, password, user_type)
            except BaseException:
                session.close()
                raise
            return session
        awaiting: Cluster[Async] = self

        async def run() -> Session[Async]:
            session = await awaiting.open_session()
            try:
                await session.login(username, password, user_type)
            except BaseException:
                await session.close()
                raise
            return session

        return run()

    @overload
    def hsm_info(self: Cluster[Sync]) -> dict[str, Any]: ...
    @overload
    def hsm_info(self: Cluster[Async]) -> Awaitable[dict[str, Any]]: ...

    def hsm_info(self) -> Any:
        """``get_hsm_info``: serial, firmware version, state, self-tests, object and session counts, capacity."""
        return self._run("hsm_info")

    @overload
    def cluster_status(self: Cluster[Sync]) -> dict[str, Any]: ...
    @overload
    def cluster_status(self: Cluster[Async]) -> Awaitable[dict[str, Any]]: ...

    def cluster_status(self) -> Any:
        """The replicated log as one HSM sees it: ``role``, ``leader``, ``members`` (replication addresses),
        ``commit_index``, ``applied_index``, ``has_quorum``."""
        return self._run("cluster_status")

    @overload
    def close(self: Cluster[Sync]) -> None: ...
    @overload
    def close(self: Cluster[Async]) -> Awaitable[None]: ...

    def close(self) -> Any:
        """Close the connections to the cluster (its sessions end with them)."""
        return self._close()

    def __enter__(self: Cluster[Sync]) -> Cluster[Sync]:
        return self

    def __exit__(self: Cluster[Sync], *exc: object) -> None:
        self.close()

    async def __aenter__(self: Cluster[Async]) -> Cluster[Async]:
        return self

    async def __aexit__(self: Cluster[Async], *exc: object) -> None:
        await self.close()


class Session(Generic[F]):
    """One PKCS#11 session on the node. Closing it (or leaving its ``with`` block) destroys its session
    objects; the application's login ends when its last session closes."""

    def __init__(self, cluster: Cluster[F], handle: int) -> None:
        self.cluster = cluster
        self.handle = handle
        self._run = cluster._run

    # -- lifecycle
    @overload
    def login(self: Session[Sync], username: str, password: str, user_type: int = CKU.USER) -> None: ...
    @overload
    def login(self: Session[Async], username: str, password: str, user_type: int = CKU.USER) -> Awaitable[None]: ...

    def login(self, username: str, password: str, user_type: int = CKU.USER) -> Any:
        """``C_Login`` with ``username:password`` as the PIN."""
        return self._run("login", self.handle, int(user_type), f"{username}:{password}")

    @overload
    def logout(self: Session[Sync]) -> None: ...
    @overload
    def logout(self: Session[Async]) -> Awaitable[None]: ...

    def logout(self) -> Any:
        """``C_Logout``."""
        return self._run("logout", self.handle)

    @overload
    def close(self: Session[Sync]) -> None: ...
    @overload
    def close(self: Session[Async]) -> Awaitable[None]: ...

    def close(self) -> Any:
        """``C_CloseSession``."""
        return self._run("close_session", self.handle)

    @overload
    def info(self: Session[Sync]) -> dict[str, int]: ...
    @overload
    def info(self: Session[Async]) -> Awaitable[dict[str, int]]: ...

    def info(self) -> Any:
        """``C_GetSessionInfo``: ``{"state", "flags", "device_error"}``."""
        return self._run("session_info", self.handle)

    def __enter__(self: Session[Sync]) -> Session[Sync]:
        return self

    def __exit__(self: Session[Sync], *exc: object) -> None:
        self.close()

    async def __aenter__(self: Session[Async]) -> Session[Async]:
        return self

    async def __aexit__(self: Session[Async], *exc: object) -> None:
        await self.close()

    # -- objects
    def key(self, handle: int) -> Key[F]:
        """The key object for a handle (no round trip)."""
        return Key(self, handle)

    @overload
    def find(self: Session[Sync], attrs: dict[Any, Any] | None = None, **named: Any) -> list[Key[Sync]]: ...
    @overload
    def find(self: Session[Async], attrs: dict[Any, Any] | None = None,
             **named: Any) -> Awaitable[list[Key[Async]]]: ...

    def find(self, attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """Keys and objects matching a template, e.g. ``find(label="k", cls=...)``; ``CKA`` keys work too."""
        return self._run("find", self.handle, template(attrs, **named), then=lambda hs: [Key(self, h) for h in hs])

    @overload
    def create_object(self: Session[Sync], attrs: dict[Any, Any] | None = None, **named: Any) -> Key[Sync]: ...
    @overload
    def create_object(self: Session[Async], attrs: dict[Any, Any] | None = None,
                      **named: Any) -> Awaitable[Key[Async]]: ...

    def create_object(self, attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """``C_CreateObject``: import a public key, secret key, certificate or data object."""
        return self._run("create_object", self.handle, template(attrs, **named), then=lambda h: Key(self, h))

    @overload
    def generate_key(self: Session[Sync], mech: int | Mechanism = CKM.AES_KEY_GEN,
                     attrs: dict[Any, Any] | None = None, *, token: bool = True, **named: Any) -> Key[Sync]: ...
    @overload
    def generate_key(self: Session[Async], mech: int | Mechanism = CKM.AES_KEY_GEN,
                     attrs: dict[Any, Any] | None = None, *, token: bool = True,
                     **named: Any) -> Awaitable[Key[Async]]: ...

    def generate_key(self, mech: int | Mechanism = CKM.AES_KEY_GEN, attrs: dict[Any, Any] | None = None,
                     *, token: bool = True, **named: Any) -> Any:
        """``C_GenerateKey``: e.g. ``generate_key(CKM.AES_KEY_GEN, value_len=32, label="k", encrypt=True)``.

        Keys are token keys unless ``token=False`` (the PKCS#11 default is a session key).
        """
        tmpl = {int(CKA.TOKEN): token, **template(attrs, **named)}
        return self._run("generate_key", self.handle, mechanism(mech), tmpl, then=lambda h: Key(self, h))

    @overload
    def generate_key_pair(self: Session[Sync], mech: int | Mechanism, public: dict[Any, Any] | None = None,
                          private: dict[Any, Any] | None = None, *, token: bool = True,
                          label: str = "") -> tuple[Key[Sync], Key[Sync]]: ...
    @overload
    def generate_key_pair(self: Session[Async], mech: int | Mechanism, public: dict[Any, Any] | None = None,
                          private: dict[Any, Any] | None = None, *, token: bool = True,
                          label: str = "") -> Awaitable[tuple[Key[Async], Key[Async]]]: ...

    def generate_key_pair(self, mech: int | Mechanism, public: dict[Any, Any] | None = None,
                          private: dict[Any, Any] | None = None, *, token: bool = True,
                          label: str = "") -> Any:
        """``C_GenerateKeyPair``: returns ``(public key, private key)``.

        Example: ``generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256_OID, CKA.VERIFY: True},
        {CKA.SIGN: True})``.
        """
        base = {int(CKA.TOKEN): token, int(CKA.LABEL): label}
        return self._run("generate_key_pair", self.handle, mechanism(mech), {**base, **template(public)},
                         {**base, **template(private)}, then=lambda hs: (Key(self, hs[0]), Key(self, hs[1])))

    @overload
    def unwrap(self: Session[Sync], mech: int | Mechanism, unwrapping_key: Key[Sync], wrapped: bytes,
               attrs: dict[Any, Any] | None = None, **named: Any) -> Key[Sync]: ...
    @overload
    def unwrap(self: Session[Async], mech: int | Mechanism, unwrapping_key: Key[Async], wrapped: bytes,
               attrs: dict[Any, Any] | None = None, **named: Any) -> Awaitable[Key[Async]]: ...

    def unwrap(self, mech: int | Mechanism, unwrapping_key: Key[Any], wrapped: bytes,
               attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """``C_UnwrapKey``; the template needs ``cls`` (``CKA_CLASS``) and ``key_type`` (``CKA_KEY_TYPE``)."""
        return self._run("unwrap_key", self.handle, mechanism(mech), unwrapping_key.handle, wrapped,
                         template(attrs, **named), then=lambda h: Key(self, h))

    @overload
    def random(self: Session[Sync], length: int) -> bytes: ...
    @overload
    def random(self: Session[Async], length: int) -> Awaitable[bytes]: ...

    def random(self, length: int) -> Any:
        """``C_GenerateRandom``: ``length`` random bytes (at most 1 MiB)."""
        return self._run("generate_random", self.handle, length)

    @overload
    def digest(self: Session[Sync], data: bytes, mech: int | Mechanism = CKM.SHA256) -> bytes: ...
    @overload
    def digest(self: Session[Async], data: bytes, mech: int | Mechanism = CKM.SHA256) -> Awaitable[bytes]: ...

    def digest(self, data: bytes, mech: int | Mechanism = CKM.SHA256) -> Any:
        """``C_Digest`` in one round trip."""
        return self._run("digest_once", self.handle, mechanism(mech), data)

    # -- users (admin)
    @overload
    def list_users(self: Session[Sync]) -> list[dict[str, Any]]: ...
    @overload
    def list_users(self: Session[Async]) -> Awaitable[list[dict[str, Any]]]: ...

    def list_users(self) -> Any:
        """Every user with role and lock state (any login)."""
        return self._run("list_users", self.handle)

    @overload
    def create_user(self: Session[Sync], username: str, password: str, role: str = "crypto-user") -> None: ...
    @overload
    def create_user(self: Session[Async], username: str, password: str,
                    role: str = "crypto-user") -> Awaitable[None]: ...

    def create_user(self, username: str, password: str, role: str = "crypto-user") -> Any:
        """Create a user (``"crypto-user"``, ``"admin"`` or ``"appliance"``) who activates with ``password``."""
        return self._run("create_user", self.handle, username, password, role)

    @overload
    def delete_user(self: Session[Sync], username: str) -> None: ...
    @overload
    def delete_user(self: Session[Async], username: str) -> Awaitable[None]: ...

    def delete_user(self, username: str) -> Any:
        return self._run("delete_user", self.handle, username)

    @overload
    def change_password(self: Session[Sync], username: str, new_password: str,
                        old_password: str | None = None) -> None: ...
    @overload
    def change_password(self: Session[Async], username: str, new_password: str,
                        old_password: str | None = None) -> Awaitable[None]: ...

    def change_password(self, username: str, new_password: str, old_password: str | None = None) -> Any:
        return self._run("change_password", self.handle, username, new_password, old_password)

    @overload
    def activate(self: Session[Sync], new_password: str) -> None: ...
    @overload
    def activate(self: Session[Async], new_password: str) -> Awaitable[None]: ...

    def activate(self, new_password: str) -> Any:
        return self._run("activate", self.handle, new_password)

    @overload
    def remove_member(self: Session[Sync], address: str) -> None: ...
    @overload
    def remove_member(self: Session[Async], address: str) -> Awaitable[None]: ...

    def remove_member(self, address: str) -> Any:
        """Remove an HSM from the cluster by its replication address (admins and the appliance user)."""
        return self._run("remove_member", self.handle, address)

    @overload
    def call(self: Session[Sync], name: str, *args: Any, **kwargs: Any) -> Any: ...
    @overload
    def call(self: Session[Async], name: str, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Any node call by name with this session's handle first (the PKCS#11-level API)."""
        return self._run(name, self.handle, *args, **kwargs)


class Key(Generic[F]):
    """A key (or other object) by handle. Methods run on the node; none caches key material."""

    def __init__(self, session: Session[F], handle: int) -> None:
        self.session = session
        self.handle = handle
        self._run = session._run

    def __repr__(self) -> str:
        return f"Key(handle={self.handle})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.handle == self.handle

    def __hash__(self) -> int:
        return hash(self.handle)

    @overload
    def get(self: Key[Sync], *types: int) -> dict[CKA, Any]: ...
    @overload
    def get(self: Key[Async], *types: int) -> Awaitable[dict[CKA, Any]]: ...

    def get(self, *types: int) -> Any:
        """``C_GetAttributeValue`` of the given ``CKA`` types as a dict.

        Raises:
            AttributeSensitive, AttributeTypeInvalid: the first attribute that cannot be read.
        """
        from ..errors import error_for

        def convert(pairs: list[Any]) -> dict[CKA, Any]:
            out = {}
            for cka, (rv, value) in zip(types, pairs, strict=False):
                if rv:
                    raise error_for(rv, f"CKA_{CKA(cka).name}")
                out[CKA(cka)] = value
            return out

        return self._run("get_attribute_value", self.session.handle, self.handle, [int(t) for t in types],
                         then=convert)

    def __getitem__(self: Key[Sync], cka: int) -> Any:
        """Synchronous attribute access: ``key[CKA.LABEL]``.

        Raises:
            TypeError: with the asyncio API (``await key.get(CKA.X)`` there).
        """
        if self._run.is_async:
            raise TypeError("use 'await key.get(CKA.X)' with the asyncio API")
        return self.get(cka)[CKA(cka)]

    @overload
    def set(self: Key[Sync], attrs: dict[Any, Any] | None = None, **named: Any) -> None: ...
    @overload
    def set(self: Key[Async], attrs: dict[Any, Any] | None = None, **named: Any) -> Awaitable[None]: ...

    def set(self, attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """``C_SetAttributeValue``."""
        return self._run("set_attribute_value", self.session.handle, self.handle, template(attrs, **named))

    @overload
    def destroy(self: Key[Sync]) -> None: ...
    @overload
    def destroy(self: Key[Async]) -> Awaitable[None]: ...

    def destroy(self) -> Any:
        """``C_DestroyObject``."""
        return self._run("destroy_object", self.session.handle, self.handle)

    @overload
    def share(self: Key[Sync], username: str) -> None: ...
    @overload
    def share(self: Key[Async], username: str) -> Awaitable[None]: ...

    def share(self, username: str) -> Any:
        """Let ``username`` use this key too."""
        return self._run("share", self.session.handle, self.handle, username)

    @overload
    def unshare(self: Key[Sync], username: str) -> None: ...
    @overload
    def unshare(self: Key[Async], username: str) -> Awaitable[None]: ...

    def unshare(self, username: str) -> Any:
        """Stop sharing this key with ``username``."""
        return self._run("share", self.session.handle, self.handle, username, unshare=True)

    @overload
    def sign(self: Key[Sync], data: bytes, mech: int | Mechanism) -> bytes: ...
    @overload
    def sign(self: Key[Async], data: bytes, mech: int | Mechanism) -> Awaitable[bytes]: ...

    def sign(self, data: bytes, mech: int | Mechanism) -> Any:
        """``C_SignInit`` + ``C_Sign`` in one round trip: a signature (raw r‖s for ECDSA) or MAC."""
        return self._run("sign_once", self.session.handle, mechanism(mech), self.handle, data)

    @overload
    def verify(self: Key[Sync], data: bytes, signature: bytes, mech: int | Mechanism) -> None: ...
    @overload
    def verify(self: Key[Async], data: bytes, signature: bytes, mech: int | Mechanism) -> Awaitable[None]: ...

    def verify(self, data: bytes, signature: bytes, mech: int | Mechanism) -> Any:
        """``C_VerifyInit`` + ``C_Verify``; raises ``SignatureInvalid`` (``CKR_SIGNATURE_INVALID``)."""
        return self._run("verify_once", self.session.handle, mechanism(mech), self.handle, data, signature)

    @overload
    def encrypt(self: Key[Sync], data: bytes, mech: int | Mechanism | None = None) -> bytes: ...
    @overload
    def encrypt(self: Key[Async], data: bytes, mech: int | Mechanism | None = None) -> Awaitable[bytes]: ...

    def encrypt(self, data: bytes, mech: int | Mechanism | None = None) -> Any:
        """``C_EncryptInit`` + ``C_Encrypt``. Without a mechanism (AES keys): AES-GCM with an HSM-generated IV,
        returned as ``IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`` (NIST SP 800-38D)."""
        return self._run("encrypt_once", self.session.handle, self._cipher(mech), self.handle, data)

    @overload
    def decrypt(self: Key[Sync], data: bytes, mech: int | Mechanism | None = None) -> bytes: ...
    @overload
    def decrypt(self: Key[Async], data: bytes, mech: int | Mechanism | None = None) -> Awaitable[bytes]: ...

    def decrypt(self, data: bytes, mech: int | Mechanism | None = None) -> Any:
        """``C_DecryptInit`` + ``C_Decrypt``. Without a mechanism: the inverse of :meth:`encrypt`'s default."""
        if mech is None:
            iv, body = data[:GCM_IV_BYTES], data[GCM_IV_BYTES:]
            return self._run("decrypt_once", self.session.handle, Mechanism(CKM.AES_GCM, GcmParams(iv=iv)),
                             self.handle, body)
        return self._run("decrypt_once", self.session.handle, self._cipher(mech), self.handle, data)

    def _cipher(self, mech: int | Mechanism | None) -> Mechanism:
        return Mechanism(CKM.AES_GCM, GcmParams()) if mech is None else mechanism(mech)

    @overload
    def wrap(self: Key[Sync], key: Key[Sync], mech: int | Mechanism = CKM.AES_KEY_WRAP_PAD) -> bytes: ...
    @overload
    def wrap(self: Key[Async], key: Key[Async], mech: int | Mechanism = CKM.AES_KEY_WRAP_PAD) -> Awaitable[bytes]: ...

    def wrap(self, key: Key[Any], mech: int | Mechanism = CKM.AES_KEY_WRAP_PAD) -> Any:
        """``C_WrapKey``: ``key`` encrypted under this (wrapping) key."""
        return self._run("wrap_key", self.session.handle, mechanism(mech), self.handle, key.handle)

    @overload
    def derive(self: Key[Sync], mech: Mechanism, attrs: dict[Any, Any] | None = None, **named: Any) -> Key[Sync]: ...
    @overload
    def derive(self: Key[Async], mech: Mechanism, attrs: dict[Any, Any] | None = None,
               **named: Any) -> Awaitable[Key[Async]]: ...

    def derive(self, mech: Mechanism, attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """``C_DeriveKey`` from this base key (ECDH1 or SP 800-108)."""
        return self._run("derive_key", self.session.handle, mech, self.handle, template(attrs, **named),
                         then=lambda h: Key(self.session, h))
