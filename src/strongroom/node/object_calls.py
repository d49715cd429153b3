"""Object calls (PKCS#11 3.0 §5.7): create, destroy, read and change attributes, find; sharing of keys."""

from __future__ import annotations

from typing import Any

from .. import crypto
from ..errors import (
    ActionProhibited,
    ArgumentsBad,
    AttributeReadOnly,
    ObjectHandleInvalid,
    OperationActive,
    OperationNotInitialized,
    StrongroomError,
    error_for,
)
from ..objects import policy, separation, templates
from ..objects.attributes import RSA_PRIVATE_COMPONENTS, attribute_type, matches
from ..objects.model import HsmObject
from ..replication import Change
from ..vocab import CKA, CKO
from . import arguments
from .base import ApplicationBase
from .commit import RequestContext
from .users import Role, check_username

# Attributes a C_CopyObject template may set besides those C_SetAttributeValue may change (PKCS#11 3.0 §5.7).
_COPY_STORAGE = (CKA.TOKEN, CKA.PRIVATE, CKA.MODIFIABLE, CKA.COPYABLE, CKA.DESTROYABLE)


class ObjectCalls(ApplicationBase):
    def _require_manage(self, obj: HsmObject, what: str) -> None:
        """Everything but public session objects is managed by its owning crypto user only."""
        self._require_object_rights(obj.attrs)
        self._require_owner(obj, what)

    # ----------------------------------------------------------------- calls
    def create_object(self, handle: int, template: dict[int, Any], *,
                      request: RequestContext | None = None) -> int:
        """``C_CreateObject``: import a data object, certificate, public key or secret key.

        Returns:
            The new object's handle.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` for anything but a public session object (``CKA_TOKEN``
                and ``CKA_PRIVATE`` false, any class) without a crypto-user login; the crypto user owns it.
            DeviceMemory: ``CKR_DEVICE_MEMORY`` past the public session objects' caps
                (:mod:`strongroom.node.public_objects`) or with the token store full.
            TemplateIncomplete, TemplateInconsistent, AttributeTypeInvalid, AttributeValueInvalid,
            AttributeReadOnly: the template errors of PKCS#11 3.0 §4.1.2.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token object in a read-only session.
        """
        session = self._session(handle)
        attrs = templates.for_create(self._template(template))
        cls = attrs[CKA.CLASS]
        self._require_object_rights(attrs)
        material = b""
        if cls is CKO.SECRET_KEY:
            material = attrs.pop(CKA.VALUE)
            self._secret_attributes(attrs, material)
        elif cls is CKO.PUBLIC_KEY:
            key = crypto.public_key_from_attributes(attrs[CKA.KEY_TYPE], attrs)
            attrs.update(crypto.public_attributes(key))
            material = crypto.public_key_to_der(key)
        # no key-separation rule here: whoever gives a value in clear knows it (C_WrapKey judges its uses)
        return self._create_objects(session, [(attrs, material)], "object-create", request, cls=cls.name)[0]

    def copy_object(self, handle: int, obj_handle: int, template: dict[int, Any], *,
                    request: RequestContext | None = None) -> int:
        """``C_CopyObject`` (PKCS#11 3.0 §5.7): a new object with the source's attributes and key material.

        ``template`` may set ``CKA_TOKEN`` and ``CKA_PRIVATE`` (a token key holding secret material stays its
        owner's whatever ``CKA_PRIVATE`` says), turn ``CKA_MODIFIABLE``, ``CKA_COPYABLE`` and ``CKA_DESTROYABLE``
        to false, and change what ``C_SetAttributeValue`` may change, with the same one-way rules
        (``CKA_SENSITIVE`` only to true, ``CKA_EXTRACTABLE`` only to false). Owners only, like every change to
        a token key. A copy is never ``CKA_TRUSTED``, and takes the key-separation rules of a key joining its
        value's family (:func:`strongroom.objects.separation.check_new_member`).

        Returns:
            The copy's handle.

        Raises:
            ObjectHandleInvalid, ActionProhibited (``CKA_COPYABLE`` false, or changes to an object whose
            ``CKA_MODIFIABLE`` is false), AttributeReadOnly, AttributeTypeInvalid, AttributeValueInvalid,
            TemplateInconsistent, SessionReadOnly, UserNotLoggedIn, DeviceMemory.
        """
        session = self._session(handle)
        changes = self._template(template)
        obj = self._object(obj_handle)
        self._require_manage(obj, "copy")
        if not obj.flag(CKA.COPYABLE):
            raise ActionProhibited("the object has CKA_COPYABLE false")
        storage = {cka: changes.pop(cka) for cka in _COPY_STORAGE if cka in changes}
        attrs = policy.check_set(obj, changes, admin=False) if changes else dict(obj.attrs)
        for cka in (CKA.MODIFIABLE, CKA.COPYABLE, CKA.DESTROYABLE):
            if storage.get(cka, False) and not obj.attrs.get(cka, True):
                raise AttributeReadOnly(f"CKA_{cka.name} can only change to false in a copy")
        attrs.update(storage)
        if CKA.TRUSTED in attrs:
            attrs[CKA.TRUSTED] = False  # trust is an admin's mark on one token key, never a copy's
        family = self._family(obj) if obj.cls in (CKO.SECRET_KEY, CKO.PRIVATE_KEY, CKO.PUBLIC_KEY) else []
        separation.check_new_member(attrs, family)
        return self._create_objects(session, [(attrs, obj.material)], "object-copy", request, family=family,
                                    source=obj.handle)[0]

    def destroy_object(self, handle: int, obj_handle: int, *, request: RequestContext | None = None) -> None:
        """``C_DestroyObject``: atomic; on error the object stays usable.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` when ``CKA_DESTROYABLE`` is false or the caller is not
                the owner.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token object in a read-only session.
        """
        session = self._session(handle)

        def destruction() -> Change:
            obj = self._object(obj_handle)
            self._require_writable(session, obj.is_token)
            self._require_manage(obj, "destroy")
            if not obj.flag(CKA.DESTROYABLE):
                raise ActionProhibited("the object has CKA_DESTROYABLE false")
            change = Change()
            change.add_audit("object-destroy", self._actor(), handle=obj.handle, token=obj.is_token, peer=self.peer)
            self.hsm.repository.delete_object(change, obj)
            return change

        self.hsm.commit(destruction, request=request)

    def get_attribute_value(self, handle: int, obj_handle: int, types: list[int]) -> list[tuple[int, Any]]:
        """``C_GetAttributeValue``: every requested attribute is processed (PKCS#11 3.0 §5.7).

        Returns:
            For each requested type, ``(CKR_OK, value)`` or ``(CKR_*, None)`` with ``CKR_ATTRIBUTE_SENSITIVE``
            or ``CKR_ATTRIBUTE_TYPE_INVALID``; the caller reports the first non-OK code as the call's result
            and ``CK_UNAVAILABLE_INFORMATION`` as those attributes' lengths.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when ``types`` is not a list of integers.
        """
        self._session(handle)
        obj = self._object(obj_handle)
        if not isinstance(types, (list, tuple)):
            raise ArgumentsBad("types must be a list of attribute types")
        out: list[tuple[int, Any]] = []
        for raw in types:
            try:
                out.append((0, policy.read(obj, attribute_type(arguments.ulong(raw, "attribute type")))))
            except ArgumentsBad:
                raise
            except StrongroomError as exc:
                out.append((int(exc.ckr), None))
        return out

    def get_attributes(self, handle: int, obj_handle: int, types: list[int]) -> dict[CKA, Any]:
        """The attributes among ``types`` as a dict (a convenience over :meth:`get_attribute_value`).

        Raises:
            the first error any attribute gave (``CKR_ATTRIBUTE_SENSITIVE``, ``CKR_ATTRIBUTE_TYPE_INVALID``).
        """
        out = {}
        for raw, (rv, value) in zip(types, self.get_attribute_value(handle, obj_handle, types), strict=True):
            if rv:
                raise error_for(rv, f"attribute 0x{raw:x}")
            out[CKA(raw)] = value
        return out

    def set_attribute_value(self, handle: int, obj_handle: int, template: dict[int, Any], *,
                            request: RequestContext | None = None) -> None:
        """``C_SetAttributeValue``: owners change their objects; admins may only set ``CKA_TRUSTED`` on token keys.

        Raises:
            ObjectHandleInvalid, ActionProhibited, AttributeReadOnly, AttributeTypeInvalid,
            AttributeValueInvalid, TemplateInconsistent, SessionReadOnly: as PKCS#11 3.0 §5.7 and
            :func:`strongroom.objects.policy.check_set` say.
        """
        session = self._session(handle)
        changes = self._template(template)
        admin = self._role() is Role.ADMIN

        def attribute_change() -> Change:
            # built from the object as it is now: a change racing another one is checked again, so a one-way
            # switch (CKA_EXTRACTABLE false, CKA_SENSITIVE true) set by either is never undone by the other
            if admin:
                obj = self._trustable(obj_handle)
            else:
                obj = self._object(obj_handle)
                self._require_manage(obj, "modify")
            self._require_writable(session, obj.is_token)
            attrs = policy.check_set(obj, changes, admin=admin)
            if not admin and obj.cls in (CKO.SECRET_KEY, CKO.PRIVATE_KEY, CKO.PUBLIC_KEY):
                family = self._family(obj)
                separation.check_change([m.attrs for m in family],
                                        [attrs if m.handle == obj.handle else m.attrs for m in family])
                expect = self._versions([m for m in family if m.handle != obj.handle])
            else:
                expect = []
            updated = HsmObject(obj.handle, attrs, obj.material, obj.owner, obj.shared, obj.version + 1,
                                obj.session)
            change = Change(expect_objects=expect)
            change.add_audit("attribute-change", self._actor(), peer=self.peer, handle=obj.handle,
                             attributes=sorted(CKA(k).name for k in changes))
            self.hsm.repository.put_object(change, updated)
            return change

        self.hsm.commit(attribute_change, request=request)

    def _trustable(self, obj_handle: int) -> HsmObject:
        """A token key an admin may mark trusted; anything else reads as an invalid handle."""
        obj_handle = arguments.ulong(obj_handle, "object handle")
        try:
            obj = self.hsm.repository.get_object(obj_handle)
        except ObjectHandleInvalid:
            obj = None
        if obj is None or not obj.is_token or obj.cls not in (CKO.SECRET_KEY, CKO.PUBLIC_KEY):
            raise ObjectHandleInvalid(f"no token secret or public key with handle {obj_handle}")
        return obj

    def share(self, handle: int, obj_handle: int, username: str, *, unshare: bool = False,
              request: RequestContext | None = None) -> None:
        """Share a token key with another crypto user (or, with ``unshare``, stop sharing). Owners only.

        Raises:
            ObjectHandleInvalid: ``CKR_OBJECT_HANDLE_INVALID``.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for a non-owner.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when the user does not exist or is not a crypto user, or the key
                is not a token secret or private key.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` in a read-only session.
        """
        session = self._session(handle)
        self._require_writable(session)
        self._require_role(Role.CRYPTO_USER)
        name = check_username(username)

        def sharing() -> Change:
            obj = self._object(obj_handle)
            self._require_owner(obj, "share")
            target = self.hsm.repository.get_user(name)
            if target is None or target.role != Role.CRYPTO_USER.value:
                raise ArgumentsBad(f"{name} is not a crypto user")
            if not obj.is_token or obj.cls not in (CKO.SECRET_KEY, CKO.PRIVATE_KEY):
                raise ArgumentsBad("only token secret and private keys are shared")
            shared = obj.shared - {name} if unshare else obj.shared | {name}
            updated = HsmObject(obj.handle, obj.attrs, obj.material, obj.owner, frozenset(shared), obj.version + 1)
            change = Change(expect_users=[(name, target.version)])
            change.add_audit("key-unshare" if unshare else "key-share", self._actor(), handle=obj.handle, user=name,
                             peer=self.peer)
            self.hsm.repository.put_object(change, updated)
            return change

        self.hsm.commit(sharing, request=request)

    def key_info(self, handle: int, obj_handle: int) -> dict[str, Any]:
        """Owner and sharing of a visible object: ``{"owner": str, "shared_users": [str]}``."""
        self._session(handle)
        obj = self._object(obj_handle)
        return {"owner": obj.owner, "shared_users": sorted(obj.shared)}

    def find_objects_init(self, handle: int, template: dict[int, Any] | None = None,
                          leave_out: dict[int, list[int]] | None = None) -> None:
        """``C_FindObjectsInit``: an empty template finds every object the session may see.

        The admin and public sessions see public objects only; crypto users see their own and shared keys and
        every public object (PKCS#11 3.0 §5.7; private objects are the normal user's). ``leave_out`` maps an
        attribute type (``CKA_KEY_TYPE``, ``CKA_CERTIFICATE_TYPE``) to values whose objects are not found: the
        PKCS#11 agent leaves out the object types an older application does not know.

        Raises:
            OperationActive: ``CKR_OPERATION_ACTIVE`` when a find is already active.
        """
        session = self._session(handle)
        if session.find is not None:
            raise OperationActive("a find is already active in this session")
        wanted = self._template(template)
        left_out = {cka: frozenset(values) for cka, values in (leave_out or {}).items()}
        secret = {CKA.VALUE} | RSA_PRIVATE_COMPONENTS
        found = [o.handle for o in self.hsm.repository.candidates(wanted)
                 if self._may_use(o) and matches(o.attrs, wanted) and not (secret & set(wanted)
                                                                          and policy.secret_attributes(o))
                 and not _left_out(o, left_out)]
        session.find = sorted(found)

    def find_objects(self, handle: int, max_count: int) -> list[int]:
        """``C_FindObjects``: up to ``max_count`` more handles (an empty list when the find is exhausted).

        Raises:
            OperationNotInitialized: ``CKR_OPERATION_NOT_INITIALIZED`` without an active find.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a count that is not a ``CK_ULONG``.
        """
        session = self._session(handle)
        max_count = arguments.ulong(max_count, "max_count")
        if session.find is None:
            raise OperationNotInitialized("no active find in this session")
        out, session.find = session.find[:max_count], session.find[max_count:]
        return out

    def find_objects_final(self, handle: int) -> None:
        """``C_FindObjectsFinal``."""
        session = self._session(handle)
        if session.find is None:
            raise OperationNotInitialized("no active find in this session")
        session.find = None

    def find(self, handle: int, template: dict[int, Any] | None = None) -> list[int]:
        """All handles matching ``template`` (``C_FindObjectsInit``, ``C_FindObjects``, ``C_FindObjectsFinal``)."""
        self.find_objects_init(handle, template)
        try:
            return self.find_objects(handle, arguments.ULONG_MAX)
        finally:
            self.find_objects_final(handle)


def _left_out(obj: HsmObject, leave_out: dict[int, frozenset[int]]) -> bool:
    """Whether one of ``obj``'s attributes holds a value ``leave_out`` lists for it."""
    return any(obj.attrs.get(cka) in values for cka, values in leave_out.items())  # type: ignore[call-overload]
