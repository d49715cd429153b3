"""The client agent's PKCS#11 face: serves p11-kit's RPC protocol on a unix socket, one application per
connection, each with the SDK's connections to the cluster (balancing, failover, re-login).

Applications load p11-kit's ``p11-kit-client.so`` with ``P11_KIT_SERVER_ADDRESS=unix:path=SOCKET`` (or a
``remote:`` line in a p11-kit module file). The agent offers one slot (id 1) whose token is the cluster.
Calls it does not implement are answered ``CKR_FUNCTION_NOT_SUPPORTED``; a body it cannot parse is answered
``CKR_ARGUMENTS_BAD``; the connection stays up either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import grp
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client.balancer import Balancer
from ..client.config import ClientConfig, ConfigFile
from ..client.connection import quiet_lost_connections
from ..protocol.tls import client_context
from . import handover
from .served import ServedApplication

log = logging.getLogger("strongroom.pkcs11")
HANDOVER_GRACE_S = 0.0  # how long a stopping agent holds its applications for a successor (seconds)


def group_id(group: str) -> int:
    """The id of ``group``, a group name or a decimal id. Raises ValueError for a name this host does not know."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"no group {group!r} on this host: give a group name or id from /etc/group") from None


def unreachable_folder(folder: Path, gid: int) -> Path | None:
    """The first folder from ``folder`` up to ``/`` that members of group ``gid`` cannot search (enter), or None.

    A folder is searchable by the group when others may search it (``o+x``), or when it belongs to the group and
    the group may (``g+x``); a folder with a POSIX ACL counts as searchable (its entries are not read). Raises
    OSError when a folder cannot be examined (stat(2))."""
    for each in (folder.resolve(), *folder.resolve().parents):
        status = each.stat()
        if not (status.st_mode & 0o001 or (status.st_gid == gid and status.st_mode & 0o010) or _has_acl(each)):
            return each
    return None


def _has_acl(folder: Path) -> bool:
    try:
        os.getxattr(folder, "system.posix_acl_access")
    except OSError:  # ENODATA: no ACL; ENOTSUP: a file system without them
        return False
    return True

TOKEN_LABEL_BYTES = 32  # CK_TOKEN_INFO.label, blank-padded


class Agent:
    """Serves p11-kit RPC on a unix socket for every application of this host.

    Args:
        config: the SDK configuration of the cluster.
        socket_path: where to listen; created with mode 0600.
        token_label: the token's label (the cluster id if omitted).
        group: a group name or id that may use the socket too (mode 0660); every folder on the way to the
            socket must be searchable by it (:meth:`start` refuses otherwise).
        grace_s: how long a stopping agent holds connected applications for its successor (seconds).

    Raises:
        ValueError: for an unknown group, or a ``token_label`` longer than ``CK_TOKEN_INFO.label`` (32 bytes
            in UTF-8, PKCS#11 3.0 §3.2).
        OSError: the client key in ``config`` cannot be read.
    """

    def __init__(self, config: ClientConfig, socket_path: Path, token_label: str | None = None,
                 group: str | None = None, grace_s: float = HANDOVER_GRACE_S) -> None:
        if token_label is not None and len(token_label.encode("utf-8")) > TOKEN_LABEL_BYTES:
            raise ValueError(f"the token label is {len(token_label.encode('utf-8'))} bytes in UTF-8; a PKCS#11 "
                             f"token label holds at most {TOKEN_LABEL_BYTES}: shorten it")
        self.config = config
        # a configuration read from a file is followed: HSMs added there are used, by running applications'
        # connections too; HSMs it no longer names and the cluster no longer lists are dropped
        self._followed = ConfigFile(config.source, config.certificate) if config.source is not None else None
        self.socket_path = Path(socket_path)
        self.token_label = token_label
        self.group = group
        self.gid = group_id(group) if group is not None else None
        self.grace_s = grace_s
        self.balancers: set[Balancer] = set()  # of the connected applications
        self.applications: set[ServedApplication] = set()
        self.holding = False  # stopping: cluster calls are answered CKR_DEVICE_ERROR until a successor comes
        self.taken_over = 0  # applications taken over from a predecessor at the start
        self.ssl_context = client_context(config.trust_anchor, cert_file=config.client_cert,
                                          key_file=config.client_key)
        self.secret = handover.secret_of(config.client_key)
        self._tasks: set[asyncio.Future[None]] = set()
        self._listener_fd = -1
        self._point: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None
        self._handed_over = asyncio.Event()  # a successor took the socket and the applications
        self._handing = False  # the applications are being handed over (or taken back if that fails)

    def current_config(self) -> ClientConfig:
        """The configuration a new application's connections start from: the configured HSMs and every member
        the running applications' connections discovered since (so a new application finds the cluster even when
        the configured HSMs are down); members the configuration file no longer names stay only while a running
        application's connections still list them."""
        fresh = self._followed.changed() if self._followed is not None else None
        if fresh is not None:
            self.config = dataclasses.replace(self.config, endpoints=fresh.endpoints)
        known = {node.endpoint for balancer in self.balancers for node in balancer.nodes if not node.retired}
        endpoints = tuple(dict.fromkeys([*self.config.endpoints, *sorted(known)]))
        return dataclasses.replace(self.config, endpoints=endpoints)

    async def start(self) -> None:
        """Serve on the socket: take over the listening socket and the applications of an agent already serving
        it (see :mod:`.handover`), or make the socket; then open this agent's handover point.

        Raises:
            OSError: the socket cannot be made (its folder does not exist, no permission, or a folder on its
                way the socket group cannot search).
            handover.HandoverError: an agent serves the socket and the handover failed (another user, another
                key, or it left half way).
        """
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet_lost_connections)
        point = handover.point_path(self.socket_path)
        taken = None
        if self.secret is not None:
            taken = await asyncio.to_thread(self._take_over, point, self.secret, 2 * self.config.timeout_s + 30)
        if taken is None:
            listener = self._listen()
        else:
            listener, applications = taken
            for state, conn in applications:
                self._spawn(self._adopt(state, conn))
            self.taken_over = len(applications)
        self._listener_fd = os.dup(listener.fileno())
        self._server = await asyncio.start_unix_server(self._connected, sock=listener)
        if self.secret is not None:
            self._point = handover.listen(point)
            threading.Thread(target=self._offer, args=(self._point, self.secret, loop), daemon=True,
                             name="handover").start()

    @staticmethod
    def _take_over(point: Path, secret: bytes, timeout_s: float) -> Any:
        sock = handover.connect(point)
        if sock is None:
            return None
        with sock:
            sock.settimeout(handover.AUTH_TIMEOUT_S)
            try:
                handover.prove_successor(sock, secret)
                sock.settimeout(timeout_s)  # the running agent lets its requests under way finish first
                return handover.receive_all(sock)
            except OSError as exc:
                raise handover.HandoverError(f"the handover from the running agent failed: {exc}") from None

    def _listen(self) -> socket.socket:
        if self.gid is not None and (closed := unreachable_folder(self.socket_path.parent, self.gid)) is not None:
            mode = closed.stat().st_mode & 0o777
            raise PermissionError(errno.EACCES, (
                f"the socket group {self.group} cannot reach it: {closed} (mode {mode:04o}) is not searchable by "
                f"that group; allow it (chgrp {self.group} and chmod g+x, or chmod o+x) or choose a socket folder "
                "the group can reach"))
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX)
        old = os.umask(0o177)
        try:
            listener.bind(str(self.socket_path))
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.socket_path, -1, self.gid)
            os.chmod(self.socket_path, 0o660)
        listener.listen(128)
        return listener

    def _offer(self, point: socket.socket, secret: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """The handover point's thread: one successor at a time; whoever fails the proof gets nothing."""
        try:
            self._offer_until_taken(point, secret, loop)
        except Exception:
            log.exception("the handover point failed")  # the agent serves on without one

    def _offer_until_taken(self, point: socket.socket, secret: bytes, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                conn, _ = point.accept()
            except OSError:
                return  # closed: this agent stops
            with conn:
                conn.settimeout(handover.AUTH_TIMEOUT_S)
                try:
                    handover.prove_predecessor(conn, secret)
                except (handover.HandoverError, OSError) as exc:
                    log.warning("refused a handover: %s", exc)
                    continue
                released = asyncio.run_coroutine_threadsafe(self._release(), loop).result()
                try:
                    conn.settimeout(30)
                    handover.send_all(conn, self._listener_fd, released)
                except (handover.HandoverError, OSError) as exc:
                    log.warning("the handover failed, serving on: %s", exc)
                    asyncio.run_coroutine_threadsafe(self._resume(released), loop).result()
                    continue
                for _, fd in released:
                    os.close(fd)
                log.info("handed %d applications over", len(released))
                loop.call_soon_threadsafe(self._handed_over.set)
                return

    async def _release(self) -> list[tuple[handover.ApplicationState, int]]:
        self._handing = True
        if self._server is not None:
            self._server.close()  # connections from now on wait in the queue for the successor
        for _ in range(3):
            await asyncio.sleep(0)  # connections just accepted reach _connected
        applications = list(self.applications)
        self.applications.clear()
        released = await asyncio.gather(*(app.release() for app in applications), return_exceptions=True)
        for app, outcome in zip(applications, released, strict=True):
            if isinstance(outcome, BaseException):
                log.info("%s is not handed over: %s", app.process, outcome)
        return [outcome for outcome in released if not isinstance(outcome, BaseException)]

    async def _resume(self, released: list[tuple[handover.ApplicationState, int]]) -> None:
        """Take the applications back after a handover that failed, as a successor would."""
        try:
            for state, fd in released:
                self._spawn(self._adopt(state, socket.socket(socket.AF_UNIX, fileno=fd)))
            listener = socket.socket(socket.AF_UNIX, fileno=os.dup(self._listener_fd))
            self._server = await asyncio.start_unix_server(self._connected, sock=listener)
        finally:
            self._handing = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt(self, state: handover.ApplicationState, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn)
        except OSError:
            conn.close()
            return
        await self._run(ServedApplication(self, reader, writer, state))

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run(ServedApplication(self, reader, writer))

    async def _run(self, app: ServedApplication) -> None:
        app.task = asyncio.current_task()
        self.applications.add(app)
        try:
            await app.serve()
        except asyncio.CancelledError:
            pass  # the agent is stopping or handing over; ending quietly keeps asyncio from logging it as failed
        finally:
            if not app.releasing:
                self.applications.discard(app)

    async def serve_until_signalled(self, ready: Callable[[], None] | None = None,
                                    holding: Callable[[int], None] | None = None) -> bool:
        """Serve until a successor takes over or the process gets SIGTERM or SIGINT. Stopping with applications
        connected, the agent holds them up to ``grace_s`` seconds for a successor (``holding`` is told how many),
        answering their cluster calls ``CKR_DEVICE_ERROR`` at once; a second signal, the grace running out or
        the last application leaving ends it.

        Returns:
            Whether a successor took the socket and the applications over.

        Raises:
            OSError: the socket cannot be made (its folder does not exist, no permission, or a folder on its
                way the socket group cannot search).
            handover.HandoverError: another agent serves the socket and would not hand it over.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if ready is not None:
            ready()
        try:
            await self._until(stop, None)
            if not self._handed_over.is_set() and self.applications and self.grace_s > 0:
                self.holding = True
                stop.clear()
                if holding is not None:
                    holding(len(self.applications))
                await self._until(stop, loop.time() + self.grace_s)
            while self._handing and not self._handed_over.is_set():
                await asyncio.sleep(0.05)  # a handover under way ends either way within its timeouts
            return self._handed_over.is_set()
        finally:
            self.close()

    async def _until(self, stop: asyncio.Event, deadline: float | None) -> None:
        """Until ``stop``, a handover or ``deadline`` (loop time; while holding, also no application left)."""
        loop = asyncio.get_running_loop()
        while not (stop.is_set() or self._handed_over.is_set()):
            if deadline is not None and (loop.time() >= deadline or not self.applications):
                return
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._handed_over.wait())]
            await asyncio.wait(waits, timeout=None if deadline is None else 0.2,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()

    def close(self) -> None:
        """Stop serving: close the handover point, the listening socket and (unless handed over) every
        application's connection; remove the socket unless a successor serves it."""
        point, self._point = self._point, None
        if point is not None:
            try:
                point.shutdown(socket.SHUT_RDWR)  # wakes the handover thread's accept
            except OSError:
                pass
            point.close()
        handed_over = self._handed_over.is_set()
        if not handed_over:
            handover.point_path(self.socket_path).unlink(missing_ok=True)
            if self._listener_fd >= 0:
                self.socket_path.unlink(missing_ok=True)
        if self._server is not None:
            self._server.close()
        if self._listener_fd >= 0:
            os.close(self._listener_fd)
            self._listener_fd = -1
        for app in list(self.applications):
            if app.task is not None:
                app.task.cancel()
