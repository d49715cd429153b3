"""Sessions and login (PKCS#11 3.0 §5.6): ``C_OpenSession`` … ``C_Logout``.

Login state belongs to the application and is shared by its sessions; closing its last session logs it out.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import (
    NoQuorum,
    PinIncorrect,
    PinLocked,
    SessionParallelNotSupported,
    SessionReadOnlyExists,
    SessionReadWriteSoExists,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
    UserTypeInvalid,
)
from ..replication import Change
from ..vendor import CKU_APPLIANCE, USER_TYPES
from ..vocab import CKF, CKS, CKU
from . import arguments
from .base import ApplicationBase
from .commit import local_write
from .sessions import Session
from .users import MAX_USERNAME_CHARS, Role, UserRecord, backoff_s, split_pin

MAX_CLIENT_CHARS = 128  # the application description a client agent adds to audit events
APPLIANCE_CERTIFICATE_USER = "control_plane"  # who the appliance identity logs in as (audit trail)


class SessionCalls(ApplicationBase):
    def open_session(self, flags: int = CKF.SERIAL_SESSION | CKF.RW_SESSION) -> int:
        """``C_OpenSession``: open a session; ``CKF_RW_SESSION`` in ``flags`` makes it read-write.

        Returns:
            The new session's handle.

        Raises:
            SessionParallelNotSupported: ``CKR_SESSION_PARALLEL_NOT_SUPPORTED`` without ``CKF_SERIAL_SESSION``.
            SessionReadWriteSoExists: ``CKR_SESSION_READ_WRITE_SO_EXISTS`` for a read-only session while an
                admin is logged in.
        """
        self.hsm.require_operational()
        flags = arguments.ulong(flags, "flags")
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
        session = self._session(handle)
        del self.sessions[session.handle]
        self.hsm.repository.drop_session_objects(self.id, session.handle)
        if not self.sessions:
            self._logout_audited()

    def close_all_sessions(self) -> None:
        """``C_CloseAllSessions`` (also what a dropped connection does)."""
        self.sessions.clear()
        self.hsm.repository.drop_session_objects(self.id)
        self._logout_audited()

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

    def login(self, handle: int, user_type: int, pin: str | bytes, client: str = "") -> None:
        """``C_Login`` with a PIN of the form ``username:password``.

        ``client`` names the application process behind a client agent (e.g. ``pid=… uid=… gid=…``, from the
        agent's unix socket); this and later audit events record it beside the connection's identity, as
        ``client`` from a connection whose certificate marks an agent and as ``claimed_client`` from any other
        (:mod:`strongroom.node.peer`).

        ``CKU_SO`` logs in an admin, ``CKU_USER`` a crypto user, the vendor ``CKU_APPLIANCE`` the appliance user.
        A wrong password counts toward the lockout threshold (cluster-wide); reaching it locks the account.
        From the second consecutive wrong password on, the user is in back-off (1 s doubling per failure, at most
        60 s, by default): a login in that time is refused as a wrong password before the password is checked,
        and is not counted. Unknown users cost the same password-hash time as known ones.

        Raises:
            UserAlreadyLoggedIn: ``CKR_USER_ALREADY_LOGGED_IN`` when this application is logged in as that type.
            UserAnotherAlreadyLoggedIn: ``CKR_USER_ANOTHER_ALREADY_LOGGED_IN`` when logged in as another type.
            UserTypeInvalid: ``CKR_USER_TYPE_INVALID`` for an unknown type or one the user's role does not have.
            SessionReadOnlyExists: ``CKR_SESSION_READ_ONLY_EXISTS`` for an admin login with read-only sessions.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a PIN that is not text.
            PinIncorrect: ``CKR_PIN_INCORRECT`` for an unknown user, a wrong password, a user in back-off or a
                PIN that is not ``username:password``.
            PinLocked: ``CKR_PIN_LOCKED`` when the account is locked.
        """
        self._session(handle)
        user_type = arguments.ulong(user_type, "user type")
        client = arguments.text(client, "client")[:MAX_CLIENT_CHARS]
        self.peer = self.identity.audit(client)
        if user_type not in USER_TYPES:
            raise UserTypeInvalid(f"user type {user_type} is not CKU_SO, CKU_USER or CKU_APPLIANCE")
        if self.user is not None:
            if self.user_type == user_type:
                raise UserAlreadyLoggedIn(f"already logged in as {self.user.name}")
            raise UserAnotherAlreadyLoggedIn(f"{self.user.name} is logged in; log out first")
        if user_type == CKU.SO and any(not s.rw for s in self.sessions.values()):
            raise SessionReadOnlyExists("close the read-only sessions before an admin login")
        if user_type == CKU_APPLIANCE and self.appliance_certificate and not pin:
            # the control plane, authenticated by its fleet-issued TLS client certificate: no password
            appliance = UserRecord(APPLIANCE_CERTIFICATE_USER, Role.APPLIANCE.value, "")
            self._audit_here("login", appliance.name, role=appliance.role, peer=self.peer, method="certificate")
            self._logged_in(appliance, user_type)
            return
        name, password = split_pin(arguments.text(pin, "PIN"))
        name = name.lower()
        hsm = self.hsm
        record = hsm.repository.get_user(name) if len(name) <= MAX_USERNAME_CHARS else None
        if record is None:
            hsm.passwords.verify(hsm.passwords.dummy_hash, password)
            self._audit_here("login-failed", name[:MAX_USERNAME_CHARS], reason="unknown user", peer=self.peer)
            raise PinIncorrect("wrong username or password")
        if hsm.pending_failures.get(name):
            self._record_failures(name, 0)  # failures counted while the log could not take them
            record = hsm.repository.get_user(name) or record
        pending = hsm.pending_failures.get(name, 0)
        if record.locked or record.failures + pending >= hsm.settings.lockout_threshold:
            self._audit_here("login-failed", name, reason="locked", peer=self.peer)
            raise PinLocked(f"user {name} is locked; an admin (or, for an admin, another admin or the cluster's "
                            "owner) must unlock it")
        settings = hsm.settings
        wait_s = backoff_s(record.failures + pending, settings.lockout_backoff_s, settings.lockout_backoff_max_s)
        if time.time() < record.failed_at + wait_s:
            # refused before the password is checked, and without holding the thread: the same answer as a
            # wrong password, and it does not count as one
            self._audit_here("login-failed", name, reason="back-off", peer=self.peer)
            raise PinIncorrect("wrong username or password")
        if not hsm.passwords.verify(record.password_hash, password):
            # The count is cluster-wide: each failure is a change to the user record, built again from the
            # current record when a failure on another node got there first. A failure the log cannot take
            # now is counted here and carried into the next one, and the answer is the same either way.
            if not self._record_failures(name, 1):
                self._audit_here("login-failed", name, reason="wrong password", pending=True, peer=self.peer)
            raise PinIncorrect("wrong username or password")
        if Role(record.role).user_type != user_type:
            raise UserTypeInvalid(f"user {name} has role {record.role}, which logs in as another user type")
        if record.failures:
            hsm.commit(lambda: self._failures_cleared(name))
            record = hsm.repository.get_user(name) or record
        self._audit_here("login", name, role=record.role, peer=self.peer)
        self._logged_in(record, user_type)

    def pin_state(self, username: str) -> dict[str, Any]:
        """The lockout state of user ``username`` as the cluster counts it, for the PIN flags of
        ``C_GetTokenInfo`` (PKCS#11 3.0 §5.5: ``CKF_USER_PIN_COUNT_LOW`` … ``CKF_SO_PIN_LOCKED``).

        Returns:
            ``failures``: consecutive wrong passwords since the last good one (the user record's count in the
            replicated state, with those this node holds pending while the log could not take them);
            ``locked``: the account is locked; ``lockout_threshold``: the failures that lock it. An unknown
            user answers as one with no failures (as with the lockout itself, wrong PINs then tell a known
            user from an unknown one).

        Raises:
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a user name that is not text.
        """
        self.hsm.require_operational()
        name = arguments.text(username, "username").lower()
        hsm = self.hsm
        record = hsm.repository.get_user(name) if len(name) <= MAX_USERNAME_CHARS else None
        threshold = hsm.settings.lockout_threshold
        if record is None:
            return {"failures": 0, "locked": False, "lockout_threshold": threshold}
        failures = record.failures + hsm.pending_failures.get(name, 0)
        return {"failures": failures, "locked": record.locked or failures >= threshold,
                "lockout_threshold": threshold}

    def _record_failures(self, name: str, new: int) -> bool:
        """Count ``new`` wrong passwords, and those this node holds pending, in the user's record through the
        log; when the log cannot take them now, keep them pending here. True when they reached the log."""
        hsm = self.hsm
        used: list[int] = []
        try:
            hsm.commit(lambda: self._failure(name, new, used))
        except NoQuorum:
            if new:
                with hsm.lock:
                    hsm.pending_failures[name] = hsm.pending_failures.get(name, 0) + new
            return False
        with hsm.lock:
            left = hsm.pending_failures.get(name, 0) - (used[-1] if used else 0)
            if left > 0:
                hsm.pending_failures[name] = left
            else:
                hsm.pending_failures.pop(name, None)
        return True

    def _failure(self, name: str, new: int, used: list[int]) -> Change | None:
        """The change that counts ``new`` wrong passwords plus those this node holds pending for ``name``."""
        record = self.hsm.repository.get_user(name)
        if record is None:
            return None
        pending = self.hsm.pending_failures.get(name, 0)
        used.append(pending)
        if not new and not pending:
            return None
        record.failures += new + pending
        record.failed_at = time.time()
        record.version += 1
        record.locked = record.locked or record.failures >= self.hsm.settings.lockout_threshold
        change = Change()
        self.hsm.repository.put_user(change, record)
        change.add_audit("login-failed", name, reason="wrong password", failures=record.failures, peer=self.peer)
        if record.locked:
            change.add_audit("lockout", name, failures=record.failures, peer=self.peer)
        return change

    def _failures_cleared(self, name: str) -> Change | None:
        record = self.hsm.repository.get_user(name)
        if record is None or not record.failures or record.locked:
            return None
        record.failures = 0
        record.version += 1
        change = Change()
        self.hsm.repository.put_user(change, record)
        return change

    def _audit_here(self, event: str, actor: str, **detail: Any) -> None:
        """Audit an event of this node only (logins are per node; their changes to users go through the log)."""
        with local_write(self.hsm.store) as tx:
            tx.audit(event, actor, **detail)

    def logout(self, handle: int) -> None:
        """``C_Logout``: ends the login of all the application's sessions and their active operations.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN``.
        """
        self._session(handle)
        if self.user is None:
            raise UserNotLoggedIn("no user is logged in")
        self._logout_audited()

    def _logout_audited(self) -> None:
        if self.user is not None and self.hsm.state == "operational":
            self._audit_here("logout", self.user.name, peer=self.peer)
        self._logged_out()
