"""Client balancing and failover: one connection to every HSM, each request to the least busy one.

The configuration names some HSMs (a file is read again when it changes); the others are discovered from any
of them (``cluster_status`` lists the members' endpoints) at start and every 5 s; HSMs neither names are dropped.

Sessions the application opens are *virtual*: a :class:`VirtualSession` opens a real session on each HSM the
first time a request goes there, and logs it in with the credentials the application gave (PKCS#11 login state
belongs to one application, that is one connection, so each HSM gets its own login). A request that fails
because its HSM went away (``ConnectionLost``), could not commit a write (``NoQuorum``) or has not caught up
with the client's writes (``NodeBehind``) is sent again to another HSM until the request's deadline; writes
carry a request key, so a write sent twice is done once. Lost connections are re-established in the background.

Two things stay on one HSM: a multi-part operation between its ``*_init`` and its end (the HSM holds its
state), and a session that made session objects (they live on that HSM only). If that HSM fails, the
operation or those objects are lost and the application sees the error.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import time
from typing import Any

from ..errors import (
    SessionHandleInvalid,
    SessionReadOnlyExists,
    StrongroomError,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
)
from ..protocol import CALL_SPECS
from ..vocab import CKF, CKU
from .config import ClientConfig
from .connection import ConnectionLost, result_of
from .links import ATTEMPT_TIMEOUT_S, Links
from .members import SESSION_OBJECT_BIT, Member, VirtualSession, check_session_flags, may_make_session_objects

_NO_NODES: frozenset[Member] = frozenset()


class Balancer(Links):
    """Connections to every HSM of a cluster and the routing of requests over them.

    Args:
        config: the client configuration (its ``endpoints`` are the HSMs).
        ssl_context: from :func:`strongroom.protocol.tls.client_context`.
        client: the application behind a client agent (``pid=… uid=… gid=…``), sent with every login for the
            audit trail; empty for none.
    """

    def __init__(self, config: ClientConfig, ssl_context: ssl.SSLContext, client: str = "") -> None:
        super().__init__(config, ssl_context)
        self.client = client
        self.sessions: dict[int, VirtualSession] = {}
        self.credentials: tuple[int, str] | None = None
        self.home: Member | None = None  # the HSM holding the application's session objects
        self._homing = asyncio.Lock()  # calls that may make the first session objects go one at a time
        self.login_lock = asyncio.Lock()
        # The application's login ends (logout, last session closed) while logins on further HSMs may be on
        # their way: each of those checks this count when it returns and undoes itself if it changed, and a
        # logout answers only once they have.
        self._login_epoch = 0
        self._logins_pending = 0
        self._logins_settled = asyncio.Event()
        self._logins_settled.set()
        self._vids = itertools.count(1)

    def carry_over(self) -> tuple[int, int]:
        """What a successor needs beside :attr:`sessions` and :attr:`credentials` to go on where this balancer
        stops (:meth:`resume`): ``(next session id, highest log index seen)``. Takes a session id."""
        return next(self._vids), self.index

    def resume(self, sessions: list[tuple[int, int]], credentials: tuple[int, str] | None, next_session: int,
               index: int) -> None:
        """Go on with an earlier balancer's sessions (``(id, CKF flags)``) and login ``(CKU, PIN)``, before any
        call: each HSM gets a real session, logged in, at its first request there."""
        self.sessions = {vid: VirtualSession(vid, flags) for vid, flags in sessions}
        self.credentials = credentials
        self._vids = itertools.count(next_session)
        self.index = max(self.index, index)

    # ----------------------------------------------------------------- requests
    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run one call on the cluster; session calls take the virtual session id as their first argument.

        A call whose session is open on the chosen HSM goes straight out; set-up and retries go through
        :meth:`call_keyed`."""
        if self.home is None and may_make_session_objects(name, args):
            async with self._homing:  # the first session object settles the home; the others then follow it
                return await self.call_keyed(name, args, kwargs, None)
        plan = self.plan(name, args)
        if plan is None:
            return await self.call_keyed(name, args, kwargs, None)
        node, call_args, key, vs = plan
        conn = node.conn
        if conn is None:  # lost since it was planned
            return await self.call_keyed(name, args, kwargs, None)
        node.outstanding += 1
        try:
            response = await conn.request(name, call_args, kwargs, timeout_s=self.attempt_timeout(name),
                                          after=self.index, key=key)
        except StrongroomError:
            return await self.call_keyed(name, args, kwargs, key or None)
        finally:
            node.outstanding -= 1
        if response.index > self.index:
            self.index = response.index
        if response.ckr:
            try:
                result_of(response)
            except StrongroomError as exc:
                if exc.retryable and self.fixed(vs) is None:
                    return await self.call_keyed(name, args, kwargs, key or None)
                self.settle_error(vs, name, exc)
                raise
        value = response.value
        self.settle(vs, node, name, kwargs, value, args[1:])
        return value

    async def call_keyed(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], key: bytes | None) -> Any:
        """:meth:`call` with the request key of a write that was already sent once (``None``: a new one)."""
        if name == "open_session":
            return await self._open_session(*args, **kwargs)
        if name == "close_session":
            return await self._close_session(*args)
        if name == "close_all_sessions":
            for vid in list(self.sessions):
                await self._close_session(vid)
            return None
        if CALL_SPECS[name].session:
            vs = self.sessions.get(args[0]) if isinstance(args[0], int) else None
            if vs is None:
                raise SessionHandleInvalid(f"no open session {args[0]!r:.40}")
            return await self._session_call(vs, name, args[1:], kwargs, key)
        return await self._retrying(None, name, args, kwargs, key)

    # ----------------------------------------------------------------- the synchronous API's fast path
    def plan(self, name: str, args: tuple[Any, ...]) -> tuple[Member, tuple[Any, ...], bytes,
                                                              VirtualSession | None] | None:
        """The HSM, arguments and request key of a call that needs no session set-up there, so it can be sent
        straight out (from the loop, or from a synchronous caller's own thread); ``None``: it goes through
        :meth:`call_keyed`."""
        vs = None
        call = CALL_SPECS[name]
        if call.session_control or (self.home is None and may_make_session_objects(name, args)):
            return None
        if call.session:
            vs = self.sessions.get(args[0]) if isinstance(args[0], int) else None
            if vs is None:
                return None
            node = self.fixed(vs) or self._pick(_NO_NODES)
            if node is None or not node.up:
                return None
            known = vs.handles.get(node.endpoint)
            if known is None or known[0] != node.generation or (self.credentials is not None
                                                                 and not node.logged_in):
                return None
            args = (known[1], *args[1:])
        else:
            node = self._pick(_NO_NODES)
            if node is None or node.conn is None:
                return None
        return node, args, os.urandom(16) if call.write else b"", vs

    def fixed(self, vs: VirtualSession | None) -> Member | None:
        """The HSM a session's calls must go to: the one running its multi-part operation, else the one holding
        the application's session objects (every session of an application sees them, PKCS#11 3.0 §4.4) while
        it is up; ``None``: any."""
        if vs is None:
            return None
        if vs.pinned is not None:
            return vs.pinned
        if self.home is not None and not self.home.up:
            self.home = None  # its session objects ended with it
        return self.home

    def attempt_timeout(self, name: str) -> float:
        return self.config.timeout_s if CALL_SPECS[name].slow else min(ATTEMPT_TIMEOUT_S, self.config.timeout_s)

    def settle(self, vs: VirtualSession | None, node: Member | None, name: str, kwargs: dict[str, Any],
               value: Any, rest: tuple[Any, ...] = ()) -> None:
        """Session bookkeeping after a successful session call on ``node`` (``rest``: its arguments after the
        session)."""
        if vs is None:
            return
        vs.last = node
        call = CALL_SPECS[name]
        if call.starts:
            vs.pinned = node
            vs.operations.add(call.operation)
        elif call.ends and not kwargs.get("query"):
            vs.ended(call.operation, rest)
        if call.makes_objects:
            handles = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(h, int) and h & SESSION_OBJECT_BIT for h in handles):
                self.home = node

    @staticmethod
    def settle_error(vs: VirtualSession | None, name: str, exc: StrongroomError) -> None:
        """Session bookkeeping after a session call failed for good (:meth:`VirtualSession.failed`)."""
        if vs is not None:
            vs.failed(name, exc.ckr, isinstance(exc, ConnectionLost))

    async def _retrying(self, vs: VirtualSession | None, name: str, rest: tuple[Any, ...],
                        kwargs: dict[str, Any], key: bytes | None = None) -> Any:
        if key is None:
            key = os.urandom(16) if CALL_SPECS[name].write else b""
        deadline = time.monotonic() + self.config.timeout_s
        attempt_s = self.attempt_timeout(name)
        avoid: set[Member] = set()
        delay = 0.02
        while True:
            bound = self.fixed(vs)
            node = bound or self._pick(avoid)
            try:
                if node is None:
                    raise ConnectionLost("no HSM of the cluster is reachable")
                if vs is None:
                    return await self._send(node, name, rest, kwargs, key, attempt_s)
                handle = await self._ensure(vs, node)
                value = await self._send(node, name, (handle, *rest), kwargs, key, attempt_s)
                vs.last = node
                return value
            except StrongroomError as exc:
                if not exc.retryable or bound is not None or time.monotonic() + delay > deadline:
                    raise
                if node is not None:
                    avoid.add(node)
                    if isinstance(exc, ConnectionLost) and node.conn is not None:
                        node.conn.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _ensure(self, vs: VirtualSession, node: Member) -> int:
        """The real handle of ``vs`` on ``node``, opening a session there and logging the application in with
        its credentials if needed."""
        known = vs.handles.get(node.endpoint)
        if known is not None and known[0] == node.generation and (self.credentials is None or node.logged_in):
            return known[1]
        async with node.lock:
            generation = node.generation
            known = vs.handles.get(node.endpoint)
            if known is not None and known[0] == generation:
                handle = known[1]
            else:
                handle = await self._send(node, "open_session", (vs.flags,), {}, b"", ATTEMPT_TIMEOUT_S)
                vs.handles[node.endpoint] = (generation, handle)
            if self.credentials is not None and not node.logged_in:
                await self._login_there(node, handle, *self.credentials)
            return handle

    async def _login_there(self, node: Member, handle: int, user_type: int, pin: str) -> None:
        """Log the application in on one more HSM; if its login ended meanwhile, log that HSM out again (the
        call that needed the session goes on without the login, and the HSM answers it as such)."""
        epoch = self._login_epoch
        self._logins_pending += 1
        self._logins_settled.clear()
        try:
            try:
                await self._send(node, "login", (handle, user_type, pin), self._login_kwargs(), b"",
                                 self.config.timeout_s)
            except UserAlreadyLoggedIn:
                pass
            if epoch == self._login_epoch:
                node.logged_in = True
                return
            try:
                await self._send(node, "logout", (handle,), {}, b"", ATTEMPT_TIMEOUT_S)
            except StrongroomError:
                pass
        finally:
            self._logins_pending -= 1
            if not self._logins_pending:
                self._logins_settled.set()

    def _login_ended(self) -> None:
        self.credentials = None
        self._login_epoch += 1

    async def _session_call(self, vs: VirtualSession, name: str, rest: tuple[Any, ...],
                            kwargs: dict[str, Any], key: bytes | None = None) -> Any:
        if name == "login":
            return await self._login(vs, rest)
        if name == "logout":
            return await self._logout(vs)
        try:
            value = await self._retrying(vs, name, rest, kwargs, key)
        except StrongroomError as exc:
            self.settle_error(vs, name, exc)
            raise
        self.settle(vs, vs.last, name, kwargs, value, rest)
        return value

    def open_session_here(self, flags: int) -> int:
        """``C_OpenSession`` answered without any HSM (a client agent holding its application for a successor:
        the session is handed over with the others, and opens on an HSM at its first request there).

        Raises:
            SessionParallelNotSupported, SessionReadWriteSoExists: as :func:`.members.check_session_flags`.
        """
        check_session_flags(int(flags), self.credentials)
        vs = VirtualSession(next(self._vids), int(flags))
        self.sessions[vs.vid] = vs
        return vs.vid

    async def _open_session(self, flags: int) -> int:
        vs = VirtualSession(next(self._vids), int(flags))
        self.sessions[vs.vid] = vs
        try:
            await self._retrying(vs, "session_info", (), {})
        except BaseException:
            self.sessions.pop(vs.vid, None)
            raise
        return vs.vid

    async def _close_session(self, vid: Any) -> None:
        vs = self.sessions.pop(vid, None) if isinstance(vid, int) else None
        if vs is None:
            raise SessionHandleInvalid(f"no open session {vid!r:.40}")
        # a copy of each: other calls of the application change them while this one waits for an HSM
        for endpoint, (generation, handle) in list(vs.handles.items()):
            node = next((n for n in self.nodes if n.endpoint == endpoint), None)
            if node is not None and node.up and node.generation == generation:
                try:
                    await self._send(node, "close_session", (handle,), {}, b"", ATTEMPT_TIMEOUT_S)
                except StrongroomError:
                    pass
                if not any(s.handles.get(endpoint, (None,))[0] == generation for s in self.sessions.values()):
                    node.logged_in = False  # that HSM ended the login with the last session it had
        if not self.sessions:  # closing the application's last session ends its login (PKCS#11 3.0 §5.6)
            self._login_ended()
            self.home = None
            for node in self.nodes:
                node.logged_in = False

    async def _login(self, vs: VirtualSession, rest: tuple[Any, ...]) -> None:
        """The application's login (PKCS#11 3.0 §5.6: one login for all its sessions), one at a time."""
        user_type, pin = rest
        async with self.login_lock:
            if self.credentials is not None:
                if self.credentials[0] == user_type:
                    raise UserAlreadyLoggedIn("the application is already logged in")
                raise UserAnotherAlreadyLoggedIn("the application is logged in as another user type; log out first")
            if user_type == CKU.SO and any(not s.flags & CKF.RW_SESSION for s in self.sessions.values()):
                raise SessionReadOnlyExists("close the read-only sessions before an admin login")
            await self._retrying(vs, "login", (user_type, pin), self._login_kwargs())
            self.credentials = (int(user_type), pin)
            node = vs.last
            if node is not None:
                node.logged_in = True

    def _login_kwargs(self) -> dict[str, Any]:
        return {"client": self.client} if self.client else {}

    async def _logout(self, vs: VirtualSession) -> None:
        await self._retrying(vs, "logout", (), {})
        here = vs.last
        self._login_ended()
        await self._logins_settled.wait()  # logins on other HSMs that were on their way undid themselves
        for node in list(self.nodes):  # a copy: discovery may change the list while this waits for an HSM
            if node.logged_in and node is not here and node.up:
                handle = next((h for s in self.sessions.values() for e, (g, h) in s.handles.items()
                               if e == node.endpoint and g == node.generation), None)
                if handle is not None:
                    try:
                        await self._send(node, "logout", (handle,), {}, b"", ATTEMPT_TIMEOUT_S)
                    except StrongroomError:
                        pass
            node.logged_in = False
