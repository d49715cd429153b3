"""Signatures through PKCS#11: applications on p11-kit's client and the agent, next to SoftHSM2 in-process.

Usage: python bench/p11_throughput.py [--seconds 3] [--threads 1 8] [--json]

Both columns drive a PKCS#11 module through the same C API (``bench/p11c.py``, ctypes, initialised with
``CKF_OS_LOCKING_OK``), with 1 and 8 application threads, each with its own session, each call ``C_SignInit`` +
``C_Sign``:

- strongroom: Debian's ``p11-kit-client.so`` → the agent (``strongroom client``) → one HSM node over TLS;
- softhsm2: ``libsofthsm2.so`` loaded into the process (token keys, and session keys, its faster kind);
- stock server: SoftHSM2 behind p11-kit's own C ``p11-kit server``, through the same ``p11-kit-client.so``:
  what the client path costs with a C server;
- agent, no HSM: the same client and the real agent with every cluster call answered in the agent's process
  (``bench/p11floor.py``: no TLS, no node, constant signatures): a ceiling for any HSM behind this agent here.

Operations: RSA-2048 (``CKM_SHA256_RSA_PKCS`` over 32 bytes) and ECDSA P-256 (``CKM_ECDSA`` over a 32-byte hash).
Everything runs on one machine: the application threads, the agent, the node and SoftHSM2 share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import node as nodes
import p11c
import softhsm

P11_KIT_CLIENT = next(iter(sorted(Path("/usr/lib").glob("*/pkcs11/p11-kit-client.so"))), None)
OPERATIONS = {"rsa2048": ("rsa", 0x40), "ecdsa_p256": ("ec", 0x1041)}  # CKM_SHA256_RSA_PKCS, CKM_ECDSA
DATA = bytes(range(32))
# Targets with 8 application threads, as fractions of SoftHSM2's rate (its faster key kind).
TARGETS = {"rsa2048": 1.0, "ecdsa_p256": 0.3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8], help="application thread counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def measure_module(module: p11c.Module, pin: str, token_keys: bool, threads: list[int], seconds: float,
                   node_cpu: Any = None) -> dict[str, dict[int, measure.Cell]]:
    """Rates of every operation with each thread count, keys made in the module itself."""
    login = module.open_session()
    module.login(login, pin)
    keys = {kind: module.generate_key_pair(login, kind, f"bench-p11-{kind}", token_keys)
            for kind in ("rsa", "ec")}
    cells: dict[str, dict[int, measure.Cell]] = {}
    for op, (kind, mechanism) in OPERATIONS.items():
        cells[op] = {}
        for count in threads:
            sessions: list[int] = []

            def make_fn(kind: str = kind, mechanism: int = mechanism, sessions: list[int] = sessions) -> Any:
                session = module.open_session()  # the application's login covers every session
                sessions.append(session)
                return module.signer(session, keys[kind], mechanism, DATA)

            cells[op][count] = measure.run_threads(make_fn, count, seconds, node_cpu=node_cpu)
            for session in sessions:
                module.close_session(session)
    module.close_session(login)
    return cells


def strongroom_cells(args: argparse.Namespace, root: Path) -> dict[str, dict[int, measure.Cell]]:
    if P11_KIT_CLIENT is None:
        raise FileNotFoundError("p11-kit-client.so not found: install Debian's p11-kit-modules")
    pki = nodes.make_pki(root)
    data = root / "hsm"
    initial = nodes.init_node(data)
    proc = nodes.start_node(data, pki)
    agent = None
    try:
        config = nodes.client_config(proc, pki)
        nodes.setup_users(config, initial)
        (root / "cluster.json").write_text(json.dumps(config))
        socket_path = root / "p11.sock"
        agent = subprocess.Popen(nodes.strongroom_cmd("client", "--config", str(root / "cluster.json"),
                                                      "--socket", str(socket_path)),
                                 stdout=subprocess.PIPE, text=True)
        json.loads(agent.stdout.readline())
        os.environ["P11_KIT_SERVER_ADDRESS"] = f"unix:path={socket_path}"
        module = p11c.Module(str(P11_KIT_CLIENT))
        try:
            return measure_module(module, f"{nodes.USER}:{nodes.USER_PW}", True, args.threads, args.seconds)
        finally:
            module.finalize()
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(15)
        proc.stop()


def floor_cells(args: argparse.Namespace, root: Path) -> dict[str, dict[int, measure.Cell]]:
    """The agent with no HSM behind it (``bench/p11floor.py``), through the same client."""
    pki = nodes.make_pki(root)
    socket_path = root / "floor.sock"
    agent = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "p11floor.py"),
                              "--socket", str(socket_path), "--trust-anchor", str(pki.ca_cert)],
                             stdout=subprocess.PIPE, text=True)
    try:
        json.loads(agent.stdout.readline())
        os.environ["P11_KIT_SERVER_ADDRESS"] = f"unix:path={socket_path}"
        module = p11c.Module(str(P11_KIT_CLIENT))
        try:
            return measure_module(module, "user:password", True, args.threads, args.seconds)
        finally:
            module.finalize()
    finally:
        agent.terminate()
        agent.wait(15)


def softhsm_cells(args: argparse.Namespace, root: Path) -> dict[str, dict[str, dict[int, measure.Cell]]]:
    """SoftHSM2 in-process (token and session keys), then behind the stock C ``p11-kit server`` reached through
    the same ``p11-kit-client.so`` as Strongroom (token keys): the same client path to a C server."""
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", softhsm.PIN,
                    "--so-pin", softhsm.SO_PIN], check=True, capture_output=True, timeout=60)
    module = p11c.Module(softhsm.library())
    try:
        cells = {kind: measure_module(module, softhsm.PIN, kind == "token", args.threads, args.seconds)
                 for kind in ("token", "session")}
    finally:
        module.finalize()
    socket_path = root / "stock.sock"
    server = subprocess.Popen(["p11-kit", "server", "-f", "--provider", softhsm.library(), "-n", str(socket_path),
                               "pkcs11:token=bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("p11-kit server did not start (Debian package p11-kit)")
            time.sleep(0.05)
        os.environ["P11_KIT_SERVER_ADDRESS"] = f"unix:path={socket_path}"
        stock = p11c.Module(str(P11_KIT_CLIENT))
        try:
            cells["stock_server"] = measure_module(stock, softhsm.PIN, True, args.threads, args.seconds)
        finally:
            stock.finalize()
    finally:
        server.terminate()
        server.wait(15)
    return cells


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="strongroom-p11-bench-") as tmp, \
            console.status("PKCS#11 through the agent (1 HSM)"):
        ours = strongroom_cells(args, Path(tmp))
    with console.status("the agent with no HSM behind it"), \
            tempfile.TemporaryDirectory(prefix="strongroom-p11-floor-") as tmp:
        floor = floor_cells(args, Path(tmp))
    with console.status("SoftHSM2 in-process, then behind p11-kit server"), \
            tempfile.TemporaryDirectory(prefix="softhsm-p11-") as tmp:
        soft = softhsm_cells(args, Path(tmp))
    rows = []
    for op in OPERATIONS:
        for count in args.threads:
            best = max((soft[kind][op][count] for kind in ("token", "session")), key=lambda c: c.rate)
            cell, stock = ours[op][count], soft["stock_server"][op][count]
            rows.append({"operation": op, "threads": count, "strongroom": cell.summary(),
                         "softhsm2_token": soft["token"][op][count].summary(),
                         "softhsm2_session": soft["session"][op][count].summary(),
                         "stock_p11kit_server_softhsm2": stock.summary(),
                         "agent_without_hsm": floor[op][count].summary(),
                         "ratio_vs_best_softhsm2": round(cell.rate / best.rate, 3) if best.rate else None,
                         "stock_server_ratio_vs_best_softhsm2": round(stock.rate / best.rate, 3)
                         if best.rate else None,
                         "agent_without_hsm_ratio_vs_best_softhsm2":
                             round(floor[op][count].rate / best.rate, 3) if best.rate else None})
    targets = [{"target": f"{op}, 8 threads: >= {share} x SoftHSM2", "met": row["ratio_vs_best_softhsm2"] >= share}
               for op, share in TARGETS.items() for row in rows
               if row["operation"] == op and row["threads"] == 8 and row["ratio_vs_best_softhsm2"] is not None]
    if args.json:
        print(json.dumps({"rows": rows, "targets": targets}, indent=2))
        return 0
    table = Table(title="Signatures through PKCS#11, ops/s (p50 µs); ratios against the best SoftHSM2 cell",
                  caption="Strongroom: p11-kit-client.so → agent → 1 HSM node. SoftHSM2: in-process. Stock server: "
                          "p11-kit-client.so → p11-kit server → SoftHSM2 (token keys). Agent, no HSM: "
                          "p11-kit-client.so → the agent answering every cluster call itself "
                          "(bench/p11floor.py).")
    for column in ("op", "threads", "Strongroom", "SoftHSM2 token", "SoftHSM2 session", "stock server",
                   "agent, no HSM", "Strongroom ratio", "stock ratio", "no-HSM ratio"):
        table.add_column(column, justify="right" if column != "op" else "left", no_wrap=True)
    for row in rows:
        def fmt(s: dict[str, Any]) -> str:
            return f"{s['ops_per_s']:,.0f}  ({s['p50_us']:,.0f})"

        table.add_row(row["operation"], str(row["threads"]), fmt(row["strongroom"]), fmt(row["softhsm2_token"]),
                      fmt(row["softhsm2_session"]), fmt(row["stock_p11kit_server_softhsm2"]),
                      fmt(row["agent_without_hsm"]), f"{row['ratio_vs_best_softhsm2']:.2f}",
                      f"{row['stock_server_ratio_vs_best_softhsm2']:.2f}",
                      f"{row['agent_without_hsm_ratio_vs_best_softhsm2']:.2f}")
    Console(width=200).print(table)
    for target in targets:
        Console().print(f"{'met ' if target['met'] else 'MISSED'}  {target['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
