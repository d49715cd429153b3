"""A p11-kit client speaking the wire format by hand, for tests that need exact bytes."""

from __future__ import annotations

import socket
from pathlib import Path

from strongroom.pkcs11 import wire

HANDSHAKE = b"PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1"


class RawApplication:
    """A p11-kit client speaking the wire format by hand."""

    def __init__(self, path: Path, version: int = 0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.sock.sendall(bytes((version,)))
        self.version = self.sock.recv(1)[0]
        self.frames = wire.FrameReader()
        self.code = 0x10

    def call(self, body: bytes) -> bytes:
        self.code += 1
        self.sock.sendall(wire.encode_frame(self.code, body, b"client"))
        while True:
            got = self.frames.feed(self.sock.recv(65536))
            if got:
                code, _, reply = got[0]
                assert code == self.code
                return reply


def request(call_id: int, signature: str, *parts: bytes) -> bytes:
    return wire.Writer().u32(call_id).data(signature.encode()).bytes() + b"".join(parts)


def initialized(path: Path, version: int) -> RawApplication:
    app = RawApplication(path, version)
    assert app.version == version
    init = request(1, "ayyay", wire.Writer().byte_array(HANDSHAKE).byte(0).byte_array(b"\x00").bytes())
    assert app.call(init) == wire.reply_body(1, "")
    return app


def u64s(*values: int) -> bytes:
    w = wire.Writer()
    for value in values:
        w.u64(value)
    return w.bytes()


def ok(reply: bytes, call_id: int, signature: str) -> wire.Reader:
    head = wire.reply_body(call_id, signature)
    assert reply.startswith(head), reply.hex()
    return wire.Reader(reply[len(head):])


def private_key(app: RawApplication, session: int, label: bytes) -> int:
    """The handle of the one private key labelled ``label`` (C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal)."""
    template = wire.Writer().u32(2).attribute(0x0, 3).attribute(0x3, label).bytes()
    assert app.call(request(26, "uaA", u64s(session) + template)) == wire.reply_body(26, "")
    found = ok(app.call(request(27, "ufu", u64s(session) + b"\x00\x00\x00\x10")), 27, "au")
    found.byte()
    assert found.u32() == 1
    key = found.u64()
    assert app.call(request(28, "u", u64s(session))) == wire.reply_body(28, "")
    return key
