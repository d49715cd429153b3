"""State and checks shared by every part of :class:`~strongroom.node.application.Application`."""

from __future__ import annotations

from typing import Any

from .. import crypto
from ..mechanism_params import Mechanism
from ..errors import (
    ActionProhibited,
    KeyTypeInconsistent,
    MechanismInvalid,
    ObjectHandleInvalid,
    SessionHandleInvalid,
    SessionReadOnly,
    StrongroomError,
    UserNotLoggedIn,
)
from ..objects.model import HsmObject
from ..vocab import CKF, CKK, CKM, CKO
from . import arguments
from .hsm import HSM
from .sessions import Session
from .users import Role, UserRecord

FUNCTION_NAMES = {CKF.ENCRYPT: "encryption", CKF.DECRYPT: "decryption", CKF.SIGN: "signing",
                  CKF.VERIFY: "verification", CKF.DIGEST: "digesting", CKF.WRAP: "wrapping",
                  CKF.UNWRAP: "unwrapping", CKF.DERIVE: "derivation", CKF.GENERATE: "key generation",
                  CKF.GENERATE_KEY_PAIR: "key pair generation"}


class ApplicationBase:
    """One application (client connection) of an :class:`~strongroom.node.hsm.HSM`.

    Attributes:
        user: the logged-in user's record, or ``None``.
        user_type: the ``CKU`` the application logged in as.
        peer: description of the client (address, uid, pid) for the audit trail of logins.
    """

    def __init__(self, hsm: HSM, app_id: int, peer: str = "") -> None:
        self.hsm = hsm
        self.id = app_id
        self.peer = peer
        self.address = peer  # the connection's own address; ``peer`` adds the application a client agent names
        self.appliance_certificate = False  # the connection presented the fleet's appliance identity (TLS)
        self.sessions: dict[int, Session] = {}
        self.user: UserRecord | None = None
        self.user_type: int | None = None
        self.role: Role | None = None
        self._epoch = 0

    def _session(self, handle: Any) -> Session:
        """The open session ``handle``; also ends a login the node revoked (user deleted or reset)."""
        self.hsm.require_operational()
        handle = arguments.ulong(handle, "session handle")
        session = self.sessions.get(handle)
        if session is None:
            raise SessionHandleInvalid(f"no open session {handle}")
        if self.user is not None and self.hsm.login_epoch(self.user.name) != self._epoch:
            self._logged_out()
        return session

    def _logged_in(self, record: UserRecord, user_type: int) -> None:
        self.user, self.user_type, self.role = record, user_type, Role(record.role)
        self._epoch = self.hsm.login_epoch(record.name)

    def _logged_out(self) -> None:
        """End the login: active operations and finds stop, private session objects go (PKCS#11 3.0 §5.6)."""
        self.user = self.user_type = self.role = None
        for session in self.sessions.values():
            session.ops.clear()
            session.find = None
        self.hsm.drop_session_objects(self.id, private_only=True)

    def _actor(self) -> str:
        return self.user.name if self.user else ""

    def _role(self) -> Role | None:
        return self.role

    def _require_role(self, *roles: Role) -> UserRecord:
        if self.user is None or self._role() not in roles:
            names = " or ".join(r.value for r in roles)
            raise UserNotLoggedIn(f"this needs a {names} login")
        return self.user

    def _may_use(self, obj: HsmObject) -> bool:
        """Whether the logged-in user may see and use ``obj``.

        Session objects belong to their application. Keys holding secret material belong to their owner and
        the users it shared them with. Other objects are the logged-in crypto user's if ``CKA_PRIVATE`` is
        true, everyone's otherwise.
        """
        if obj.session is not None and obj.session[0] != self.id:
            return False
        user = self.user
        crypto_user = user is not None and self._role() is Role.CRYPTO_USER
        if obj.cls in (CKO.SECRET_KEY, CKO.PRIVATE_KEY) or obj.is_private:
            return crypto_user and (not obj.owner or obj.owner == user.name or user.name in obj.shared)
        return True

    def _object(self, handle: Any, invalid: type[StrongroomError] = ObjectHandleInvalid) -> HsmObject:
        handle = arguments.ulong(handle, "object handle")
        try:
            obj = self.hsm.get_object(handle)
        except ObjectHandleInvalid:
            raise invalid(f"no object with handle {handle}") from None
        if not self._may_use(obj):
            raise invalid(f"no object with handle {handle}")
        return obj

    def _key(self, handle: Any, invalid: type[StrongroomError]) -> HsmObject:
        """A key the logged-in crypto user may use; ``invalid`` is the error for a handle that is not one."""
        self._require_role(Role.CRYPTO_USER)
        obj = self._object(handle, invalid)
        if obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY, CKO.PUBLIC_KEY):
            raise invalid(f"object {obj.handle} is not a key")
        return obj

    def _require_owner(self, obj: HsmObject, what: str) -> None:
        if obj.owner and (self.user is None or obj.owner != self.user.name):
            raise ActionProhibited(f"only the key's owner may {what} it")

    @staticmethod
    def _require_writable(session: Session, token: bool = True) -> None:
        if token and not session.rw:
            raise SessionReadOnly("this changes token state and needs a read-write session")

    @staticmethod
    def _mechanism(mechanism: Any, function: CKF, key: HsmObject | None) -> tuple[Mechanism, crypto.MechanismInfo]:
        """Check a mechanism serves ``function`` and takes ``key``'s type.

        Raises:
            MechanismInvalid: ``CKR_MECHANISM_INVALID``.
            MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID`` for a malformed parameter.
            KeyTypeInconsistent: ``CKR_KEY_TYPE_INCONSISTENT``.
        """
        mechanism = arguments.mechanism(mechanism)
        info = crypto.info(mechanism.mechanism)
        if not info.flags & function:
            raise MechanismInvalid(f"{info.mechanism.name} cannot be used for {FUNCTION_NAMES[function]}")
        if key is not None and key.key_type not in info.key_types:
            raise KeyTypeInconsistent(f"{info.mechanism.name} does not take a CKK_{CKK(key.key_type).name} key")
        return mechanism, info

    @staticmethod
    def _mechanism_name(mechanism: Mechanism) -> str:
        try:
            return CKM(mechanism.mechanism).name
        except ValueError:
            return f"0x{mechanism.mechanism:x}"
