"""Handing a running agent's applications to its successor, so that a restart of the agent (or of
``strongroom up``) does not end them.

p11-kit's client module never reconnects: once its socket to the agent closes, every call answers
``CKR_DEVICE_ERROR`` until the application finalizes and initializes the module again (p11-kit 0.24
``rpc-transport.c``). So the connections themselves must outlive the agent process. The agent listens on a
*handover point* beside its socket (``SOCKET.handover``, mode 0600, ``SOCK_SEQPACKET``). An agent starting on the
same socket connects there; both check that the other end runs as the same user (``SO_PEERCRED``) and prove to
each other that they can read the agent's TLS client key (an HMAC-SHA256 over both sides' random challenges,
keyed by a digest of the key file), so nothing leaves the running agent before the successor has proven it
could act as the agent anyway. The running agent then stops reading from its applications at a frame boundary,
lets the requests under way finish and passes its listening socket and every application connection
(``SCM_RIGHTS``) with each one's state: the bytes read but not yet handled, the negotiated protocol version,
the open sessions, the login (the PIN travels over this socket and stays in memory, never on disk) and the
crypto operations the agent holds. The successor opens real sessions and logs in again on each HSM at the
first call, as the SDK does after an HSM fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..errors import DeviceError, TransportError
from ..mechanism_params import Mechanism

MAGIC = b"strongroom-agent-handover-1"
CHALLENGE_BYTES = 32
CHUNK_BYTES = 60000  # one SOCK_SEQPACKET message: below the default socket buffer
AUTH_TIMEOUT_S = 5.0  # the other side answers each step of the proof within this
MAX_STATE_BYTES = 64 << 20  # one application's state: a partly read frame (17 MiB at most) and what follows it
_LENGTH = struct.Struct(">Q")


class HandoverError(DeviceError, TransportError):
    """``CKR_DEVICE_ERROR``: a handover that could not be made: the other side is not the same user, failed the
    proof, or left."""


class Operation(msgspec.Struct, frozen=True):
    """A crypto operation the agent holds for a session without the HSM (an init answered locally)."""

    session: int
    kind: str
    mechanism: Mechanism
    key: int | None
    data: bytes | None = None  # input whose output was computed for a size query, and that output
    output: bytes | None = None


class ApplicationState(msgspec.Struct, frozen=True):
    """One application connection as its successor takes it over.

    ``version`` is the p11-kit protocol version (-1: not negotiated yet); ``frames`` the requests read whole but
    not yet started (code, options, body; ``None`` for one over the size limit, already answered); ``buffer``
    the bytes read after them; ``skipping`` the bytes of an oversized frame still to discard; ``sessions`` the
    open sessions ``(handle, CKF flags)`` that survive; ``lost`` the sessions that cannot (session objects or a
    multi-part operation on an HSM that the handover ends): they answer ``CKR_SESSION_HANDLE_INVALID``;
    ``credentials`` ``(CKU user type, PIN)`` of the application's login; ``next_session`` the next session
    handle; ``index`` the highest log index the application has seen; ``tried`` ``(CKU user type, user name)``
    of its last login attempt (for the PIN flags)."""

    version: int
    frames: list[tuple[int, bytes, bytes | None]]
    buffer: bytes
    skipping: int
    sessions: list[tuple[int, int]]
    lost: list[int]
    credentials: tuple[int, str] | None
    next_session: int
    index: int
    operations: list[Operation]
    tried: tuple[int, str] | None = None


def point_path(socket_path: Path) -> Path:
    """The handover point of the agent serving ``socket_path``."""
    return socket_path.with_name(socket_path.name + ".handover")


def secret_of(key_file: Path | None) -> bytes | None:
    """The key both agents prove they hold: SHA-256 over the agent's TLS client key file (``None`` without one:
    no handover is offered or asked for)."""
    if key_file is None:
        return None
    return hashlib.sha256(b"strongroom agent handover\0" + Path(key_file).read_bytes()).digest()


def _mac(secret: bytes, role: bytes, challenge: bytes, answer: bytes, successor: int, predecessor: int) -> bytes:
    """The proof of ``role``: bound to both challenges and to both ends' process ids as each end sees them, so
    that a process relaying between two agents (each seeing it at the other end) proves nothing."""
    ends = struct.pack(">ii", successor, predecessor)
    return hmac.new(secret, role + b"\0" + challenge + answer + ends, hashlib.sha256).digest()


def _same_user(sock: socket.socket) -> int:
    """The process id at the other end, once it is known to run as this process's user."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if uid != os.getuid():
        raise HandoverError(f"the process at the other end (pid {pid}) runs as uid {uid}, not {os.getuid()}")
    return int(pid)


def _receive(sock: socket.socket, size: int = CHUNK_BYTES) -> bytes:
    data = sock.recv(size)
    if not data:
        raise HandoverError("the other agent left during the handover")
    return data


def send_blob(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """One message of any length: its length (with the file descriptors ``fds`` attached), then its chunks."""
    socket.send_fds(sock, [_LENGTH.pack(len(data))], list(fds))
    for start in range(0, len(data), CHUNK_BYTES):
        sock.sendall(data[start:start + CHUNK_BYTES])


def receive_blob(sock: socket.socket, max_fds: int = 1) -> tuple[bytes, list[int]]:
    """A message :func:`send_blob` sent and the file descriptors that came with it."""
    head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, max_fds)
    if len(head) != _LENGTH.size:
        for fd in fds:
            os.close(fd)
        raise HandoverError("the other agent left during the handover")
    (length,) = _LENGTH.unpack(head)
    if length > MAX_STATE_BYTES:
        for fd in fds:
            os.close(fd)
        raise HandoverError(f"a state of {length} bytes is over the {MAX_STATE_BYTES} the handover takes")
    parts, got = [], 0
    while got < length:
        part = _receive(sock)
        parts.append(part)
        got += len(part)
    return b"".join(parts), fds


def prove_predecessor(sock: socket.socket, secret: bytes) -> None:
    """The running agent's side of the proof on an accepted connection.

    Raises:
        HandoverError: another user, a wrong proof, or no answer within ``AUTH_TIMEOUT_S``.
    """
    successor, predecessor = _same_user(sock), os.getpid()
    ours = secrets.token_bytes(CHALLENGE_BYTES)
    sock.sendall(MAGIC + ours)
    answer = _receive(sock)
    theirs, mac = answer[:CHALLENGE_BYTES], answer[CHALLENGE_BYTES:]
    if len(theirs) != CHALLENGE_BYTES or not hmac.compare_digest(
            mac, _mac(secret, b"successor", ours, theirs, successor, predecessor)):
        raise HandoverError(f"the process at the other end (pid {successor}) did not prove it holds the agent's key")
    sock.sendall(_mac(secret, b"predecessor", ours, theirs, successor, predecessor))


def prove_successor(sock: socket.socket, secret: bytes) -> None:
    """The starting agent's side of the proof.

    Raises:
        HandoverError: another user, a wrong proof, or no answer within ``AUTH_TIMEOUT_S``.
    """
    successor, predecessor = os.getpid(), _same_user(sock)
    hello = _receive(sock)
    if not hello.startswith(MAGIC) or len(hello) != len(MAGIC) + CHALLENGE_BYTES:
        raise HandoverError("the handover point does not speak the handover protocol")
    challenge, ours = hello[len(MAGIC):], secrets.token_bytes(CHALLENGE_BYTES)
    sock.sendall(ours + _mac(secret, b"successor", challenge, ours, successor, predecessor))
    if not hmac.compare_digest(_receive(sock), _mac(secret, b"predecessor", challenge, ours, successor, predecessor)):
        raise HandoverError(f"the running agent (pid {predecessor}) did not prove it holds the agent's key")


def listen(path: Path) -> socket.socket:
    """The handover point at ``path`` (mode 0600; a stale file there is replaced)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(4)
    return sock


def connect(path: Path) -> socket.socket | None:
    """A connection to the handover point at ``path``; ``None`` when no agent listens there (a stale point is
    removed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        return None
    except ConnectionRefusedError:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return sock


_STATE = msgspec.msgpack.Encoder()
_STATE_DECODER = msgspec.msgpack.Decoder(ApplicationState)
TAKEN = b"taken"


def send_all(sock: socket.socket, listener: int, applications: list[tuple[ApplicationState, int]]) -> None:
    """The running agent's side once both are proven: the listening socket, then each application's state with
    its connection, then wait for the successor's word that it took them.

    Raises:
        HandoverError, OSError: the successor left or did not confirm; it took nothing it can use.
    """
    send_blob(sock, _LENGTH.pack(len(applications)), [listener])
    for state, fd in applications:
        send_blob(sock, _STATE.encode(state), [fd])
    if _receive(sock) != TAKEN:
        raise HandoverError("the successor did not confirm the handover")


def receive_all(sock: socket.socket) -> tuple[socket.socket, list[tuple[ApplicationState, socket.socket]]]:
    """The successor's side: the listening socket and each application's state with its connection; confirms.

    Raises:
        HandoverError, OSError: the running agent left half way, or sent something else.
    """
    count, fds = receive_blob(sock)
    if len(fds) != 1 or len(count) != _LENGTH.size:
        raise HandoverError("the running agent sent no listening socket")
    listener = socket.socket(fileno=fds[0])
    applications = []
    try:
        for _ in range(_LENGTH.unpack(count)[0]):
            data, fds = receive_blob(sock)
            if len(fds) != 1:
                raise HandoverError("an application's state came without its connection")
            conn = socket.socket(fileno=fds[0])
            try:
                applications.append((_STATE_DECODER.decode(data), conn))
            except msgspec.DecodeError as exc:
                conn.close()
                raise HandoverError(f"an application's state does not decode: {exc}") from None
        sock.sendall(TAKEN)
    except BaseException:
        listener.close()
        for _, conn in applications:
            conn.close()
        raise
    return listener, applications
