"""The transport floor: a bare TLS 1.3 echo over loopback (uvloop, asyncio.Protocol) with no HSM behind it.

It tells how much of a round trip through the node is the machine's own cost of a TLS request and answer on
loopback (system calls, waking the other process, the TLS record layer), measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from node import CLK_TCK, Pki

_SERVER = """
import asyncio, ssl, sys, uvloop

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

uvloop.run(main())
"""


class EchoServer:
    def __init__(self, pki: Pki) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(pki.server_cert), str(pki.server_key)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.process.stdout.readline())

    def cpu_s(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def echo_call(
    server: EchoServer, pki: Pki, size: int = 100
) -> tuple[Callable[[], Awaitable[Any]], Any]:
    """A call sending ``size`` bytes and awaiting their echo (one in flight), and the transport to close."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        _Client, "127.0.0.1", server.port, ssl=ctx, server_hostname="127.0.0.1"
    )
    message = os.urandom(size)

    async def call() -> bytes:
        client.waiter = loop.create_future()
        client.transport.write(message)
        return await client.waiter

    return call, transport
