"""User management, activation, audit export and zeroisation.

Admins manage users and never use keys; crypto users change only their own password; the appliance user reads
health and the audit trail. Every change to users is one log entry with its audit events.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import (
    ActionProhibited,
    ArgumentsBad,
    FunctionFailed,
    PinIncorrect,
    PinInvalid,
    SignatureInvalid,
    UserNotLoggedIn,
)
from ..mechanism_catalogue import MODES, catalogue
from ..objects.model import HsmObject
from ..replication import Change
from ..store import AuditEntry, AuditReport
from ..trust import owner_unlock as unlock_requests
from . import arguments
from .base import ApplicationBase
from .commit import RequestContext
from .users import MAX_USERS, Role, UserRecord, check_password, check_username

# The answers of mechanism_list, one per cluster mode, made once: a cluster's mode never changes.
_MECHANISM_LISTS = {mode: [[int(m.mechanism), m.min_key_size, m.max_key_size, int(m.flags)]
                           for m in sorted(catalogue(mode).values(), key=lambda m: int(m.mechanism))]
                    for mode in MODES}

class AdminCalls(ApplicationBase):
    def activate(self, handle: int, new_password: str, *, request: RequestContext | None = None) -> None:
        """Activate the cluster: the ``unactivated-admin`` sets its own password and becomes ``admin``.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless logged in as the unactivated admin.
            PinInvalid: ``CKR_PIN_INVALID`` when the new password equals the initial one.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a password outside 8–32 characters.
        """
        self._require_writable(self._session(handle))
        user = self._require_role(Role.UNACTIVATED_ADMIN)
        check_password(new_password)
        hsm = self.hsm
        if hsm.passwords.verify(user.password_hash, new_password):
            raise PinInvalid("the activation password must differ from the initial password")
        current = hsm.repository.get_user(user.name)
        if current is None or current.role != Role.UNACTIVATED_ADMIN.value:
            raise UserNotLoggedIn("the cluster was activated meanwhile; log in again")
        current.password_hash = hsm.passwords.hash(new_password)
        current.role = Role.ADMIN.value
        current.initial_password = ""
        current.version += 1
        change = Change()
        hsm.repository.put_user(change, current)
        change.add_audit("activate", user.name, peer=self.peer)
        hsm.commit(change, request=request)
        self.user = current
        self.role = Role.ADMIN

    def create_user(self, handle: int, username: str, password: str, role: str, *,
                    request: RequestContext | None = None) -> None:
        """Create a user (admins only).

        Args:
            username: 1–31 letters, digits or ``_``; case-insensitive, stored lowercase.
            password: 8–32 characters.
            role: ``"admin"``, ``"crypto-user"`` or ``"appliance"``.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless an admin is logged in.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a bad username or role, an existing user, or a full cluster.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a bad password length.
        """
        self._require_writable(self._session(handle))
        actor = self._require_role(Role.ADMIN)
        name = check_username(username)
        check_password(password)
        if role not in (Role.ADMIN.value, Role.CRYPTO_USER.value, Role.APPLIANCE.value):
            raise ArgumentsBad(f"role must be 'admin', 'crypto-user' or 'appliance', got {role!r:.40}")
        hsm = self.hsm
        users = hsm.repository.all_users()
        if any(u.name == name for u in users):
            raise ArgumentsBad(f"user {name} already exists")
        if len(users) >= MAX_USERS:
            raise ArgumentsBad(f"the cluster holds the maximum of {MAX_USERS} users")
        record = UserRecord(name, role, hsm.passwords.hash(password))
        change = Change()
        hsm.repository.put_user(change, record, new=True)
        change.add_audit("user-create", actor.name, user=name, role=role, peer=self.peer)
        try:
            hsm.commit(change, request=request)
        except FunctionFailed:
            if hsm.repository.get_user(name) is not None:
                raise ArgumentsBad(f"user {name} already exists") from None
            raise

    def delete_user(self, handle: int, username: str, *, request: RequestContext | None = None) -> None:
        """Delete a user (admins only): its logins end and it is removed from every key's sharing list.

        A crypto user who owns token keys, the caller itself and the last admin cannot be deleted.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless an admin is logged in.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown user.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for the cases above.
        """
        self._require_writable(self._session(handle))
        actor = self._require_role(Role.ADMIN)
        name = check_username(username)
        hsm = self.hsm
        hsm.commit(lambda: self._user_deletion(actor.name, name), request=request)

    def _user_deletion(self, actor: str, name: str) -> Change:
        hsm = self.hsm
        users = {u.name: u for u in hsm.repository.all_users()}
        if name not in users:
            raise ArgumentsBad(f"user {name} does not exist")
        if name == actor:
            raise ActionProhibited("an admin cannot delete itself")
        admins = sum(u.role == Role.ADMIN.value for u in users.values())
        if users[name].role == Role.ADMIN.value and admins < 2:
            raise ActionProhibited("the last admin cannot be deleted")
        shared = []
        for row in hsm.store.iter_objects():
            if row.owner == name:
                raise ActionProhibited(f"user {name} owns keys; delete them first")
            obj = hsm.repository.get_object(row.handle)
            if name in obj.shared:
                shared.append(obj)
        change = Change(revoke=[name])
        for obj in shared:
            hsm.repository.put_object(change, HsmObject(obj.handle, obj.attrs, obj.material, obj.owner,
                                             obj.shared - {name}, obj.version + 1))
        change.delete_user(name, expect=users[name].version)
        if users[name].role == Role.ADMIN.value:  # two admins deleting each other: the second one conflicts
            change.expect_users.extend((u.name, u.version) for u in users.values()
                                       if u.role == Role.ADMIN.value and u.name != name)
        change.add_audit("user-delete", actor, user=name, unshared=[o.handle for o in shared], peer=self.peer)
        return change

    def change_password(self, handle: int, username: str, new_password: str, old_password: str | None = None, *,
                        request: RequestContext | None = None) -> None:
        """Change a password.

        An admin may reset anyone's password without the old one; a reset of another user unlocks the account
        and ends that user's logins. Every other user changes only their own password and must give the old
        one; a change of one's own password leaves the lockout state as it is.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without a login, or for another user's password
                without an admin login.
            PinIncorrect: ``CKR_PIN_INCORRECT`` when a user's own change gives a wrong old password.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown user.
            PinLenRange: ``CKR_PIN_LEN_RANGE`` for a bad password length.
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` in a read-only session.
        """
        self._require_writable(self._session(handle))
        actor = self._require_role(Role.ADMIN, Role.CRYPTO_USER, Role.APPLIANCE)
        name = check_username(username)
        admin = self._role() is Role.ADMIN
        if name != actor.name and not admin:
            raise UserNotLoggedIn("only an admin may change another user's password")
        check_password(new_password)
        hsm = self.hsm
        record = hsm.repository.get_user(name)
        if record is None:
            raise ArgumentsBad(f"user {name} does not exist")
        own = name == actor.name
        if own and not admin:
            old = arguments.text(old_password, "old password") if old_password is not None else ""
            if not hsm.passwords.verify(record.password_hash, old):
                raise PinIncorrect("the old password is wrong")
        password_hash = hsm.passwords.hash(new_password)

        def password_change() -> Change:
            current = hsm.repository.get_user(name)
            if current is None:
                raise ArgumentsBad(f"user {name} does not exist")
            was_locked = current.locked
            current.password_hash = password_hash
            if admin and not own:
                current.failures, current.locked = 0, False
            current.version += 1
            change = Change(revoke=[] if own else [name])
            hsm.repository.put_user(change, current)
            change.add_audit("password-change", actor.name, user=name, unlocked=was_locked and not current.locked,
                             peer=self.peer)
            return change

        hsm.commit(password_change, request=request)
        if own:
            self.user = hsm.repository.get_user(name) or self.user

    def initial_password(self, handle: int) -> str:
        """The initial admin password the first HSM made (the appliance user only), until the admin activates:
        the control plane hands it to the cluster's owner (``PreCoPassword``).

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without the appliance login.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` once the cluster is activated (the password is gone).
        """
        self._session(handle)
        self._require_role(Role.APPLIANCE)
        for user in self.hsm.repository.all_users():
            if user.role == Role.UNACTIVATED_ADMIN.value and user.initial_password:
                return user.initial_password
        raise ActionProhibited("the cluster is activated: its initial password was changed and is not kept")

    def unlock_user(self, handle: int, username: str, *, request: RequestContext | None = None) -> None:
        """Unlock a user locked out by wrong passwords, keeping its password (admins only): an admin unlocks
        crypto users and other admins, never itself (the owner can: :meth:`owner_unlock`).

        Side effects: one log entry clearing the user's failure count and lock, audited ``user-unlock``.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` unless an admin is logged in.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unknown user.
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for the caller's own account.
        """
        self._require_writable(self._session(handle))
        actor = self._require_role(Role.ADMIN)
        name = check_username(username)
        if name == actor.name:
            raise ActionProhibited("an admin cannot unlock itself; another admin or the cluster's owner can")
        self.hsm.commit(lambda: self._unlocking(name, actor.name, "user-unlock"), request=request)

    def owner_unlock(self, handle: int, signed: bytes, *, request: RequestContext | None = None) -> str:
        """Unlock an admin with an unlock request signed by the cluster owner's CA key
        (:mod:`strongroom.trust.owner_unlock`): the way back in when every admin is locked out. Needs an open
        session and no login: the signature is the authority. Each request unlocks once, before its expiry.

        Side effects: one log entry clearing the admin's failure count and lock and keeping the request's nonce,
        audited ``owner-unlock`` with the nonce and the peer.

        Returns:
            The unlocked admin's name.

        Raises:
            ActionProhibited: ``CKR_ACTION_PROHIBITED`` for a cluster without an owner trust anchor (not
                initialised by ``InitializeCluster``) or a user who is not an admin.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a malformed request or an unknown user.
            SignatureInvalid: ``CKR_SIGNATURE_INVALID`` for a request the owner's CA did not sign, for another
                cluster, expired, valid too long, or used before.
        """
        self._session(handle)
        signed = arguments.data(signed, "unlock request")
        hsm = self.hsm
        identity = hsm.cluster_identity()
        if identity is None or not identity.trust_anchor:
            raise ActionProhibited("this cluster has no owner trust anchor (InitializeCluster gives it)")
        now = time.time()
        claims = unlock_requests.verify(signed, identity.trust_anchor, hsm.cluster_id, now=now)
        name = check_username(claims.username)
        hsm.commit(lambda: self._unlocking(name, "owner", "owner-unlock", claims, now), request=request)
        return name

    def _unlocking(self, name: str, actor: str, event: str, claims: unlock_requests.UnlockClaims | None = None,
                   now: float = 0.0) -> Change:
        current = self.hsm.repository.get_user(name)
        if current is None:
            raise ArgumentsBad(f"user {name} does not exist")
        detail: dict[str, Any] = {}
        if claims is not None:
            if current.role != Role.ADMIN.value:
                raise ActionProhibited("an owner-signed unlock is for admins; an admin unlocks the other users")
            if claims.nonce in current.owner_unlocks:
                raise SignatureInvalid("this unlock request was used already")
            current.owner_unlocks = {n: t for n, t in current.owner_unlocks.items() if t >= now}
            current.owner_unlocks[claims.nonce] = claims.not_after
            detail = {"nonce": claims.nonce, "not_after": claims.not_after}
        was_locked, failures = current.locked, current.failures
        current.failures, current.locked, current.failed_at = 0, False, 0.0
        current.version += 1
        change = Change()
        self.hsm.repository.put_user(change, current)
        change.add_audit(event, actor, user=name, was_locked=was_locked, failures=failures, peer=self.peer, **detail)
        return change

    def list_users(self, handle: int) -> list[dict[str, Any]]:
        """Every user: ``{"username", "role", "locked", "failures"}`` sorted by name; needs a login (any user:
        the catalogue record is not ``before_login``), so it is a session call: the client sends it where its
        session is logged in."""
        self._session(handle)
        return [{"username": u.name, "role": u.role, "locked": u.locked, "failures": u.failures}
                for u in self.hsm.repository.all_users()]

    def verify_audit(self) -> AuditReport:
        """Verify the audit chain (admins and the appliance user)."""
        self.hsm.require_operational()
        self._require_role(Role.ADMIN, Role.APPLIANCE)
        return self.hsm.store.verify_audit()

    def export_audit(self, after_seq: int = 0) -> list[AuditEntry]:
        """Audit entries with sequence numbers above ``after_seq`` (admins and the appliance user), in order.

        A collector re-verifies the links itself: each entry carries its previous digest and its own.
        """
        self.hsm.require_operational()
        self._require_role(Role.ADMIN, Role.APPLIANCE)
        after_seq = arguments.ulong(after_seq, "after_seq")
        return self.hsm.store.audit_entries(min(after_seq, 2**63 - 1))

    def hsm_info(self) -> dict[str, Any]:
        """Node information (``get_hsm_info``); needs no login and answers in every state."""
        return self.hsm.info()

    def mechanism_list(self) -> list[list[int]]:
        """The mechanisms this HSM implements, as ``C_GetMechanismList`` and ``C_GetMechanismInfo`` answer
        them (PKCS#11 3.0 §5.5): ``[CKM, ulMinKeySize, ulMaxKeySize, CKF flags]`` per mechanism, sorted by
        ``CKM``, those of the cluster's mode (``FIPS`` or ``NON_FIPS``); needs no login and answers in every
        state."""
        return _MECHANISM_LISTS[self.hsm.machine.mode()]

    def zeroize(self, handle: int) -> None:
        """Erase the masking key, every object and user (admins only); the audit chain records it."""
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        self.hsm.zeroize(actor=actor.name)
        self.sessions.clear()
        self.user = self.user_type = self.role = None
