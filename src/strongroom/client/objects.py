"""Pythonic objects over a node connection: cluster → session → key.

The same classes serve the synchronous and the asyncio API: with :func:`strongroom.client.connect` every
method returns its value; with :func:`strongroom.client.connect_async` every method returns an awaitable.

Example::

    with strongroom.client.connect("cluster.json") as cluster:
        with cluster.login("alice", "alice-password") as session:
            key = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="data", encrypt=True, decrypt=True)
            sealed = key.encrypt(b"secret")          # AES-GCM with an HSM-generated IV in front
            assert key.decrypt(sealed) == b"secret"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ArgumentsBad
from ..mechanism_params import GcmParams, Mechanism
from ..vendor import CKU_APPLIANCE
from ..vocab import CKA, CKF, CKM, CKU

GCM_IV_BYTES = 12
_ROLE_USER_TYPE = {"crypto-user": CKU.USER, "admin": CKU.SO, "appliance": CKU_APPLIANCE}


def mechanism(value: int | Mechanism, parameter: Any = None) -> Mechanism:
    """A :class:`Mechanism` from a ``CKM`` value (with an optional parameter) or a Mechanism as is."""
    if isinstance(value, Mechanism):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentsBad(f"a mechanism is a CKM value or a Mechanism, got {type(value).__name__}")
    return Mechanism(value, parameter)


def template(attrs: dict[Any, Any] | None = None, **named: Any) -> dict[int, Any]:
    """A template from ``CKA`` keys and/or keyword names (``label="x"`` is ``CKA.LABEL``; ``cls`` stands for
    ``CKA.CLASS``, a Python keyword)."""
    if attrs is not None and not isinstance(attrs, dict):
        raise ArgumentsBad(f"a template is a mapping of CKA values to values, got {type(attrs).__name__}")
    if any(isinstance(k, bool) or not isinstance(k, int) for k in (attrs or {})):
        raise ArgumentsBad("template keys must be CKA values (integers)")
    out = {int(k): v for k, v in (attrs or {}).items()}
    for name, value in named.items():
        try:
            out[int(CKA.CLASS if name == "cls" else CKA[name.upper()])] = value
        except KeyError:
            raise ArgumentsBad(f"{name} is not an attribute name (CKA_{name.upper()} does not exist)") from None
    return out


class _Runner:
    """Runs calls on a connection; ``then`` post-processes the value (awaited in async mode)."""

    def __init__(self, call: Callable[..., Any], is_async: bool) -> None:
        self.call = call
        self.is_async = is_async

    def __call__(self, name: str, *args: Any, then: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        if not self.is_async:
            value = self.call(name, *args, **kwargs)
            return then(value) if then else value
        if then is None:
            return self.call(name, *args, **kwargs)

        async def run() -> Any:
            value = await self.call(name, *args, **kwargs)
            return then(value) if then else value

        return run()


class Cluster:
    """A connection to an HSM cluster; open sessions with :meth:`login` or :meth:`open_session`."""

    def __init__(self, runner: _Runner, close: Callable[[], Any], node: dict[str, Any]) -> None:
        self._run = runner
        self._close = close
        self.node = node

    def open_session(self, rw: bool = True) -> Session | Any:
        """``C_OpenSession``: a new (not logged-in) session."""
        flags = int(CKF.SERIAL_SESSION | (CKF.RW_SESSION if rw else 0))
        return self._run("open_session", flags, then=lambda handle: Session(self, handle))

    def login(self, username: str, password: str, role: str = "crypto-user") -> Session | Any:
        """Open a read-write session and log in (``C_OpenSession`` + ``C_Login`` with ``username:password``).

        Args:
            role: ``"crypto-user"`` (``CKU_USER``), ``"admin"`` (``CKU_SO``) or ``"appliance"``.

        Raises:
            PinIncorrect, PinLocked, UserTypeInvalid, UserAlreadyLoggedIn: as ``C_Login``.
        """
        if role not in _ROLE_USER_TYPE:
            raise ArgumentsBad(f"role must be one of {sorted(_ROLE_USER_TYPE)}, got {role!r:.40}")
        user_type = int(_ROLE_USER_TYPE[role])
        if not self._run.is_async:
            session = self.open_session()
            try:
                session.login(username, password, user_type)
            except BaseException:
                session.close()
                raise
            return session

        async def run() -> Session:
            session = await self.open_session()
            try:
                await session.login(username, password, user_type)
            except BaseException:
                await session.close()
                raise
            return session

        return run()

    def hsm_info(self) -> dict[str, Any] | Any:
        """``get_hsm_info``: serial, firmware version, state, self-tests, object and session counts, capacity."""
        return self._run("hsm_info")

    def cluster_status(self) -> dict[str, Any] | Any:
        """The replicated log as one HSM sees it: ``role``, ``leader``, ``members`` (replication addresses),
        ``commit_index``, ``applied_index``, ``has_quorum``."""
        return self._run("cluster_status")

    def list_users(self) -> list[dict[str, Any]] | Any:
        """Every user with role and lock state; needs no login."""
        return self._run("list_users")

    def close(self) -> Any:
        return self._close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Session:
    """One PKCS#11 session on the node. Closing it (or leaving its ``with`` block) destroys its session
    objects; the application's login ends when its last session closes."""

    def __init__(self, cluster: Cluster, handle: int) -> None:
        self.cluster = cluster
        self.handle = handle
        self._run = cluster._run

    # -- lifecycle
    def login(self, username: str, password: str, user_type: int = CKU.USER) -> Any:
        return self._run("login", self.handle, int(user_type), f"{username}:{password}")

    def logout(self) -> Any:
        return self._run("logout", self.handle)

    def close(self) -> Any:
        return self._run("close_session", self.handle)

    def info(self) -> Any:
        """``C_GetSessionInfo``: ``{"state", "flags", "device_error"}``."""
        return self._run("session_info", self.handle)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- objects
    def key(self, handle: int) -> Key:
        """The key object for a handle (no round trip)."""
        return Key(self, handle)

    def find(self, attrs: dict[Any, Any] | None = None, **named: Any) -> list[Key] | Any:
        """Keys and objects matching a template, e.g. ``find(label="k", cls=...)``; ``CKA`` keys work too."""
        return self._run("find", self.handle, template(attrs, **named), then=lambda hs: [Key(self, h) for h in hs])

    def create_object(self, attrs: dict[Any, Any] | None = None, **named: Any) -> Key | Any:
        """``C_CreateObject``: import a public key, secret key, certificate or data object."""
        return self._run("create_object", self.handle, template(attrs, **named), then=lambda h: Key(self, h))

    def generate_key(self, mech: int | Mechanism = CKM.AES_KEY_GEN, attrs: dict[Any, Any] | None = None,
                     *, token: bool = True, **named: Any) -> Key | Any:
        """``C_GenerateKey``: e.g. ``generate_key(CKM.AES_KEY_GEN, value_len=32, label="k", encrypt=True)``.

        Keys are token keys unless ``token=False`` (the PKCS#11 default is a session key).
        """
        tmpl = {int(CKA.TOKEN): token, **template(attrs, **named)}
        return self._run("generate_key", self.handle, mechanism(mech), tmpl, then=lambda h: Key(self, h))

    def generate_key_pair(self, mech: int | Mechanism, public: dict[Any, Any] | None = None,
                          private: dict[Any, Any] | None = None, *, token: bool = True,
                          label: str = "") -> tuple[Key, Key] | Any:
        """``C_GenerateKeyPair``: returns ``(public key, private key)``.

        Example: ``generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256_OID, CKA.VERIFY: True},
        {CKA.SIGN: True})``.
        """
        base = {int(CKA.TOKEN): token, int(CKA.LABEL): label}
        return self._run("generate_key_pair", self.handle, mechanism(mech), {**base, **template(public)},
                         {**base, **template(private)}, then=lambda hs: (Key(self, hs[0]), Key(self, hs[1])))

    def unwrap(self, mech: int | Mechanism, unwrapping_key: Key, wrapped: bytes,
               attrs: dict[Any, Any] | None = None, **named: Any) -> Key | Any:
        """``C_UnwrapKey``; the template needs ``cls`` (``CKA_CLASS``) and ``key_type`` (``CKA_KEY_TYPE``)."""
        return self._run("unwrap_key", self.handle, mechanism(mech), unwrapping_key.handle, wrapped,
                         template(attrs, **named), then=lambda h: Key(self, h))

    def random(self, length: int) -> bytes | Any:
        """``C_GenerateRandom``: ``length`` random bytes (at most 1 MiB)."""
        return self._run("generate_random", self.handle, length)

    def digest(self, data: bytes, mech: int | Mechanism = CKM.SHA256) -> bytes | Any:
        """``C_Digest`` in one round trip."""
        return self._run("digest_once", self.handle, mechanism(mech), data)

    # -- users (admin)
    def create_user(self, username: str, password: str, role: str = "crypto-user") -> Any:
        return self._run("create_user", self.handle, username, password, role)

    def delete_user(self, username: str) -> Any:
        return self._run("delete_user", self.handle, username)

    def change_password(self, username: str, new_password: str, old_password: str | None = None) -> Any:
        return self._run("change_password", self.handle, username, new_password, old_password)

    def activate(self, new_password: str) -> Any:
        return self._run("activate", self.handle, new_password)

    def remove_member(self, address: str) -> Any:
        """Remove an HSM from the cluster by its replication address (admins and the appliance user)."""
        return self._run("remove_member", self.handle, address)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Any node call by name with this session's handle first (the PKCS#11-level API)."""
        return self._run(name, self.handle, *args, **kwargs)


class Key:
    """A key (or other object) by handle. Methods run on the node; none caches key material."""

    def __init__(self, session: Session, handle: int) -> None:
        self.session = session
        self.handle = handle
        self._run = session._run

    def __repr__(self) -> str:
        return f"Key(handle={self.handle})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.handle == self.handle

    def __hash__(self) -> int:
        return hash(self.handle)

    def get(self, *types: int) -> dict[CKA, Any] | Any:
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

    def __getitem__(self, cka: int) -> Any:
        """Synchronous attribute access: ``key[CKA.LABEL]``."""
        if self._run.is_async:
            raise TypeError("use 'await key.get(CKA.X)' with the asyncio API")
        return self.get(cka)[CKA(cka)]

    def set(self, attrs: dict[Any, Any] | None = None, **named: Any) -> Any:
        """``C_SetAttributeValue``."""
        return self._run("set_attribute_value", self.session.handle, self.handle, template(attrs, **named))

    def destroy(self) -> Any:
        """``C_DestroyObject``."""
        return self._run("destroy_object", self.session.handle, self.handle)

    def share(self, username: str) -> Any:
        return self._run("share", self.session.handle, self.handle, username)

    def unshare(self, username: str) -> Any:
        return self._run("share", self.session.handle, self.handle, username, unshare=True)

    def sign(self, data: bytes, mech: int | Mechanism) -> bytes | Any:
        """``C_SignInit`` + ``C_Sign`` in one round trip: a signature (raw r‖s for ECDSA) or MAC."""
        return self._run("sign_once", self.session.handle, mechanism(mech), self.handle, data)

    def verify(self, data: bytes, signature: bytes, mech: int | Mechanism) -> Any | None:
        """``C_VerifyInit`` + ``C_Verify``; raises ``SignatureInvalid`` (``CKR_SIGNATURE_INVALID``)."""
        return self._run("verify_once", self.session.handle, mechanism(mech), self.handle, data, signature)

    def encrypt(self, data: bytes, mech: int | Mechanism | None = None) -> bytes | Any:
        """``C_EncryptInit`` + ``C_Encrypt``. Without a mechanism (AES keys): AES-GCM with an HSM-generated IV,
        returned as ``IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`` (NIST SP 800-38D)."""
        return self._run("encrypt_once", self.session.handle, self._cipher(mech), self.handle, data)

    def decrypt(self, data: bytes, mech: int | Mechanism | None = None) -> bytes | Any:
        """``C_DecryptInit`` + ``C_Decrypt``. Without a mechanism: the inverse of :meth:`encrypt`'s default."""
        if mech is None:
            iv, body = data[:GCM_IV_BYTES], data[GCM_IV_BYTES:]
            return self._run("decrypt_once", self.session.handle, Mechanism(CKM.AES_GCM, GcmParams(iv=iv)),
                             self.handle, body)
        return self._run("decrypt_once", self.session.handle, self._cipher(mech), self.handle, data)

    def _cipher(self, mech: int | Mechanism | None) -> Mechanism:
        return Mechanism(CKM.AES_GCM, GcmParams()) if mech is None else mechanism(mech)

    def wrap(self, key: Key, mech: int | Mechanism = CKM.AES_KEY_WRAP_PAD) -> bytes | Any:
        """``C_WrapKey``: ``key`` encrypted under this (wrapping) key."""
        return self._run("wrap_key", self.session.handle, mechanism(mech), self.handle, key.handle)

    def derive(self, mech: Mechanism, attrs: dict[Any, Any] | None = None, **named: Any) -> Key | Any:
        """``C_DeriveKey`` from this base key (ECDH1 or SP 800-108)."""
        return self._run("derive_key", self.session.handle, mech, self.handle, template(attrs, **named),
                         then=lambda h: Key(self.session, h))
