"""An application's view of the HSM: sessions, login, users, objects and operations.

One :class:`Application` is one client connection. Its methods follow the PKCS#11 3.0 functions of the same
names (``open_session`` is ``C_OpenSession``) and raise the ``CKR_*`` the standard names. Variable-length
outputs follow §5.2: pass ``query=True`` to learn the length without changing the operation, or ``out_len``
(the caller's buffer size in bytes) to get ``CKR_BUFFER_TOO_SMALL`` with the exact size when it is too short;
the operation stays active in both cases.

Login state is per application and shared by its sessions (§5.6); closing its last session logs it out.
"""

from __future__ import annotations

from typing import Any

from .. import crypto
from ..crypto.params import Mechanism
from ..errors import (
    ActionProhibited,
    ArgumentsBad,
    AttributeValueInvalid,
    BufferTooSmall,
    KeyHandleInvalid,
    KeyNotWrappable,
    KeyTypeInconsistent,
    MechanismInvalid,
    ObjectHandleInvalid,
    OperationActive,
    OperationNotInitialized,
    PinIncorrect,
    PinInvalid,
    PinLocked,
    SessionHandleInvalid,
    SessionReadOnly,
    SessionReadOnlyExists,
    StrongroomError,
    UnwrappingKeyHandleInvalid,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
    UserTypeInvalid,
    WrappedKeyInvalid,
    WrappingKeyHandleInvalid,
)
from ..objects import policy, templates
from ..objects.attributes import Attributes, attribute_type, matches, normalize_template
from ..objects.model import HsmObject
from ..vendor import USER_TYPES
from ..vocab import CKA, CKF, CKK, CKM, CKO, CKS, CKU
from .hsm import HSM
from .sessions import ActiveOperation, OpKind, Session, deliver
from .users import MAX_USERS, Role, UserRecord, check_password, check_username, split_pin

_USAGE = {OpKind.ENCRYPT: CKA.ENCRYPT, OpKind.DECRYPT: CKA.DECRYPT, OpKind.SIGN: CKA.SIGN,
          OpKind.VERIFY: CKA.VERIFY}
_FLAG = {OpKind.ENCRYPT: CKF.ENCRYPT, OpKind.DECRYPT: CKF.DECRYPT, OpKind.SIGN: CKF.SIGN,
         OpKind.VERIFY: CKF.VERIFY, OpKind.DIGEST: CKF.DIGEST}
_INIT = {OpKind.ENCRYPT: crypto.encrypt_init, OpKind.DECRYPT: crypto.decrypt_init,
         OpKind.SIGN: crypto.sign_init, OpKind.VERIFY: crypto.verify_init}


class Application:
    """One application (client connection) of an :class:`~strongroom.node.hsm.HSM`.

    Attributes:
        user: the logged-in user's record, or ``None``.
        user_type: the ``CKU`` the application logged in as.
        peer: free-form description of the client (for the audit trail of logins).
    """

    def __init__(self, hsm: HSM, app_id: int, peer: str = "") -> None:
        self.hsm = hsm
        self.id = app_id
        self.peer = peer
        self.sessions: dict[int, Session] = {}
        self.user: UserRecord | None = None
        self.user_type: int | None = None

    # ----------------------------------------------------------------- helpers
    def _session(self, handle: int) -> Session:
        self.hsm.require_operational()
        session = self.sessions.get(handle)
        if session is None:
            raise SessionHandleInvalid(f"no open session {handle}")
        return session

    def _actor(self) -> str:
        return self.user.name if self.user else ""

    def _role(self) -> Role | None:
        return Role(self.user.role) if self.user else None

    def _require_role(self, *roles: Role) -> UserRecord:
        if self.user is None or self._role() not in roles:
            names = " or ".join(r.value for r in roles)
            raise UserNotLoggedIn(f"this needs a {names} login")
        return self.user

    def _visible(self, obj: HsmObject) -> bool:
        if obj.session is not None and obj.session[0] != self.id:
            return False
        if not obj.is_private:
            return True
        user = self.user
        if user is None or self._role() is not Role.CRYPTO_USER:
            return False
        return not obj.owner or obj.owner == user.name or user.name in obj.shared

    def _object(self, handle: int, invalid: type[StrongroomError] = ObjectHandleInvalid) -> HsmObject:
        try:
            obj = self.hsm.get_object(handle)
        except ObjectHandleInvalid:
            raise invalid(f"no object with handle {handle}") from None
        if not self._visible(obj):
            raise invalid(f"no object with handle {handle}")
        return obj

    def _key(self, handle: int, invalid: type[StrongroomError] = KeyHandleInvalid) -> HsmObject:
        """A key the logged-in crypto user may use."""
        self._require_role(Role.CRYPTO_USER)
        obj = self._object(handle, invalid)
        if obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY, CKO.PUBLIC_KEY):
            raise invalid(f"object {handle} is not a key")
        return obj

    def _require_owner(self, obj: HsmObject, what: str) -> None:
        if obj.owner and (self.user is None or obj.owner != self.user.name):
            raise ActionProhibited(f"only the key's owner may {what} it")

    def _require_writable(self, session: Session, token: bool) -> None:
        if token and not session.rw:
            raise SessionReadOnly("token objects need a read-write session")

    def _new_object(self, session: Session, attrs: Attributes, material: bytes, tx: Any) -> HsmObject:
        token = bool(attrs.get(CKA.TOKEN))
        handle = self.hsm.new_handle(tx, token)
        owner = self.user.name if self.user and self._role() is Role.CRYPTO_USER else ""
        return HsmObject(handle, attrs, material, owner,
                         session=None if token else (self.id, session.handle))

    def _create_objects(self, session: Session, made: list[tuple[Attributes, bytes]], event: str,
                        **detail: Any) -> list[int]:
        """Store new objects and audit their creation in one transaction; return their handles."""
        for attrs, _ in made:
            self._require_writable(session, bool(attrs.get(CKA.TOKEN)))
        with self.hsm.lock, self.hsm.store.transaction() as tx:
            objects = [self._new_object(session, attrs, material, tx) for attrs, material in made]
            handles = [o.handle for o in objects]
            tx.audit(event, self._actor(), handles=handles,
                     token=[o.is_token for o in objects], **detail)
            for obj in objects:
                self.hsm.put_object(tx, obj)
        return handles

    @staticmethod
    def _template(template: dict[int, Any] | None) -> Attributes:
        return normalize_template(template or {})

    @staticmethod
    def _mechanism_for(mechanism: Mechanism, flag: CKF, key: HsmObject | None) -> crypto.MechanismInfo:
        info = crypto.info(mechanism.mechanism)
        if not info.flags & flag:
            raise MechanismInvalid(f"{CKM(info.mechanism).name} cannot be used for {flag.name}")
        if key is not None and key.key_type not in info.key_types:
            raise KeyTypeInconsistent(
                f"{CKM(info.mechanism).name} does not take a CKK_{CKK(key.key_type).name} key")
        return info

    # ----------------------------------------------------------------- sessions
    def open_session(self, flags: int = CKF.SERIAL_SESSION | CKF.RW_SESSION) -> int:
        """``C_OpenSession``: open a session; ``CKF_RW_SESSION`` in ``flags`` makes it read-write.

        Raises:
            SessionParallelNotSupported: ``CKR_SESSION_PARALLEL_NOT_SUPPORTED`` without ``CKF_SERIAL_SESSION``.
            SessionReadWriteSoExists: ``CKR_SESSION_READ_WRITE_SO_EXISTS`` for a read-only session while an
                admin is logged in.
        """
        from ..errors import SessionParallelNotSupported, SessionReadWriteSoExists

        self.hsm.require_operational()
        if not flags & CKF.SERIAL_SESSION:
            raise SessionParallelNotSupported("CKF_SERIAL_SESSION must be set")
        rw = bool(flags & CKF.RW_SESSION)
        if not rw and self.user_type == CKU.SO:
            raise SessionReadWriteSoExists("an admin is logged in; read-only sessions cannot be opened")
        handle = self.hsm.next_session_handle()
        self.sessions[handle] = Session(handle, self.id, rw)
        return handle

    def close_session(self, handle: int) -> None:
        """``C_CloseSession``: destroys the session's objects; the last session's close logs the application out."""
        self._session(handle)
        del self.sessions[handle]
        self.hsm.drop_session_objects(self.id, handle)
        if not self.sessions:
            self._logged_out()

    def close_all_sessions(self) -> None:
        """``C_CloseAllSessions`` (also what a dropped connection does)."""
        self.sessions.clear()
        self.hsm.drop_session_objects(self.id)
        self._logged_out()

    def session_info(self, handle: int) -> dict[str, int]:
        """``C_GetSessionInfo``: ``{"state": CKS, "flags": CKF, "device_error": 0}``."""
        session = self._session(handle)
        if self.user_type == CKU.SO:
            state = CKS.RW_SO_FUNCTIONS
        elif self.user is not None:
            state = CKS.RW_USER_FUNCTIONS if session.rw else CKS.RO_USER_FUNCTIONS
        else:
            state = CKS.RW_PUBLIC_SESSION if session.rw else CKS.RO_PUBLIC_SESSION
        flags = CKF.SERIAL_SESSION | (CKF.RW_SESSION if session.rw else 0)
        return {"state": int(state), "flags": int(flags), "device_error": 0}

    # ----------------------------------------------------------------- login
    def login(self, handle: int, user_type: int, pin: str | bytes) -> None:
        """``C_Login`` with a PIN of the form ``username:password``.

        ``CKU_SO`` logs in an admin, ``CKU_USER`` a crypto user, the vendor ``CKU_APPLIANCE`` the appliance user.
        A wrong password counts toward the lockout threshold; reaching it locks the account.

        Raises:
            UserAlreadyLoggedIn: ``CKR_USER_ALREADY_LOGGED_IN`` when this application is logged in as that type.
            UserAnotherAlreadyLoggedIn: ``CKR_USER_ANOTHER_ALREADY_LOGGED_IN`` when logged in as another type.
            UserTypeInvalid: ``CKR_USER_TYPE_INVALID`` for an unknown type or one the user's role does not have.
            SessionReadOnlyExists: ``CKR_SESSION_READ_ONLY_EXISTS`` for an admin login with read-only sessions.
            PinIncorrect: ``CKR_PIN_INCORRECT`` for an unknown user or a wrong password.
            PinLocked: ``CKR_PIN_LOCKED`` when the account is locked.
        """
        self._session(handle)
        if user_type not in USER_TYPES:
            raise UserTypeInvalid(f"user type {user_type} is not CKU_SO, CKU_USER or CKU_APPLIANCE")
        if self.user is not None:
            if self.user_type == user_type:
                raise UserAlreadyLoggedIn(f"already logged in as {self.user.name}")
            raise UserAnotherAlreadyLoggedIn(f"{self.user.name} is logged in; log out first")
        if user_type == CKU.SO and any(not s.rw for s in self.sessions.values()):
            raise SessionReadOnlyExists("close the read-only sessions before an admin login")
        name, password = split_pin(pin)
        name = name.lower()
        hsm = self.hsm
        with hsm.lock:
            record = hsm.get_user(name)
            if record is None:
                with hsm.store.transaction() as tx:
                    tx.audit("login-failed", name, reason="unknown user", peer=self.peer)
                raise PinIncorrect("wrong username or password")
            if record.locked:
                with hsm.store.transaction() as tx:
                    tx.audit("login-failed", name, reason="locked", peer=self.peer)
                raise PinLocked(f"user {name} is locked; an admin must reset the password")
            if not hsm.passwords.verify(record.password_hash, password):
                record.failures += 1
                record.version += 1
                locked = record.failures >= hsm.settings.lockout_threshold
                record.locked = locked
                with hsm.store.transaction() as tx:
                    hsm.put_user(tx, record)
                    tx.audit("login-failed", name, reason="wrong password", failures=record.failures,
                             peer=self.peer)
                    if locked:
                        tx.audit("lockout", name, failures=record.failures)
                raise PinIncorrect("wrong username or password")
            if Role(record.role).user_type != user_type:
                raise UserTypeInvalid(f"user {name} has role {record.role}, which logs in as another user type")
            with hsm.store.transaction() as tx:
                if record.failures:
                    record.failures = 0
                    record.version += 1
                    hsm.put_user(tx, record)
                tx.audit("login", name, role=record.role, peer=self.peer)
        self.user, self.user_type = record, user_type

    def logout(self, handle: int) -> None:
        """``C_Logout``: ends the login of all the application's sessions and their active operations.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN``.
        """
        self._session(handle)
        if self.user is None:
            raise UserNotLoggedIn("no user is logged in")
        self._logged_out()

    def _logged_out(self) -> None:
        if self.user is not None and self.hsm.state == "operational":
            with self.hsm.store.transaction() as tx:
                tx.audit("logout", self.user.name, peer=self.peer)
        self.user = self.user_type = None
        for session in self.sessions.values():
            session.ops.clear()
            session.find = None
        for obj in list(self.hsm._session_objects.values()):
            if obj.session and obj.session[0] == self.id and obj.is_private:
                self.hsm.delete_object(None, obj)

    def _refresh_user(self) -> UserRecord:
        record = self.hsm.get_user(self.user.name) if self.user else None
        if record is None:
            self._logged_out()
            raise UserNotLoggedIn("the logged-in user no longer exists")
        self.user = record
        return record

    # ----------------------------------------------------------------- users
    def activate(self, handle: int, new_password: str) -> None:
        """Activate the cluster: the ``unactivated-admin`` sets its own password and becomes ``admin``.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless logged in as the unactivated admin.
            PinInvalid: ``CKR_PIN_INVALID`` when the new password equals the initial one.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a password outside 8–32 characters.
        """
        self._session(handle)
        user = self._require_role(Role.UNACTIVATED_ADMIN)
        check_password(new_password)
        hsm = self.hsm
        with hsm.lock:
            if hsm.passwords.verify(user.password_hash, new_password):
                raise PinInvalid("the activation password must differ from the initial password")
            user.password_hash = hsm.passwords.hash(new_password)
            user.role = Role.ADMIN.value
            user.version += 1
            with hsm.store.transaction() as tx:
                hsm.put_user(tx, user)
                tx.audit("activate", user.name)

    def create_user(self, handle: int, username: str, password: str, role: str) -> None:
        """Create a user (admins only).

        Args:
            username: 1–31 letters, digits or ``_``; case-insensitive, stored lowercase.
            password: 8–32 characters.
            role: ``"admin"``, ``"crypto-user"`` or ``"appliance"``.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless an admin is logged in.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a bad username or role, or an existing user.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a bad password length.
        """
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        name = check_username(username)
        check_password(password)
        if role not in (Role.ADMIN.value, Role.CRYPTO_USER.value, Role.APPLIANCE.value):
            raise ArgumentsBad(f"role must be 'admin', 'crypto-user' or 'appliance', got {role!r}")
        hsm = self.hsm
        with hsm.lock:
            users = hsm.all_users()
            if any(u.name == name for u in users):
                raise ArgumentsBad(f"user {name} already exists")
            if len(users) >= MAX_USERS:
                raise ArgumentsBad(f"the cluster holds the maximum of {MAX_USERS} users")
            record = UserRecord(name, role, hsm.passwords.hash(password))
            with hsm.store.transaction() as tx:
                hsm.put_user(tx, record)
                tx.audit("user-create", actor.name, user=name, role=role)

    def delete_user(self, handle: int, username: str) -> None:
        """Delete a user (admins only). A crypto user who owns keys, yourself and the last admin cannot be deleted.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless an admin is logged in.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown user.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for the cases above.
        """
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        name = check_username(username)
        hsm = self.hsm
        with hsm.lock:
            users = {u.name: u for u in hsm.all_users()}
            if name not in users:
                raise ArgumentsBad(f"user {name} does not exist")
            if name == actor.name:
                raise ActionProhibited("an admin cannot delete itself")
            if users[name].role == Role.ADMIN.value and sum(u.role == Role.ADMIN.value for u in users.values()) < 2:
                raise ActionProhibited("the last admin cannot be deleted")
            if any(row.owner == name for row in hsm.store.iter_objects()):
                raise ActionProhibited(f"user {name} owns keys; delete or hand them over first")
            with hsm.store.transaction() as tx:
                tx.delete_user(name)
                tx.audit("user-delete", actor.name, user=name)

    def change_password(self, handle: int, username: str, new_password: str) -> None:
        """Change a password. Admins may change anyone's, which also unlocks the account; others only their own.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without a login, or for another user's password
                without an admin login.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown user.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a bad password length.
        """
        self._session(handle)
        actor = self._require_role(Role.ADMIN, Role.CRYPTO_USER, Role.APPLIANCE)
        name = check_username(username)
        if name != actor.name and self._role() is not Role.ADMIN:
            raise UserNotLoggedIn("only an admin may change another user's password")
        check_password(new_password)
        hsm = self.hsm
        with hsm.lock:
            record = hsm.get_user(name)
            if record is None:
                raise ArgumentsBad(f"user {name} does not exist")
            was_locked = record.locked
            record.password_hash = hsm.passwords.hash(new_password)
            record.failures, record.locked = 0, False
            record.version += 1
            with hsm.store.transaction() as tx:
                hsm.put_user(tx, record)
                tx.audit("password-change", actor.name, user=name, unlocked=was_locked)
            if name == actor.name:
                self.user = record

    def list_users(self) -> list[dict[str, Any]]:
        """Every user: ``{"username", "role", "locked", "failures"}`` sorted by name; needs no login."""
        self.hsm.require_operational()
        return [{"username": u.name, "role": u.role, "locked": u.locked, "failures": u.failures}
                for u in self.hsm.all_users()]

    # ----------------------------------------------------------------- objects
    def create_object(self, handle: int, template: dict[int, Any]) -> int:
        """``C_CreateObject``: import a data object, certificate, public key or secret key.

        Returns:
            The new object's handle.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` for keys without a crypto-user login.
            TemplateIncomplete, TemplateInconsistent, AttributeTypeInvalid, AttributeValueInvalid,
            AttributeReadOnly: the template errors of PKCS#11 3.0 §4.1.2.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token object in a read-only session.
        """
        session = self._session(handle)
        attrs = templates.for_create(self._template(template))
        cls = attrs[CKA.CLASS]
        if cls in (CKO.SECRET_KEY, CKO.PUBLIC_KEY) or attrs.get(CKA.PRIVATE):
            self._require_role(Role.CRYPTO_USER)
        material = b""
        if cls is CKO.SECRET_KEY:
            material = attrs.pop(CKA.VALUE)
            self._secret_attributes(attrs, material)
        elif cls is CKO.PUBLIC_KEY:
            key = crypto.public_key_from_attributes(attrs[CKA.KEY_TYPE], attrs)
            attrs.update(crypto.public_attributes(key))
            material = crypto.public_key_to_der(key)
        return self._create_objects(session, [(attrs, material)], "object-create", cls=cls.name)[0]

    @staticmethod
    def _secret_attributes(attrs: Attributes, value: bytes) -> None:
        """Set ``CKA_VALUE_LEN`` and, for AES keys, ``CKA_CHECK_VALUE`` from the key value."""
        if attrs[CKA.KEY_TYPE] is CKK.AES and len(value) not in (16, 24, 32):
            raise AttributeValueInvalid(f"an AES key is 16, 24 or 32 bytes, got {len(value)}")
        if attrs[CKA.KEY_TYPE] is CKK.GENERIC_SECRET and not 1 <= len(value) <= 800:
            raise AttributeValueInvalid(f"a generic secret is 1-800 bytes, got {len(value)}")
        policy.check_value_len(attrs, len(value))
        attrs[CKA.VALUE_LEN] = len(value)
        if attrs[CKA.KEY_TYPE] is CKK.AES:
            check = crypto.check_value(CKK.AES, value)
            if CKA.CHECK_VALUE in attrs and attrs[CKA.CHECK_VALUE] != check:
                raise AttributeValueInvalid("CKA_CHECK_VALUE does not match the key value")
            attrs[CKA.CHECK_VALUE] = check

    def destroy_object(self, handle: int, obj_handle: int) -> None:
        """``C_DestroyObject``: atomic; on error the object stays usable.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` when ``CKA_DESTROYABLE`` is false or the caller is not
                the owner.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token object in a read-only session.
        """
        session = self._session(handle)
        obj = self._object(obj_handle)
        self._require_writable(session, obj.is_token)
        if obj.is_private or obj.cls in (CKO.SECRET_KEY, CKO.PUBLIC_KEY):
            self._require_role(Role.CRYPTO_USER)
        self._require_owner(obj, "destroy")
        if not obj.flag(CKA.DESTROYABLE):
            raise ActionProhibited("the object has CKA_DESTROYABLE false")
        with self.hsm.lock, self.hsm.store.transaction() as tx:
            tx.audit("object-destroy", self._actor(), handle=obj.handle, token=obj.is_token)
            self.hsm.delete_object(tx, obj)

    def get_attribute_value(self, handle: int, obj_handle: int, types: list[int]) -> list[tuple[int, Any]]:
        """``C_GetAttributeValue``: every requested attribute is processed (PKCS#11 3.0 §5.7).

        Returns:
            For each requested type, ``(CKR_OK, value)`` or ``(CKR_*, None)`` with ``CKR_ATTRIBUTE_SENSITIVE``
            or ``CKR_ATTRIBUTE_TYPE_INVALID``; the caller reports the first non-OK code as the call's result
            and ``CK_UNAVAILABLE_INFORMATION`` as those attributes' lengths.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
        """
        self._session(handle)
        obj = self._object(obj_handle)
        out: list[tuple[int, Any]] = []
        for raw in types:
            try:
                out.append((0, policy.read(obj, attribute_type(raw))))
            except StrongroomError as exc:
                out.append((int(exc.ckr), None))
        return out

    def get_attributes(self, handle: int, obj_handle: int, types: list[int]) -> dict[CKA, Any]:
        """The readable attributes among ``types`` as a dict (a convenience over :meth:`get_attribute_value`).

        Raises:
            the first error any attribute gave (``CKR_ATTRIBUTE_SENSITIVE``, ``CKR_ATTRIBUTE_TYPE_INVALID``).
        """
        from ..errors import error_for

        out = {}
        for raw, (rv, value) in zip(types, self.get_attribute_value(handle, obj_handle, types)):
            if rv:
                raise error_for(rv, f"attribute 0x{raw:x}")
            out[CKA(raw)] = value
        return out

    def set_attribute_value(self, handle: int, obj_handle: int, template: dict[int, Any]) -> None:
        """``C_SetAttributeValue``: owners change their objects; admins may only set ``CKA_TRUSTED``.

        Raises:
            ObjectHandleInvalid, ActionProhibited, AttributeReadOnly, AttributeTypeInvalid,
            AttributeValueInvalid, SessionReadOnly: as PKCS#11 3.0 §5.7 and :func:`policy.check_set` say.
        """
        session = self._session(handle)
        changes = self._template(template)
        admin = self._role() is Role.ADMIN
        if admin:
            try:
                obj = self.hsm.get_object(obj_handle)
            except ObjectHandleInvalid:
                raise ObjectHandleInvalid(f"no object with handle {obj_handle}") from None
        else:
            obj = self._object(obj_handle)
            if obj.is_private or obj.cls in (CKO.SECRET_KEY, CKO.PUBLIC_KEY):
                self._require_role(Role.CRYPTO_USER)
            self._require_owner(obj, "modify")
        self._require_writable(session, obj.is_token)
        attrs = policy.check_set(obj, changes, admin=admin)
        if CKA.LABEL in changes and len(attrs[CKA.LABEL]) > 127:
            raise AttributeValueInvalid("CKA_LABEL is at most 127 characters")
        updated = HsmObject(obj.handle, attrs, obj.material, obj.owner, obj.shared, obj.version + 1, obj.session)
        with self.hsm.lock, self.hsm.store.transaction() as tx:
            tx.audit("attribute-change", self._actor(), handle=obj.handle,
                     attributes=sorted(CKA(k).name for k in changes))
            self.hsm.put_object(tx, updated)

    def share(self, handle: int, obj_handle: int, username: str, *, unshare: bool = False) -> None:
        """Share a key with another crypto user (or, with ``unshare``, stop sharing). Owners only.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for a non-owner.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when the user does not exist or is not a crypto user, or the key
                is not a token key.
        """
        self._session(handle)
        self._require_role(Role.CRYPTO_USER)
        obj = self._object(obj_handle)
        self._require_owner(obj, "share")
        name = check_username(username)
        target = self.hsm.get_user(name)
        if target is None or target.role != Role.CRYPTO_USER.value:
            raise ArgumentsBad(f"{name} is not a crypto user")
        if not obj.is_token or obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY):
            raise ArgumentsBad("only token secret and private keys are shared")
        shared = obj.shared - {name} if unshare else obj.shared | {name}
        updated = HsmObject(obj.handle, obj.attrs, obj.material, obj.owner, frozenset(shared), obj.version + 1)
        with self.hsm.lock, self.hsm.store.transaction() as tx:
            tx.audit("key-unshare" if unshare else "key-share", self._actor(), handle=obj.handle, user=name)
            self.hsm.put_object(tx, updated)

    def key_info(self, handle: int, obj_handle: int) -> dict[str, Any]:
        """Owner and sharing of a visible object: ``{"owner": str, "shared_users": [str]}``."""
        self._session(handle)
        obj = self._object(obj_handle)
        return {"owner": obj.owner, "shared_users": sorted(obj.shared)}

    def find_objects_init(self, handle: int, template: dict[int, Any] | None = None) -> None:
        """``C_FindObjectsInit``: an empty template finds every object the session may see.

        Raises:
            OperationActive: ``CKR_OPERATION_ACTIVE`` when a find is already active.
        """
        session = self._session(handle)
        if session.find is not None:
            raise OperationActive("a find is already active in this session")
        wanted = self._template(template)
        with self.hsm.lock:
            found = [o.handle for o in self.hsm.candidates(wanted)
                     if self._visible(o) and matches(o.attrs, wanted) and not policy.secret_attributes(o) & set(wanted)]
        session.find = sorted(found)

    def find_objects(self, handle: int, max_count: int) -> list[int]:
        """``C_FindObjects``: up to ``max_count`` more handles (an empty list when the find is exhausted).

        Raises:
            OperationNotInitialized: ``CKR_OPERATION_NOT_INITIALIZED`` without an active find.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a negative count.
        """
        session = self._session(handle)
        if session.find is None:
            raise OperationNotInitialized("no active find in this session")
        if max_count < 0:
            raise ArgumentsBad("max_count must be non-negative")
        out, session.find = session.find[:max_count], session.find[max_count:]
        return out

    def find_objects_final(self, handle: int) -> None:
        """``C_FindObjectsFinal``."""
        session = self._session(handle)
        if session.find is None:
            raise OperationNotInitialized("no active find in this session")
        session.find = None

    def find(self, handle: int, template: dict[int, Any] | None = None) -> list[int]:
        """All handles matching ``template`` (Init, FindObjects, Final in one call)."""
        self.find_objects_init(handle, template)
        try:
            return self.find_objects(handle, 1 << 62)
        finally:
            self.find_objects_final(handle)

    # ----------------------------------------------------------------- key management
    def generate_key(self, handle: int, mechanism: Mechanism, template: dict[int, Any]) -> int:
        """``C_GenerateKey``: an AES or generic secret key (``CKA_VALUE_LEN`` bytes) made inside the HSM.

        Raises:
            MechanismInvalid: ``CKR_MECHANISM_INVALID`` for a mechanism that does not generate secret keys.
            TemplateIncomplete, TemplateInconsistent, AttributeTypeInvalid, AttributeReadOnly: template errors.
            KeySizeRange: ``CKR_KEY_SIZE_RANGE`` for a length the key type does not have.
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without a crypto-user login.
        """
        session = self._session(handle)
        self._require_role(Role.CRYPTO_USER)
        if mechanism.mechanism not in templates.KEYGEN_TYPES:
            raise MechanismInvalid(f"mechanism 0x{mechanism.mechanism:x} does not generate secret keys")
        mech = CKM(mechanism.mechanism)
        attrs = templates.for_generate(mech, self._template(template))
        value = crypto.generate_secret(mech, attrs[CKA.VALUE_LEN])
        self._secret_attributes(attrs, value)
        return self._create_objects(session, [(attrs, value)], "key-generate", mechanism=mech.name)[0]

    def generate_key_pair(self, handle: int, mechanism: Mechanism, public_template: dict[int, Any],
                          private_template: dict[int, Any]) -> tuple[int, int]:
        """``C_GenerateKeyPair``: RSA (``CKA_MODULUS_BITS``, ``CKA_PUBLIC_EXPONENT``), EC or Ed25519
        (``CKA_EC_PARAMS``, DER OID) key pairs.

        Returns:
            ``(public key handle, private key handle)``.

        Raises:
            MechanismInvalid, TemplateIncomplete, TemplateInconsistent, KeySizeRange, CurveNotSupported,
            UserNotLoggedIn: as for :meth:`generate_key`.
        """
        session = self._session(handle)
        self._require_role(Role.CRYPTO_USER)
        if mechanism.mechanism not in templates.KEYPAIR_TYPES:
            raise MechanismInvalid(f"mechanism 0x{mechanism.mechanism:x} does not generate key pairs")
        mech = CKM(mechanism.mechanism)
        pub, priv = templates.for_key_pair(mech, self._template(public_template), self._template(private_template))
        exponent = pub.get(CKA.PUBLIC_EXPONENT)
        key = crypto.generate_key_pair(
            mech, modulus_bits=pub.get(CKA.MODULUS_BITS),
            public_exponent=int.from_bytes(exponent, "big") if exponent else 65537,
            ec_params=pub.get(CKA.EC_PARAMS))
        public_attrs = crypto.public_attributes(key)
        pub.update(public_attrs)
        priv.update({k: v for k, v in public_attrs.items() if k in (CKA.MODULUS, CKA.PUBLIC_EXPONENT, CKA.EC_PARAMS)})
        made = [(pub, crypto.public_key_to_der(key.public_key())), (priv, crypto.private_key_to_der(key))]
        public, private = self._create_objects(session, made, "key-generate", mechanism=mech.name)
        return public, private

    def wrap_key(self, handle: int, mechanism: Mechanism, wrapping_key: int, key: int, *,
                 out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_WrapKey``: export a key encrypted under a wrapping key. Only the key's owner may wrap it.

        Raises:
            WrappingKeyHandleInvalid, KeyHandleInvalid: unknown or invisible handles.
            KeyFunctionNotPermitted: ``CKR_KEY_FUNCTION_NOT_PERMITTED`` without ``CKA_WRAP`` on the wrapping key.
            KeyUnextractable: ``CKR_KEY_UNEXTRACTABLE`` for a key with ``CKA_EXTRACTABLE`` false.
            KeyNotWrappable: ``CKR_KEY_NOT_WRAPPABLE`` for wrap-with-trusted or wrap-template violations, or a
                caller who does not own the key.
            BufferTooSmall: ``CKR_BUFFER_TOO_SMALL``.
        """
        self._session(handle)
        wrapper = self._key(wrapping_key, WrappingKeyHandleInvalid)
        target = self._key(key)
        self._mechanism_for(mechanism, CKF.WRAP, wrapper)
        policy.require_usage(wrapper, CKA.WRAP, mechanism.mechanism)
        if target.owner and target.owner != self.user.name:
            raise KeyNotWrappable("only the key's owner may wrap it")
        policy.require_wrappable(target, wrapper)
        wrapped = crypto.wrap(mechanism, self.hsm.key_object(wrapper), target.material)
        if not query and (out_len is None or out_len >= len(wrapped)):
            with self.hsm.store.transaction() as tx:
                tx.audit("key-wrap", self._actor(), handle=target.handle, wrapping_key=wrapper.handle,
                         mechanism=CKM(mechanism.mechanism).name)
        return deliver(wrapped, out_len, query)

    def unwrap_key(self, handle: int, mechanism: Mechanism, unwrapping_key: int, wrapped: bytes,
                   template: dict[int, Any]) -> int:
        """``C_UnwrapKey``: import a wrapped secret key or PKCS#8 private key.

        The unwrapping key's ``CKA_UNWRAP_TEMPLATE`` is applied to the new key. The key gets ``CKA_LOCAL``,
        ``CKA_ALWAYS_SENSITIVE`` and ``CKA_NEVER_EXTRACTABLE`` false.

        Raises:
            UnwrappingKeyHandleInvalid: unknown or invisible unwrapping key.
            KeyFunctionNotPermitted: without ``CKA_UNWRAP`` on the unwrapping key.
            WrappedKeyInvalid, WrappedKeyLenRange: the wrapped bytes do not unwrap to a key of the template's type.
            TemplateIncomplete, TemplateInconsistent: template errors (``CKA_CLASS``, ``CKA_KEY_TYPE`` required).
        """
        session = self._session(handle)
        unwrapper = self._key(unwrapping_key, UnwrappingKeyHandleInvalid)
        self._mechanism_for(mechanism, CKF.UNWRAP, unwrapper)
        policy.require_usage(unwrapper, CKA.UNWRAP, mechanism.mechanism)
        forced = unwrapper.attrs.get(CKA.UNWRAP_TEMPLATE) or {}
        attrs = templates.for_unwrap(self._template(template), forced)
        material = crypto.unwrap(mechanism, self.hsm.key_object(unwrapper), bytes(wrapped))
        if attrs[CKA.CLASS] is CKO.SECRET_KEY:
            try:
                self._secret_attributes(attrs, material)
            except AttributeValueInvalid as exc:
                raise WrappedKeyInvalid(f"the unwrapped key does not fit the template: {exc.message}") from None
        else:
            key = crypto.private_key_from_der(material)
            public_attrs = crypto.public_attributes(key)
            expected = {CKK.RSA: "RSA", CKK.EC: "EllipticCurve", CKK.EC_EDWARDS: "Ed25519"}[attrs[CKA.KEY_TYPE]]
            if expected not in type(key).__name__:
                raise WrappedKeyInvalid("the unwrapped private key is not of the template's CKA_KEY_TYPE")
            attrs.update({k: v for k, v in public_attrs.items()
                          if k in (CKA.MODULUS, CKA.PUBLIC_EXPONENT, CKA.EC_PARAMS)})
            material = crypto.private_key_to_der(key)
        return self._create_objects(session, [(attrs, material)], "key-unwrap",
                                    unwrapping_key=unwrapper.handle, mechanism=CKM(mechanism.mechanism).name)[0]

    def derive_key(self, handle: int, mechanism: Mechanism, base_key: int, template: dict[int, Any]) -> int:
        """``C_DeriveKey``: ECDH (``CKM_ECDH1_DERIVE``) or NIST SP 800-108 counter KDF into a new secret key.

        Raises:
            KeyHandleInvalid: unknown or invisible base key.
            KeyFunctionNotPermitted: without ``CKA_DERIVE`` on the base key.
            MechanismParamInvalid: bad parameters.
            TemplateIncomplete, TemplateInconsistent: template errors (``CKA_KEY_TYPE``, ``CKA_VALUE_LEN``).
        """
        session = self._session(handle)
        base = self._key(base_key)
        self._mechanism_for(mechanism, CKF.DERIVE, base)
        policy.require_usage(base, CKA.DERIVE, mechanism.mechanism)
        attrs = templates.for_derive(self._template(template), base.attrs)
        value = crypto.derive(mechanism, self.hsm.key_object(base), attrs[CKA.VALUE_LEN])
        self._secret_attributes(attrs, value)
        return self._create_objects(session, [(attrs, value)], "key-derive", base_key=base.handle,
                                    mechanism=CKM(mechanism.mechanism).name)[0]

    def generate_random(self, handle: int, length: int) -> bytes:
        """``C_GenerateRandom``: ``length`` bytes from the OS CSPRNG under the continuous health test."""
        self._session(handle)
        if length < 0:
            raise ArgumentsBad("length must be non-negative")
        try:
            return crypto.random_bytes(length)
        except StrongroomError as exc:
            self.hsm.enter_error(f"random source failed its health test: {exc.message}")
            raise

    # ----------------------------------------------------------------- operations
    def _init(self, handle: int, kind: OpKind, mechanism: Mechanism, key_handle: int) -> ActiveOperation:
        session = self._session(handle)
        if kind in session.ops:
            raise OperationActive(f"a {kind.value} operation is already active in this session")
        if kind is OpKind.DIGEST:
            self._mechanism_for(mechanism, _FLAG[kind], None)
            op = crypto.digest_init(mechanism)
            key = 0
        else:
            obj = self._key(key_handle)
            self._mechanism_for(mechanism, _FLAG[kind], obj)
            policy.require_usage(obj, _USAGE[kind], mechanism.mechanism)
            op = _INIT[kind](mechanism, self.hsm.key_object(obj))
            key = obj.handle
        active = ActiveOperation(kind, mechanism.mechanism, op, key)
        session.ops[kind] = active
        return active

    def _active(self, handle: int, kind: OpKind) -> tuple[Session, ActiveOperation]:
        session = self._session(handle)
        active = session.ops.get(kind)
        if active is None:
            raise OperationNotInitialized(f"no {kind.value} operation is active in this session")
        return session, active

    def _run(self, session: Session, active: ActiveOperation, fn: Any) -> Any:
        """Run a step; any error but a short buffer ends the operation (PKCS#11 3.0 §5.2)."""
        try:
            return fn()
        except BufferTooSmall:
            raise
        except BaseException:
            session.ops.pop(active.kind, None)
            raise

    def _single(self, handle: int, kind: OpKind, data: bytes, out_len: int | None, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)
        if active.multi:
            raise OperationActive(f"a multi-part {kind.value} is in progress; finish it with the Final call")
        data = bytes(data)

        def step() -> bytes | int:
            if active.final is None or active.final_input != data:
                if active.final is not None:
                    raise OperationActive("the operation's result for other data awaits delivery")
                active.final = active.op.oneshot(data) if kind in (OpKind.ENCRYPT, OpKind.DECRYPT) else \
                    self._update_final(active, data)
                active.final_input = data
            out = deliver(active.final, out_len, query)
            if not query:
                session.ops.pop(kind, None)
            return out

        return self._run(session, active, step)

    @staticmethod
    def _update_final(active: ActiveOperation, data: bytes) -> bytes:
        active.op.update(data)
        return active.op.final()

    def _update(self, handle: int, kind: OpKind, data: bytes, out_len: int | None, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)
        data = bytes(data)

        def step() -> bytes | int:
            active.multi = True
            if kind in (OpKind.ENCRYPT, OpKind.DECRYPT):
                size = active.op.update_size(len(data))
                if query:
                    return size
                if out_len is not None and out_len < size:
                    raise BufferTooSmall(size)
                return active.op.update(data)
            active.op.update(data)
            return b""

        return self._run(session, active, step)

    def _final(self, handle: int, kind: OpKind, out_len: int | None, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)

        def step() -> bytes | int:
            if active.final is None:
                active.final = active.op.final()
            out = deliver(active.final, out_len, query)
            if not query:
                session.ops.pop(kind, None)
            return out

        return self._run(session, active, step)

    def encrypt_init(self, handle: int, mechanism: Mechanism, key: int) -> bytes | None:
        """``C_EncryptInit``. Returns the HSM-generated IV when an AES-GCM mechanism asked for one, else ``None``.

        Raises:
            OperationActive, KeyHandleInvalid, MechanismInvalid, KeyTypeInconsistent, KeyFunctionNotPermitted,
            MechanismParamInvalid, UserNotLoggedIn.
        """
        active = self._init(handle, OpKind.ENCRYPT, mechanism, key)
        return getattr(active.op, "generated_iv", None)

    def encrypt(self, handle: int, data: bytes, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_Encrypt`` (single part). Raises ``CKR_DATA_LEN_RANGE`` for input the mechanism cannot take."""
        return self._single(handle, OpKind.ENCRYPT, data, out_len, query)

    def encrypt_update(self, handle: int, data: bytes, *, out_len: int | None = None,
                       query: bool = False) -> bytes | int:
        """``C_EncryptUpdate``."""
        return self._update(handle, OpKind.ENCRYPT, data, out_len, query)

    def encrypt_final(self, handle: int, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_EncryptFinal``."""
        return self._final(handle, OpKind.ENCRYPT, out_len, query)

    def decrypt_init(self, handle: int, mechanism: Mechanism, key: int) -> None:
        """``C_DecryptInit``."""
        self._init(handle, OpKind.DECRYPT, mechanism, key)

    def decrypt(self, handle: int, data: bytes, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_Decrypt``. Raises ``CKR_ENCRYPTED_DATA_INVALID`` / ``CKR_ENCRYPTED_DATA_LEN_RANGE``."""
        return self._single(handle, OpKind.DECRYPT, data, out_len, query)

    def decrypt_update(self, handle: int, data: bytes, *, out_len: int | None = None,
                       query: bool = False) -> bytes | int:
        """``C_DecryptUpdate``."""
        return self._update(handle, OpKind.DECRYPT, data, out_len, query)

    def decrypt_final(self, handle: int, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_DecryptFinal``."""
        return self._final(handle, OpKind.DECRYPT, out_len, query)

    def digest_init(self, handle: int, mechanism: Mechanism) -> None:
        """``C_DigestInit``."""
        self._init(handle, OpKind.DIGEST, mechanism, 0)

    def digest(self, handle: int, data: bytes, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_Digest``."""
        return self._single(handle, OpKind.DIGEST, data, out_len, query)

    def digest_update(self, handle: int, data: bytes) -> None:
        """``C_DigestUpdate``."""
        self._update(handle, OpKind.DIGEST, data, None, False)

    def digest_final(self, handle: int, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_DigestFinal``."""
        return self._final(handle, OpKind.DIGEST, out_len, query)

    def sign_init(self, handle: int, mechanism: Mechanism, key: int) -> None:
        """``C_SignInit`` (signatures and MACs)."""
        self._init(handle, OpKind.SIGN, mechanism, key)

    def sign(self, handle: int, data: bytes, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_Sign``: the signature (raw r‖s for ECDSA, PKCS#11 3.0 §2.3.1) or MAC."""
        return self._single(handle, OpKind.SIGN, data, out_len, query)

    def sign_update(self, handle: int, data: bytes) -> None:
        """``C_SignUpdate``."""
        self._update(handle, OpKind.SIGN, data, None, False)

    def sign_final(self, handle: int, *, out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_SignFinal``."""
        return self._final(handle, OpKind.SIGN, out_len, query)

    def verify_init(self, handle: int, mechanism: Mechanism, key: int) -> None:
        """``C_VerifyInit``."""
        self._init(handle, OpKind.VERIFY, mechanism, key)

    def verify(self, handle: int, data: bytes, signature: bytes) -> None:
        """``C_Verify``: returns on a valid signature; raises ``CKR_SIGNATURE_INVALID`` or
        ``CKR_SIGNATURE_LEN_RANGE``. The operation ends either way."""
        session, active = self._active(handle, OpKind.VERIFY)
        if active.multi:
            raise OperationActive("a multi-part verify is in progress; finish it with C_VerifyFinal")
        try:
            active.op.update(bytes(data))
            active.op.final(bytes(signature))
        finally:
            session.ops.pop(OpKind.VERIFY, None)

    def verify_update(self, handle: int, data: bytes) -> None:
        """``C_VerifyUpdate``."""
        self._update(handle, OpKind.VERIFY, data, None, False)

    def verify_final(self, handle: int, signature: bytes) -> None:
        """``C_VerifyFinal``."""
        session, active = self._active(handle, OpKind.VERIFY)
        try:
            active.op.final(bytes(signature))
        finally:
            session.ops.pop(OpKind.VERIFY, None)

    # ----------------------------------------------------------------- appliance and admin functions
    def verify_audit(self) -> Any:
        """Verify the audit chain (admins and the appliance user). Returns an ``AuditReport``."""
        self.hsm.require_operational()
        self._require_role(Role.ADMIN, Role.APPLIANCE)
        return self.hsm.store.verify_audit()

    def export_audit(self, after_seq: int = 0) -> list[Any]:
        """Audit entries with sequence numbers above ``after_seq`` (admins and the appliance user), in order.

        The collector re-verifies the links itself: each entry carries its previous digest and its own.
        """
        self.hsm.require_operational()
        self._require_role(Role.ADMIN, Role.APPLIANCE)
        return self.hsm.store.audit_entries(after_seq)

    def hsm_info(self) -> dict[str, Any]:
        """Node information (``get_hsm_info``); needs no login and answers in every state."""
        return self.hsm.info()

    def zeroize(self, handle: int) -> None:
        """Erase the masking key, every object and user (admins only); the audit chain records it."""
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        self.hsm.zeroize(actor=actor.name)
        self.sessions.clear()
        self.user = self.user_type = None
