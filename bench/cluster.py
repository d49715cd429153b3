"""Strongroom cluster performance: signatures against 1, 2 and 3 HSMs; token-key creation through the log.

Usage: python bench/cluster.py [--seconds 3] [--sizes 1 2 3] [--json]

For each cluster size, real ``strongroom node`` processes on loopback form a cluster (the first founds it, the
others join with fleet identities). Through the SDK (which balances over every HSM):

- sign: ECDSA P-256 with SHA-256, 64 requests in flight (asyncio);
- create x1: token AES-256 keys made one after another by one writer (sync API): rate, p50, p99;
- create x64: token AES-256 keys with 64 writers in flight (asyncio): rate, p50, p99.

Every creation is committed by a majority of the cluster's HSMs before it is acknowledged. The rows are
measured in one run on one machine, so all the HSMs and the client share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import node as nodes
import strongroom.client as sdk
from constants import P256_PARAMS
from strongroom.trust.ca import CertificateAuthority
from strongroom.trust.fleet import provision
from strongroom.vocab import CKA, CKM


def form(root: Path, size: int, pki: nodes.Pki) -> list[nodes.NodeProcess]:
    """A cluster of ``size`` HSMs with an activated admin and the crypto user ``bench``."""
    fleet = CertificateAuthority(root, "fleet-ca")
    founder = root / "hsm0"
    provision(founder, fleet.issued.cert, fleet.issued.key, "hsm0")
    initial = nodes.init_node(founder)
    procs = [nodes.start_node(founder, pki)]
    config = {**nodes.client_config(procs[0], pki), "timeout_s": 30.0}
    with sdk.connect(config) as cluster:
        admin = cluster.login("admin", initial, role="admin")
        admin.activate(nodes.ADMIN_PW)
        admin.create_user(nodes.USER, nodes.USER_PW)
        admin.close()
    (root / "join.json").write_text(json.dumps(config))
    (root / "admin.pin").write_text(f"admin:{nodes.ADMIN_PW}")
    for i in range(1, size):
        data = root / f"hsm{i}"
        provision(data, fleet.issued.cert, fleet.issued.key, data.name)
        procs.append(nodes.start_node(data, pki, extra=["--join-config", str(root / "join.json"),
                                                        "--join-pin-file", str(root / "admin.pin")]))
    with sdk.connect({**config, "endpoints": [p.endpoint for p in procs]}) as cluster:
        deadline = time.monotonic() + 60
        while len(cluster.cluster_status()["endpoints"]) < size:
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not form")
            time.sleep(0.1)
    return procs


def measure_cluster(size: int, seconds: float, pki: nodes.Pki, root: Path) -> dict[str, measure.Cell]:
    procs = form(root, size, pki)
    config = {**nodes.client_config(procs[0], pki), "endpoints": [p.endpoint for p in procs], "timeout_s": 30.0}
    cells: dict[str, measure.Cell] = {}
    try:
        async def asynchronous() -> None:
            cluster = await sdk.connect_async(config)
            try:
                session = await cluster.login(nodes.USER, nodes.USER_PW)
                _, private = await session.generate_key_pair(
                    CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256_PARAMS, CKA.VERIFY: True}, {CKA.SIGN: True})
                message = b"m" * 32
                cells["sign_64"] = await measure.run_async(lambda: private.sign(message, CKM.ECDSA_SHA256), 64,
                                                           seconds)
                cells["create_64"] = await measure.run_async(
                    lambda: session.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True), 64, seconds)
            finally:
                await cluster.close()

        asyncio.run(asynchronous())
        with sdk.connect(config) as cluster, cluster.login(nodes.USER, nodes.USER_PW) as session:
            cells["create_1"] = measure.run_sync(
                lambda: session.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True), seconds)
    finally:
        for proc in procs:
            proc.stop()
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell (default 3)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 3], help="cluster sizes (default 1 2 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    results: dict[int, dict[str, measure.Cell]] = {}
    with tempfile.TemporaryDirectory(prefix="strongroom-cluster-bench-") as tmp:
        pki = nodes.make_pki(Path(tmp) / "pki")
        for size in args.sizes:
            console.log(f"cluster of {size}: forming and measuring")
            root = Path(tmp) / f"cluster{size}"
            root.mkdir()
            results[size] = measure_cluster(size, args.seconds, pki, root)
    if args.json:
        print(json.dumps({str(size): {name: cell.summary() for name, cell in cells.items()}
                          for size, cells in results.items()}, indent=2))
        return 0
    table = Table(title="Strongroom cluster (every HSM and the client on this machine)")
    for column in ("HSMs", "sign 64 in flight /s", "create x1 /s", "x1 p50 ms", "x1 p99 ms",
                   "create x64 /s", "x64 p50 ms", "x64 p99 ms"):
        table.add_column(column, justify="right")
    for size, cells in results.items():
        one, many = cells["create_1"], cells["create_64"]
        table.add_row(str(size), f"{cells['sign_64'].rate:,.0f}", f"{one.rate:,.0f}",
                      f"{one.percentile_us(0.5) / 1e3:.2f}", f"{one.percentile_us(0.99) / 1e3:.2f}",
                      f"{many.rate:,.0f}", f"{many.percentile_us(0.5) / 1e3:.2f}",
                      f"{many.percentile_us(0.99) / 1e3:.2f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
