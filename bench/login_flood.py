"""Strongroom login fairness: one peer's login latency, alone and while another peer floods the node with logins.

Usage: python bench/login_flood.py [--logins 10] [--flood-connections 4] [--flood-depth 24]
                                  [--hash-memory-kib 65536] [--json]

One real ``strongroom node`` process hashing passwords with argon2id at ``--hash-memory-kib`` (RFC 9106's 64 MiB
profile by default, as in production). The honest peer logs in ``--logins`` times, one after another, on fresh
connections: first alone, then while ``--flood-connections`` other connections each keep ``--flood-depth``
logins of unknown users in flight (each costs a full password hash). The node's blocking-call threads serve
connections fairly (a free thread takes the next call of the connection with the fewest calls running), so the
honest login waits for about one hash, not for the flood's queue. Measured on 2 shared cores with the defaults'
flood (4 × 24): the honest login took 13 s at p50 before the fair queue, 1.3 s after (0.2 s alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import node as nodes
from strongroom.client.connection import NodeConnection, open_connection
from strongroom.protocol.tls import client_context
from strongroom.vocab import CKU


async def _session(endpoint: str, ctx) -> tuple[NodeConnection, int]:
    conn = await open_connection(endpoint, ctx)
    return conn, (await conn.request("open_session", (6,), {})).value


async def _honest(endpoint: str, ctx, logins: int) -> list[float]:
    """Seconds per login of the crypto user, each on a new connection."""
    took = []
    for _ in range(logins):
        conn, session = await _session(endpoint, ctx)
        started = time.perf_counter()
        answer = await conn.request("login", (session, int(CKU.USER), f"{nodes.USER}:{nodes.USER_PW}"), {},
                                    timeout_s=300)
        took.append(time.perf_counter() - started)
        conn.close()
        if answer.ckr:
            raise RuntimeError(f"the honest login failed: CKR 0x{answer.ckr:x}")
    return took


async def _measure(endpoint: str, ctx, logins: int, connections: int, depth: int) -> dict[str, list[float]]:
    alone = await _honest(endpoint, ctx, logins)
    stop = asyncio.Event()

    async def flood(conn: NodeConnection, session: int) -> None:
        async def one(i: int) -> None:
            while not stop.is_set():
                await conn.request("login", (session, int(CKU.USER), f"nobody{i}:wrong-password"), {},
                                   timeout_s=300)

        await asyncio.gather(*(one(i) for i in range(depth)))

    flooders = [await _session(endpoint, ctx) for _ in range(connections)]
    tasks = [asyncio.ensure_future(flood(conn, session)) for conn, session in flooders]
    await asyncio.sleep(1.0)  # the flood fills the node's queue
    flooded = await _honest(endpoint, ctx, logins)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn, _ in flooders:
        conn.close()
    return {"alone": alone, "flooded": flooded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=10, help="honest logins per row (default 10)")
    parser.add_argument("--flood-connections", type=int, default=4, help="flooding connections (default 4)")
    parser.add_argument("--flood-depth", type=int, default=24, help="logins each keeps in flight (default 24)")
    parser.add_argument("--hash-memory-kib", type=int, default=65536, help="argon2id memory (default 65536)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="strongroom-login-bench-") as tmp:
        pki = nodes.make_pki(Path(tmp) / "pki")
        data = Path(tmp) / "hsm"
        initial = nodes.init_node(data)
        proc = nodes.start_node(data, pki, extra=["--password-hash-memory-kib", str(args.hash_memory_kib)])
        try:
            nodes.setup_users(nodes.client_config(proc, pki), initial)
            ctx = client_context(pki.ca_cert, cert_file=pki.client_cert, key_file=pki.client_key)
            results = asyncio.run(_measure(proc.endpoint, ctx, args.logins, args.flood_connections,
                                           args.flood_depth))
        finally:
            proc.stop()
    rows = {name: {"p50_ms": statistics.median(took) * 1e3, "max_ms": max(took) * 1e3}
            for name, took in results.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"Another peer's login while {args.flood_connections} connections keep "
                        f"{args.flood_depth} logins each in flight (argon2id, {args.hash_memory_kib} KiB)")
    for column in ("honest peer", "login p50 ms", "login max ms"):
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, f"{row['p50_ms']:,.0f}", f"{row['max_ms']:,.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
