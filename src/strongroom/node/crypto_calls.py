"""Cryptographic operations (PKCS#11 3.0 §5.8–§5.13): encrypt, decrypt, digest, sign, verify.

Variable-length outputs follow §5.2: ``query=True`` returns the length without changing the operation;
``out_len`` (the caller's buffer size in bytes) too small raises ``CKR_BUFFER_TOO_SMALL`` with the exact size
and keeps the operation. Any other error of a call on an active operation ends it, an error in the arguments
included (§5.8–§5.13: "a call to C_Encrypt always terminates the active encryption operation unless it
returns CKR_BUFFER_TOO_SMALL or is a successful call … to determine the length"; an ``*Update`` that results in
an error terminates it): the next call answers ``CKR_OPERATION_NOT_INITIALIZED``. Only the checks that find no
operation to end come first: the session handle, and whether that kind of operation is active.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .. import crypto
from ..errors import BufferTooSmall, KeyHandleInvalid, OperationActive, OperationNotInitialized
from ..mechanism_params import Mechanism
from ..mechanism_rules import check as check_parameter
from ..objects import policy
from ..protocol.calls import CALL_SPECS
from ..vocab import CKA, CKF
from . import arguments
from .base import ApplicationBase
from .sessions import ActiveOperation, OpKind, Session, deliver

_USAGE = {OpKind.ENCRYPT: CKA.ENCRYPT, OpKind.DECRYPT: CKA.DECRYPT, OpKind.SIGN: CKA.SIGN,
          OpKind.VERIFY: CKA.VERIFY}
_FUNCTION = {OpKind.ENCRYPT: CKF.ENCRYPT, OpKind.DECRYPT: CKF.DECRYPT, OpKind.SIGN: CKF.SIGN,
             OpKind.VERIFY: CKF.VERIFY, OpKind.DIGEST: CKF.DIGEST}
_INIT = {OpKind.ENCRYPT: crypto.encrypt_init, OpKind.DECRYPT: crypto.decrypt_init,
         OpKind.SIGN: crypto.sign_init, OpKind.VERIFY: crypto.verify_init}
_CIPHERS = (OpKind.ENCRYPT, OpKind.DECRYPT)
_Out = TypeVar("_Out")
_AWAITED = ("a size query computed this operation's single-part result, which only the single-part call "
            "delivers; the operation has ended, start it again")


class CryptoCalls(ApplicationBase):
    def _init(self, handle: int, kind: OpKind, mechanism: Mechanism, key_handle: int | None) -> ActiveOperation:
        session = self._session(handle)
        if kind in session.ops:
            raise OperationActive(f"a {kind.value} operation is already active in this session")
        active = self._start(kind, mechanism, key_handle)
        session.ops[kind] = active
        return active

    def _start(self, kind: OpKind, mechanism: Mechanism, key_handle: int | None) -> ActiveOperation:
        """Check the key and mechanism (its parameter last, :mod:`strongroom.mechanism_rules`) and start the crypto
        layer's operation (not yet bound to a session)."""
        op: Any
        if kind is OpKind.DIGEST:
            mechanism, _ = self._mechanism(mechanism, _FUNCTION[kind], None)
            check_parameter(mechanism, self.hsm.machine.mode())
            op, key = crypto.digest_init(mechanism), 0
        else:
            obj = self._key(key_handle, KeyHandleInvalid)
            mechanism, _ = self._mechanism(mechanism, _FUNCTION[kind], obj)
            policy.require_usage(obj, _USAGE[kind], mechanism.mechanism)
            check_parameter(mechanism, self.hsm.machine.mode())
            op, key = _INIT[kind](mechanism, self.hsm.repository.key_object(obj)), obj.handle
        return ActiveOperation(kind, mechanism.mechanism, op, key)

    def _once(self, handle: int, kind: OpKind, mechanism: Mechanism, key: int | None, data: Any) -> Any:
        """Init and a single-part call in one, leaving the session's operation state alone, so that many such
        calls may run at once on one session."""
        self._session(handle)
        data = arguments.data(data)
        active = self._start(kind, mechanism, key)
        if kind in _CIPHERS:
            return active.op.oneshot(data)
        active.op.update(data)
        return active.op

    def encrypt_once(self, handle: int, mechanism: Mechanism, key: int, data: bytes) -> bytes:
        """``C_EncryptInit`` and ``C_Encrypt`` in one call, outside the session's operation state.

        An HSM-generated AES-GCM IV is returned in front of the ciphertext (12 bytes, then ciphertext‖tag).
        """
        self._session(handle)
        data = arguments.data(data)
        active = self._start(OpKind.ENCRYPT, mechanism, key)
        out: bytes = active.op.oneshot(data)
        generated: bytes | None = getattr(active.op, "generated_iv", None)
        return generated + out if generated else out

    def decrypt_once(self, handle: int, mechanism: Mechanism, key: int, data: bytes) -> bytes:
        """``C_DecryptInit`` and ``C_Decrypt`` in one call, outside the session's operation state."""
        plain: bytes = self._once(handle, OpKind.DECRYPT, mechanism, key, data)
        return plain

    def sign_once(self, handle: int, mechanism: Mechanism, key: int, data: bytes) -> bytes:
        """``C_SignInit`` and ``C_Sign`` in one call, outside the session's operation state."""
        signature: bytes = self._once(handle, OpKind.SIGN, mechanism, key, data).final()
        return signature

    def verify_once(self, handle: int, mechanism: Mechanism, key: int, data: bytes, signature: bytes) -> None:
        """``C_VerifyInit`` and ``C_Verify`` in one call; raises ``CKR_SIGNATURE_INVALID`` on a bad signature."""
        signature = arguments.data(signature, "signature")
        self._once(handle, OpKind.VERIFY, mechanism, key, data).final(signature)

    def digest_once(self, handle: int, mechanism: Mechanism, data: bytes) -> bytes:
        """``C_DigestInit`` and ``C_Digest`` in one call, outside the session's operation state."""
        digest: bytes = self._once(handle, OpKind.DIGEST, mechanism, None, data).final()
        return digest

    def unreadable_call(self, body: bytes) -> None:
        """A request whose arguments did not decode (``body``, the msgpack of a ``Request``) still ends the
        operation it names, when it is a call on one (PKCS#11 3.0 §5.2: a call that fails with anything but
        ``CKR_BUFFER_TOO_SMALL`` ends the operation, ``CKR_ARGUMENTS_BAD`` included). Anything else in the
        body, or an unknown session, is left as it is."""
        try:
            _, _, call, *_ = msgspec.msgpack.decode(body)
            name, handle = call[0], call[1]
            spec = CALL_SPECS[name]
            kind = OpKind(spec.operation)
        except (msgspec.DecodeError, RecursionError, TypeError, ValueError, KeyError, IndexError):
            return
        session = self.sessions.get(handle) if type(handle) is int else None
        if session is not None and not spec.starts and not spec.once:
            session.ops.pop(kind, None)

    def _active(self, handle: int, kind: OpKind) -> tuple[Session, ActiveOperation]:
        session = self._session(handle)
        active = session.ops.get(kind)
        if active is None:
            raise OperationNotInitialized(f"no {kind.value} operation is active in this session")
        return session, active

    @staticmethod
    def _run(session: Session, active: ActiveOperation, step: Callable[[], _Out]) -> _Out:
        """Run a step; any error but a short buffer ends the operation (PKCS#11 3.0 §5.2)."""
        try:
            return step()
        except BufferTooSmall:
            raise
        except BaseException:
            session.ops.pop(active.kind, None)
            raise

    def _single(self, handle: int, kind: OpKind, data: Any, out_len: Any, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)

        def step() -> bytes | int:
            nonlocal data, out_len
            data, out_len = arguments.data(data), arguments.out_len(out_len)
            if active.multi:
                raise OperationActive(f"a multi-part {kind.value} was in progress; C_{kind.value.title()} ended "
                                      "it, start it again")
            if active.final is None:
                if kind in _CIPHERS:
                    active.final = active.op.oneshot(data)
                else:
                    active.op.update(data)
                    active.final = active.op.final()
                active.final_input = data
            elif active.final_input != data:
                raise OperationActive("a size query fixed this operation's input; the operation has ended, "
                                      "start it again")
            out = deliver(active.final, out_len, query)
            if not query:
                session.ops.pop(kind, None)
            return out

        return self._run(session, active, step)

    def _update(self, handle: int, kind: OpKind, data: Any, out_len: Any, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)

        def step() -> bytes | int:
            nonlocal data, out_len
            data, out_len = arguments.data(data), arguments.out_len(out_len)
            if active.final is not None:
                raise OperationActive(_AWAITED)
            if kind in _CIPHERS:
                size: int = active.op.update_size(len(data))
                if query:
                    return size
                if out_len is not None and out_len < size:
                    raise BufferTooSmall(size)
                active.multi = True
                out: bytes = active.op.update(data)
                return out
            active.multi = True
            active.op.update(data)
            return b""

        return self._run(session, active, step)

    def _final(self, handle: int, kind: OpKind, out_len: Any, query: bool) -> bytes | int:
        session, active = self._active(handle, kind)

        def step() -> bytes | int:
            nonlocal out_len
            out_len = arguments.out_len(out_len)
            if active.final_input is not None:
                raise OperationActive(_AWAITED)
            if active.final is None:
                active.final = active.op.final()
                active.multi = True
            out = deliver(active.final, out_len, query)
            if not query:
                session.ops.pop(kind, None)
            return out

        return self._run(session, active, step)

    def _verify(self, handle: int, data: Any | None, signature: Any) -> None:
        session, active = self._active(handle, OpKind.VERIFY)
        try:  # C_Verify and C_VerifyFinal always end the operation (PKCS#11 3.0 §5.13)
            signature = arguments.data(signature, "signature")
            if data is not None:
                data = arguments.data(data)
                if active.multi:
                    raise OperationActive("a multi-part verify was in progress; C_Verify ended it, start it again")
            if data is not None:
                active.op.update(data)
            active.op.final(signature)
        finally:
            session.ops.pop(OpKind.VERIFY, None)

    def encrypt_init(self, handle: int, mechanism: Mechanism, key: int) -> bytes | None:
        """``C_EncryptInit``. Returns the HSM-generated 12-byte IV when AES-GCM was given an empty IV.

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

    def session_cancel(self, handle: int, flags: int) -> None:
        """``C_SessionCancel`` (PKCS#11 3.0 §5.6.7), also what ``C_*Init`` with a NULL mechanism does: ends the
        session's active operations named by ``flags`` (``CKF.ENCRYPT``, ``CKF.DECRYPT``, ``CKF.DIGEST``,
        ``CKF.SIGN``, ``CKF.VERIFY``, ``CKF.FIND_OBJECTS``); ending one that is not active is no error.

        Raises:
            SessionHandleInvalid, ArgumentsBad.
        """
        session = self._session(handle)
        flags = arguments.ulong(flags, "flags")
        for kind, flag in _FUNCTION.items():
            if flags & flag:
                session.ops.pop(kind, None)
        if flags & CKF.FIND_OBJECTS:
            session.find = None

    def digest_init(self, handle: int, mechanism: Mechanism) -> None:
        """``C_DigestInit``."""
        self._init(handle, OpKind.DIGEST, mechanism, None)

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
        self._verify(handle, data, signature)

    def verify_update(self, handle: int, data: bytes) -> None:
        """``C_VerifyUpdate``."""
        self._update(handle, OpKind.VERIFY, data, None, False)

    def verify_final(self, handle: int, signature: bytes) -> None:
        """``C_VerifyFinal``."""
        self._verify(handle, None, signature)
