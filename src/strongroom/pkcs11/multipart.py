"""Cryptographic operations of one application as the agent runs them (PKCS#11 3.0 §5.8–§5.13).

An application signs with ``C_SignInit`` then ``C_Sign``: two calls, two round trips to the cluster. Most
applications repeat the same mechanism with the same key, so once an init of that (operation, mechanism, key)
has been accepted by the HSM under the application's current login, a later init of the same triple is
answered here and kept as *deferred*; the single-part call that follows runs as one ``*_once`` request (init and
operation together, checked in full by the HSM). A size query or a too-small buffer computes the output once
and keeps it for the call that fetches it. A multi-part call (``*Update``/``*Final``) on a deferred operation
first makes it real with the HSM's own init.

What the application sees is what the HSM decides, with one difference: if a proven key is destroyed or loses
its usage by *another* application between the init and the operation, the error comes from the operation call
instead of the init.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..client.connection import ConnectionLost
from ..errors import BufferTooSmall, OperationActive, OperationNotInitialized, StrongroomError
from ..mechanism_params import Mechanism
from ..protocol.calls import CALL_SPECS
from ..vocab import CKF
from . import wire

Call = Callable[..., Awaitable[Any]]
FLAGS = {"encrypt": CKF.ENCRYPT, "decrypt": CKF.DECRYPT, "digest": CKF.DIGEST, "sign": CKF.SIGN,
         "verify": CKF.VERIFY}
# What a single-part call gets when the HSM that held its operation failed over: the HSM gone, or another one
# that never saw the init.
_HSM_GONE = (ConnectionLost, OperationNotInitialized)
MAX_PROVEN = 256  # inits remembered per application; parameters that change every time (GCM IVs) do not pile up


async def sized_output(call: Call, name: str, args: tuple[Any, ...],
                       capacity: int | None) -> tuple[wire.Writer, bool]:
    """Run node call ``name`` whose answer is an ``ay`` output (PKCS#11 3.0 §5.2, the length convention).

    Args:
        call: runs a node call (``call(name, *args, **kw)``).
        name, args: the call and its arguments.
        capacity: the application's buffer size in bytes, or ``None`` when it passed no buffer (a size query).

    Returns:
        The answer and whether it holds only a length: the needed length in bytes for a size query or a buffer
        the HSM found too small (``CKR_BUFFER_TOO_SMALL`` travels as the length), else the output.

    Raises:
        StrongroomError: what the HSM answered otherwise.
    """
    if capacity is None:
        return wire.Writer().byte_array(None, await call(name, *args, query=True)), True
    try:
        return wire.Writer().byte_array(await call(name, *args, out_len=capacity)), False
    except BufferTooSmall as exc:
        return wire.Writer().byte_array(None, exc.required), True


@dataclass
class _Deferred:
    mechanism: Mechanism
    key: int | None
    data: bytes | None = None  # input whose output was computed for a size query
    output: bytes | None = None


class Operations:
    """Operation state of one application's sessions.

    Args:
        call: runs a node call through the application's cluster connection (``call(name, *args, **kw)``).
        sessions: the application's open session handles (checked before an init is answered locally).
    """

    def __init__(self, call: Call, sessions: Callable[[], Any]) -> None:
        self._call = call
        self._sessions = sessions
        self.proven: set[tuple[str, int | None, Mechanism]] = set()
        self.deferred: dict[tuple[int, str], _Deferred] = {}
        # operations initialised in the HSM itself, with their mechanism and key
        self.active: dict[tuple[int, str], tuple[Mechanism, int | None]] = {}
        self.fed: set[tuple[int, str]] = set()  # active operations that have had data (an update)
        self.epoch = 0  # changes when what was proven is forgotten: an init in flight then proves nothing

    def observe(self, name: str, args: tuple[Any, ...]) -> None:
        """Forget what a successful call ``name`` may have made untrue: another user (``changes_login``), a
        changed or destroyed key (``changes_object``)."""
        call = CALL_SPECS[name]
        if call.changes_login:
            self.proven.clear()
            self.epoch += 1
            if name == "close_session":
                self._drop_session(args[0])
            elif name == "close_all_sessions":  # sessions another thread opened meanwhile keep their operations
                for session in {e[0] for e in (*self.deferred, *self.active)} - set(self._sessions()):
                    self._drop_session(session)
            elif name != "login":
                self.deferred.clear()
                self.active.clear()
        elif call.changes_object:
            self.proven = {p for p in self.proven if p[1] != args[1]}

    def _drop_session(self, session: Any) -> None:
        for entry in [e for e in self.deferred if e[0] == session]:
            del self.deferred[entry]
        self.active = {e: started for e, started in self.active.items() if e[0] != session}

    async def init(self, kind: str, session: int, mechanism: Mechanism | None, key: int | None) -> None:
        """``C_<kind>Init``; a NULL mechanism ends the operation (PKCS#11 3.0 §5.8)."""
        slot = (session, kind)
        if mechanism is None:
            await self.cancel(session, int(FLAGS[kind]))
            return
        if slot in self.deferred:
            raise OperationActive(f"a {kind} operation is already active in this session")
        proof = (kind, key, mechanism)
        if proof in self.proven and slot not in self.active and session in self._sessions():
            self.deferred[slot] = _Deferred(mechanism, key)
            return
        epoch = self.epoch
        await self._init_in_hsm(kind, session, mechanism, key)
        if epoch != self.epoch:  # a logout or another user's login while it ran: it proves nothing now
            return
        if len(self.proven) >= MAX_PROVEN:
            self.proven.clear()
        self.proven.add(proof)

    async def cancel(self, session: int, flags: int) -> None:
        """``C_SessionCancel``: end the operations ``flags`` names (``CKF.SIGN`` …)."""
        await self._call("session_cancel", session, flags)
        for kind, flag in FLAGS.items():
            if flags & flag:
                self.deferred.pop((session, kind), None)
                self.active.pop((session, kind), None)

    async def _init_in_hsm(self, kind: str, session: int, mechanism: Mechanism, key: int | None) -> None:
        args = (session, mechanism) if key is None else (session, mechanism, key)
        await self._call(f"{kind}_init", *args)
        self.active[(session, kind)] = (mechanism, key)
        self.fed.discard((session, kind))

    async def _real(self, kind: str, session: int) -> None:
        """Make a deferred operation real before a multi-part call. One whose single-part output a size query
        already computed ends instead, as the HSM's own operation does (PKCS#11 3.0 §5.2: the call fails)."""
        deferred = self.deferred.pop((session, kind), None)
        if deferred is not None and deferred.output is not None:
            raise OperationActive("a size query computed this operation's single-part result, which only the "
                                  "single-part call delivers; the operation has ended, start it again")
        if deferred is not None:
            await self._init_in_hsm(kind, session, deferred.mechanism, deferred.key)

    async def single(self, kind: str, session: int, data: bytes, capacity: int | None) -> wire.Writer:
        """``C_Encrypt``/``C_Decrypt``/``C_Sign``/``C_Digest``: the output, or only its length for a size query
        (``capacity`` None) or a buffer that is too small (PKCS#11 3.0 §5.2)."""
        deferred = self.deferred.get((session, kind))
        if deferred is None:
            started = self.active.get((session, kind))
            try:
                return await self._out(kind, session, kind, (session, data), capacity)
            except _HSM_GONE:
                if started is None:
                    raise
            # The HSM holding the operation is gone (failover): no data reached it yet, so the same init with
            # the operation runs as one request on any HSM, and the application never sees the failover.
            deferred = self.deferred[(session, kind)] = _Deferred(*started)
        if deferred.output is not None and deferred.data != data:
            self.deferred.pop((session, kind), None)
            raise OperationActive("a size query fixed this operation's input; the operation has ended, "
                                  "start it again")
        if deferred.output is None:
            try:
                deferred.output = await self._once(kind, session, deferred, data)
            except StrongroomError:
                self.deferred.pop((session, kind), None)
                raise
            deferred.data = data
        if capacity is None or capacity < len(deferred.output):
            return wire.Writer().byte_array(None, len(deferred.output))
        self.deferred.pop((session, kind), None)  # a logout while the HSM signed may have ended it already
        return wire.Writer().byte_array(deferred.output)

    async def _once(self, kind: str, session: int, deferred: _Deferred, data: bytes) -> bytes:
        """The output of ``{kind}_once``: the deferred init and the single-part call as one request (a digest
        carries no key)."""
        output: bytes
        if deferred.key is None:
            output = await self._call(f"{kind}_once", session, deferred.mechanism, data)
        else:
            output = await self._call(f"{kind}_once", session, deferred.mechanism, deferred.key, data)
        return output

    async def verify(self, session: int, data: bytes, signature: bytes) -> None:
        """``C_Verify``."""
        deferred = self.deferred.pop((session, "verify"), None)
        started = self.active.get((session, "verify"))
        if deferred is None:
            try:
                await self._call("verify", session, data, signature)
                return
            except _HSM_GONE:
                if started is None:
                    raise
                deferred = _Deferred(*started)  # failover: as in single()
            finally:
                self.active.pop((session, "verify"), None)
        await self._call("verify_once", session, deferred.mechanism, deferred.key, data, signature)

    async def update(self, kind: str, session: int, data: bytes, capacity: int | None = None,
                     output: bool = False) -> wire.Writer | None:
        """``C_<kind>Update``; ``output`` for the cipher updates, which answer like ``single``."""
        await self._real(kind, session)
        self.fed.add((session, kind))
        if output:
            return await self._out(kind, session, f"{kind}_update", (session, data), capacity, ends=False)
        try:
            await self._call(f"{kind}_update", session, data)
        except StrongroomError:
            self.active.pop((session, kind), None)
            raise
        return None

    def carry_over(self) -> tuple[list[tuple[int, str, Mechanism, int | None, bytes | None, bytes | None]],
                                  set[int]]:
        """What a successor agent can go on with: every operation the agent holds (``(session, kind,
        mechanism, key, size-query input, its output)``), including those an HSM holds that have had no data
        yet (the single-part call then runs as one ``*_once`` request); and the sessions whose operation on an
        HSM has had data, which it cannot."""
        held = [(s, kind, d.mechanism, d.key, d.data, d.output) for (s, kind), d in self.deferred.items()]
        lost = set()
        for (s, kind), (mechanism, key) in self.active.items():
            if (s, kind) in self.fed:
                lost.add(s)
            elif (s, kind) not in self.deferred:
                held.append((s, kind, mechanism, key, None, None))
        return held, lost

    def resume(self, held: list[tuple[int, str, Mechanism, int | None, bytes | None, bytes | None]]) -> None:
        """Go on with the operations of :meth:`carry_over` (an earlier agent's)."""
        for session, kind, mechanism, key, data, output in held:
            self.deferred[(session, kind)] = _Deferred(mechanism, key, data, output)

    async def final(self, kind: str, session: int, capacity: int | None) -> wire.Writer:
        """``C_<kind>Final`` with an output."""
        await self._real(kind, session)
        return await self._out(kind, session, f"{kind}_final", (session,), capacity)

    async def verify_final(self, session: int, signature: bytes) -> None:
        await self._real("verify", session)
        try:
            await self._call("verify_final", session, signature)
        finally:
            self.active.pop((session, "verify"), None)

    async def _out(self, kind: str, session: int, name: str, args: tuple[Any, ...], capacity: int | None,
                   ends: bool = True) -> wire.Writer:
        """An ``fy`` → ``ay`` output from the HSM; the operation ends unless only a length was answered."""
        try:
            answer, length_only = await sized_output(self._call, name, args, capacity)
        except StrongroomError:
            self.active.pop((session, kind), None)
            raise
        if ends and not length_only:
            self.active.pop((session, kind), None)
        return answer
