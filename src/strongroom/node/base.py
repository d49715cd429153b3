"""What every call group of :class:`~strongroom.node.application.Application` shares: the connection's state
(its sessions and login) and the checks every call makes (session, role, object visibility, key, mechanism),
plus the making of new objects that object and key calls share.

The call groups, one module per PKCS#11 chapter, are mixins over :class:`ApplicationBase`; a check a call
makes (``self._key``, ``self._session`` …) is defined here.
"""

from __future__ import annotations

from typing import Any

from .. import crypto
from ..errors import (
    ActionProhibited,
    AttributeValueInvalid,
    DeviceMemory,
    FunctionFailed,
    KeyTypeInconsistent,
    MechanismInvalid,
    ObjectHandleInvalid,
    SessionClosed,
    SessionHandleInvalid,
    SessionReadOnly,
    StrongroomError,
    UserNotLoggedIn,
)
from ..mechanism_catalogue import MechanismInfo, check_mode
from ..mechanism_catalogue import info as mechanism_info
from ..mechanism_params import Mechanism
from ..objects import policy
from ..objects.attributes import HMAC_KEY_TYPES, Attributes, normalize_template
from ..objects.model import HsmObject
from ..replication import Change
from ..vocab import CKA, CKF, CKK, CKM, CKO
from . import arguments
from .boundary import HSM
from .commit import RequestContext
from .peer import NONE, PeerIdentity
from .public_objects import open_to_public_sessions
from .sessions import Session
from .users import Role, UserRecord

SECRET_BYTES = {CKK.AES: (16, 24, 32), CKK.GENERIC_SECRET: range(1, 801),
                **dict.fromkeys(HMAC_KEY_TYPES, range(1, 801))}


FUNCTION_NAMES = {CKF.ENCRYPT: "encryption", CKF.DECRYPT: "decryption", CKF.SIGN: "signing",
                  CKF.VERIFY: "verification", CKF.DIGEST: "digesting", CKF.WRAP: "wrapping",
                  CKF.UNWRAP: "unwrapping", CKF.DERIVE: "derivation", CKF.GENERATE: "key generation",
                  CKF.GENERATE_KEY_PAIR: "key pair generation"}


class ApplicationBase:
    """One application (client connection) of an :class:`~strongroom.node.boundary.HSM`.

    Attributes:
        user: the logged-in user's record, or ``None``.
        user_type: the ``CKU`` the application logged in as.
        identity: who the connection is (:class:`~strongroom.node.peer.PeerIdentity`).
        peer: the ``peer`` every audit entry of this application records: the identity's address, certificate
            subject and fingerprint, and after a login the application process a client names
            (:meth:`~strongroom.node.peer.PeerIdentity.audit`).
    """

    def __init__(self, hsm: HSM, peer: PeerIdentity | str = "") -> None:
        self.hsm = hsm
        self.identity = peer if isinstance(peer, PeerIdentity) else PeerIdentity(peer or NONE)
        self.peer = self.identity.audit()
        self.appliance_certificate = False  # the connection presented the fleet's appliance identity (TLS)
        self.sessions: dict[int, Session] = {}
        self.user: UserRecord | None = None
        self.user_type: int | None = None
        self.role: Role | None = None
        self._epoch = 0
        self.id = hsm.attach(self)

    def _session(self, handle: Any) -> Session:
        """The open session ``handle``; also ends a login the node revoked (user deleted or reset)."""
        self.hsm.require_operational()
        handle = arguments.ulong(handle, "session handle")
        session = self.sessions.get(handle)
        if session is None:
            raise SessionHandleInvalid(f"no open session {handle}")
        if self.user is not None and self.hsm.repository.login_epoch(self.user.name) != self._epoch:
            self._logged_out()
        return session

    def _logged_in(self, record: UserRecord, user_type: int) -> None:
        self.user, self.user_type, self.role = record, user_type, Role(record.role)
        self._epoch = self.hsm.repository.login_epoch(record.name)

    def _logged_out(self) -> None:
        """End the login: active operations and finds stop, private session objects go (PKCS#11 3.0 §5.6)."""
        self.user = self.user_type = self.role = None
        for session in self.sessions.values():
            session.ops.clear()
            session.find = None
        self.hsm.repository.drop_session_objects(self.id, private_only=True)

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
        """Whether this application, as logged in now, may see and use ``obj`` (docs/pkcs11.md "Public objects").

        Session objects belong to their application: its public ones (``CKA_PRIVATE`` false) are usable whoever
        is logged in, or nobody, its private ones only by their crypto user. Token objects with ``CKA_PRIVATE``
        false that hold no secret (data, certificates, public keys) are everyone's, logged in or not. Token
        secret and private keys, whatever ``CKA_PRIVATE`` says, and other private token objects are their
        owner's and the users it shared them with, once logged in.
        """
        if obj.session is not None:
            if obj.session[0] != self.id:
                return False
            if not obj.is_private:
                return True
        elif not obj.is_private and obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY):
            return True
        user = self.user
        if user is None or self._role() is not Role.CRYPTO_USER:
            return False
        return not obj.owner or obj.owner == user.name or user.name in obj.shared

    def _object(self, handle: Any, invalid: type[StrongroomError] = ObjectHandleInvalid) -> HsmObject:
        handle = arguments.ulong(handle, "object handle")
        try:
            obj = self.hsm.repository.get_object(handle)
        except ObjectHandleInvalid:
            raise invalid(f"no object with handle {handle}") from None
        if not self._may_use(obj):
            raise invalid(f"no object with handle {handle}")
        return obj

    def _key(self, handle: Any, invalid: type[StrongroomError]) -> HsmObject:
        """A key this application may use; ``invalid`` is the error for a handle that is not one.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without a crypto-user login for a key that is not public
                to this application.
        """
        try:
            obj = self._object(handle, invalid)
        except StrongroomError:
            self._require_role(Role.CRYPTO_USER)
            raise
        if obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY, CKO.PUBLIC_KEY):
            raise invalid(f"object {obj.handle} is not a key")
        return obj

    def _family(self, obj: HsmObject) -> list[HsmObject]:
        """Every key in the HSM holding ``obj``'s value, ``obj`` included when stored (for the key-separation rules
        of :mod:`strongroom.objects.separation`): secret and private keys of the same material, and for RSA the
        public and private keys of the same modulus. ``obj`` need not be stored (a key about to be made)."""
        family = {other.handle: other for other in self.hsm.repository.same_value(obj)}
        if obj.handle in family:
            family[obj.handle] = obj
        return list(family.values())

    @staticmethod
    def _versions(family: list[HsmObject]) -> list[tuple[int, int]]:
        """The ``(handle, version)`` of the token keys among ``family``: a change judged by the key-separation
        rules expects them unchanged when the log applies it (a concurrent change to the family is judged
        again, or refused)."""
        return [(m.handle, m.version) for m in family if m.is_token]

    def _require_unchanged(self, expected: list[tuple[int, int]]) -> None:
        """Check token objects still have the versions a change was judged against.

        Raises:
            FunctionFailed: ``CKR_FUNCTION_FAILED`` (retry) when one changed or went.
        """
        for handle, version in expected:
            try:
                current = self.hsm.repository.get_object(handle).version
            except ObjectHandleInvalid:
                current = 0
            if current != version:
                raise FunctionFailed(f"object {handle} changed while this change was made; retry")

    def _require_object_rights(self, attrs: Attributes) -> None:
        """Making, changing or destroying an object with ``attrs`` needs a logged-in crypto user unless it is a
        public session object (:func:`~strongroom.node.public_objects.open_to_public_sessions`, the one rule).

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN``.
        """
        if not open_to_public_sessions(attrs):
            self._require_role(Role.CRYPTO_USER)

    def _require_owner(self, obj: HsmObject, what: str) -> None:
        """Token objects are managed by their owner; session objects by their application (which alone sees
        them, and whose private ones go at logout).

        Raises:
            ActionProhibited: ``CKR_ACTION_PROHIBITED``.
        """
        if obj.session is None and obj.owner and (self.user is None or obj.owner != self.user.name):
            raise ActionProhibited(f"only the key's owner may {what} it")

    @staticmethod
    def _require_writable(session: Session, token: bool = True) -> None:
        if token and not session.rw:
            raise SessionReadOnly("this changes token state and needs a read-write session")

    def _mechanism(self, mechanism: Any, function: CKF, key: HsmObject | None) -> tuple[Mechanism, MechanismInfo]:
        """Check a mechanism serves ``function`` and takes ``key``'s type, in the cluster's mode
        (:func:`strongroom.mechanism_catalogue.check_mode`).

        Raises:
            MechanismInvalid: ``CKR_MECHANISM_INVALID``, also for a mechanism or function the mode refuses.
            MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID`` for a malformed parameter (whether its fields
                agree is :func:`strongroom.mechanism_rules.check`'s, which callers run once the key's usage is
                checked).
            KeyTypeInconsistent: ``CKR_KEY_TYPE_INCONSISTENT``.
            KeySizeRange: ``CKR_KEY_SIZE_RANGE`` for an RSA key below 2048 bits in a ``FIPS`` cluster.
        """
        mechanism = arguments.mechanism(mechanism)
        mode = self.hsm.machine.mode()
        info = mechanism_info(mechanism.mechanism, mode)
        if not info.flags & function:
            served = mechanism_info(mechanism.mechanism).flags & function
            legacy = " in a FIPS cluster (NON_FIPS only)" if served else ""
            raise MechanismInvalid(f"{info.mechanism.name} cannot be used for {FUNCTION_NAMES[function]}{legacy}")
        if key is not None and key.key_type not in info.key_types:
            name = "none" if key.key_type is None else CKK(key.key_type).name
            raise KeyTypeInconsistent(f"{info.mechanism.name} does not take a CKK_{name} key")
        if key is not None and key.key_type == CKK.RSA:
            modulus = key.attrs.get(CKA.MODULUS, b"")
            bits = (int.from_bytes(modulus, "big").bit_length() if modulus
                    else getattr(self.hsm.repository.key_object(key), "key_size", None))
            check_mode(mode, info, function, bits)
        return mechanism, info

    @staticmethod
    def _mechanism_name(mechanism: Mechanism) -> str:
        try:
            return CKM(mechanism.mechanism).name
        except ValueError:
            return f"0x{mechanism.mechanism:x}"

    # ----------------------------------------------------------------- new objects (object and key calls)
    @staticmethod
    def _template(template: Any) -> Attributes:
        return normalize_template(arguments.template(template))

    @staticmethod
    def _secret_attributes(attrs: Attributes, value: bytes) -> None:
        """Set ``CKA_VALUE_LEN`` and, for AES keys, ``CKA_CHECK_VALUE`` from the key value.

        Raises:
            AttributeValueInvalid: ``CKR_ATTRIBUTE_VALUE_INVALID`` for a length the key type does not have, or
                a given ``CKA_VALUE_LEN``/``CKA_CHECK_VALUE`` that does not match the value.
        """
        key_type = attrs[CKA.KEY_TYPE]
        if len(value) not in SECRET_BYTES[key_type]:
            sizes = "16, 24 or 32" if key_type is CKK.AES else "1-800"
            raise AttributeValueInvalid(f"a CKK_{key_type.name} key is {sizes} bytes, got {len(value)}")
        policy.check_value_len(attrs, len(value))
        attrs[CKA.VALUE_LEN] = len(value)
        if key_type is CKK.AES:
            check = crypto.check_value(CKK.AES, value)
            if CKA.CHECK_VALUE in attrs and attrs[CKA.CHECK_VALUE] != check:
                raise AttributeValueInvalid("CKA_CHECK_VALUE does not match the key value")
            attrs[CKA.CHECK_VALUE] = check

    def _new_object(self, session: Session, attrs: Attributes, material: bytes) -> HsmObject:
        token = bool(attrs.get(CKA.TOKEN))
        handle = self.hsm.repository.new_handle(token)
        attrs = {**attrs, CKA.UNIQUE_ID: f"{handle:x}"}  # PKCS#11 3.0 §4.4: token-assigned, never reused
        owner = self.user.name if self.user and self._role() is Role.CRYPTO_USER else ""
        return HsmObject(handle, attrs, material, owner, session=None if token else (self.id, session.handle))

    def _create_objects(self, session: Session, made: list[tuple[Attributes, bytes]], event: str,
                        request: RequestContext | None, *, family: list[HsmObject] | None = None,
                        **detail: Any) -> list[int]:
        """Store new objects and audit their creation in one change; return their handles.

        ``family``: the keys already holding the new key's value, as the key-separation rules judged them; the
        change is refused (``CKR_FUNCTION_FAILED``, retry) if one of those token keys changed meanwhile.

        Token objects are committed through the log; a retried request (same request key) answers with the
        handles its first attempt created.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` for anything but a public session object without a
                crypto-user login (:meth:`_require_object_rights`).
            DeviceMemory: ``CKR_DEVICE_MEMORY`` when the token store is full, or past the public session
                objects' caps.
        """
        hsm = self.hsm
        tokens = sum(bool(attrs.get(CKA.TOKEN)) for attrs, _ in made)
        for attrs, _ in made:
            self._require_object_rights(attrs)
            self._require_writable(session, bool(attrs.get(CKA.TOKEN)))
        if hsm.token_objects + tokens > hsm.settings.max_token_objects:
            raise DeviceMemory(f"the token store is full ({hsm.settings.max_token_objects} objects)")
        objects = [self._new_object(session, attrs, material) for attrs, material in made]
        hsm.repository.check_public_room(self.id, objects)
        change = Change(max_objects=hsm.settings.max_token_objects)
        change.expect_objects.extend(self._versions(family or []))
        change.add_audit(event, self._actor(), peer=self.peer, handles=[o.handle for o in objects],
                         token=[o.is_token for o in objects], **detail)
        for obj in objects:
            if obj.is_token:
                hsm.repository.put_object(change, obj, new=True)
        outcome = hsm.commit(change, request=request)
        created = iter(outcome.created if outcome.duplicate else [o.handle for o in objects if o.is_token])
        if self.sessions.get(session.handle) is not session:
            raise SessionClosed("the session closed while the object was being made")
        if change.empty:  # no log entry checked the family: session objects only, checked here
            self._require_unchanged(change.expect_objects)
        handles = []
        for obj in objects:
            if obj.is_token:
                handles.append(next(created))
            else:
                hsm.repository.put_object(None, obj)
                handles.append(obj.handle)
        return handles
