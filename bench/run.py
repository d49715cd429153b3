"""Strongroom performance: a node process through the SDK, next to ``cryptography`` and SoftHSM2, in one run.

Usage: python bench/run.py [--seconds 2] [--keys 100000] [--json] [--save results.json]

For each operation: ops/s and p50/p99 latency through the SDK to a local node (1 request in flight with
the synchronous and the asyncio API; 64 in flight with the asyncio API and with the synchronous API from 64
threads, the better shown), directly with ``cryptography`` (1 and 2 threads) and through SoftHSM2 with
python-pkcs11 (1 thread, in-process, token and session keys); a bare TLS echo as the transport floor. Then a
node holding 100,000 keys: find-by-label latency through the SDK and the node's memory. Prints one table (or
JSON with ``--json``). ``bench/hotspots.py`` shows where the time goes.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import node as nodes
import ops
import strongroom.client as sdk
from measure import Cell

COLUMNS = (
    "sdk_1",
    "sdk_1_async",
    "sdk_64",
    "sdk_64_async",
    "sdk_64_threads",
    "raw_1",
    "raw_2",
    "softhsm2",
    "softhsm2_session",
)
FIND_ID = "find_by_label"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell (default 2)")
    parser.add_argument(
        "--warmup", type=float, default=0.25, help="warm-up before each cell (default 0.25 s)"
    )
    parser.add_argument("--window", type=int, default=64, help="requests in flight for the concurrent column")
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the node for find-by-label")
    parser.add_argument("--lookups", type=int, default=2_000, help="in-process find-by-label lookups")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="OP",
        help=f"operations to run (ids: {', '.join(o.id for o in ops.OPERATIONS)}, {FIND_ID})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON instead of the table"
    )
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON results to this file")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ machine
def _nproc() -> int | None:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=10).stdout)
    except (OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from cryptography.hazmat.backends.openssl import backend

    import softhsm

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = Path(__file__).resolve().parent
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here
        ).stdout.strip()
        or None
    )
    if (
        commit
        and subprocess.run(
            ["git", "status", "--porcelain", "--", "../src"], capture_output=True, text=True, cwd=here
        ).stdout.strip()
    ):
        commit += " + uncommitted changes in src/"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "os_cpu_count": os.cpu_count(),
        "nproc": _nproc(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "cryptography": pkg("cryptography"),
        "cryptography_openssl": backend.openssl_version_text(),
        "python_ssl": ssl.OPENSSL_VERSION,
        "python_pkcs11": pkg("python-pkcs11"),
        "softhsm2": softhsm.version(),
        "uvloop": pkg("uvloop"),
        "msgspec": pkg("msgspec"),
        "strongroom_commit": commit,
    }


# ------------------------------------------------------------------ progress
class Steps:
    """A rich progress bar over the run's steps (on stderr, so ``--json`` output stays clean)."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            refresh_per_second=2,
        )
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> Steps:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def now(self, description: str) -> None:
        self.progress.update(self.task, description=description)

    def done(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


# ------------------------------------------------------------------ the run
async def run(args: argparse.Namespace, steps: Steps, results: dict[str, Any]) -> None:
    selected = [o for o in ops.OPERATIONS if args.only is None or o.id in args.only]
    rows: dict[str, dict[str, Any]] = results["rows"]
    notes: list[str] = results["notes"]
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pki = nodes.make_pki(tmp / "pki")
        if selected:
            await run_operations(args, selected, tmp, pki, steps, rows, notes)
            steps.now("transport floor: bare TLS echo")
            results["transport_floor"] = await transport_floor(args, pki)
            steps.done()
        if args.only is None or FIND_ID in args.only:
            await run_find(args, tmp, pki, steps, rows, results)


async def run_operations(
    args: argparse.Namespace,
    selected: list[ops.Operation],
    tmp: Path,
    pki: nodes.Pki,
    steps: Steps,
    rows: dict[str, dict[str, Any]],
    notes: list[str],
) -> None:
    steps.now("starting a node")
    initial = nodes.init_node(tmp / "hsm")
    proc = nodes.start_node(tmp / "hsm", pki)
    token = None
    # SoftHSM2 runs on its own thread: it leaves entries in the system OpenSSL's per-thread error queue,
    # which the ssl module would later report as a failure of this thread's TLS connection.
    softhsm_thread = ThreadPoolExecutor(1, thread_name_prefix="softhsm")
    try:
        config = nodes.client_config(proc, pki)
        nodes.setup_users(config, initial)
        steps.done()
        steps.now("generating keys (node, cryptography, SoftHSM2)")
        cluster = sdk.connect(config)
        session = cluster.login(nodes.USER, nodes.USER_PW)
        handles = ops.sdk_keys(session)
        acluster = await sdk.connect_async(config)
        asession = await acluster.login(nodes.USER, nodes.USER_PW)
        raw_keys = ops.RawKeys.generate()
        try:
            import softhsm

            token = softhsm_thread.submit(softhsm.SoftHsmToken).result()
        except Exception as exc:  # report it in the table and go on without SoftHSM2
            notes.append(f"SoftHSM2 unavailable: {type(exc).__name__}: {exc}")
        steps.done()
        s, w = args.seconds, args.warmup
        for op in selected:
            data = ops.message(op)
            row: dict[str, Any] = {"title": op.title, "cells": {}, "notes": []}
            rows[op.id] = row
            cells = row["cells"]

            steps.now(f"{op.id}: cryptography, 1 thread")
            cells["raw_1"] = measure.run_sync(ops.raw_call(op, raw_keys, data), s, warmup_s=w)
            steps.done()
            steps.now(f"{op.id}: cryptography, 2 threads")
            cells["raw_2"] = measure.run_threads(
                lambda op=op, data=data: ops.raw_call(op, raw_keys, data), 2, s, warmup_s=w)
            steps.done()
            for col, kind in (("softhsm2", "token"), ("softhsm2_session", "session")):
                steps.now(f"{op.id}: SoftHSM2, 1 thread, {kind} key")
                if token is not None:
                    keys = token.keys if kind == "token" else token.session_keys
                    call, note = softhsm_thread.submit(ops.softhsm_call, op, keys, data).result()
                    cells[col] = softhsm_thread.submit(measure.run_sync, call, s, warmup_s=w).result()
                    if note and kind == "token":
                        row["notes"].append(f"SoftHSM2: {note}")
                steps.done()

            steps.now(f"{op.id}: SDK, 1 in flight")
            key = session.key(handles[op.key])
            out = key.sign(data, op.mechanism) if op.key != "aes" else key.encrypt(data, op.mechanism)
            if len(out) != op.out_len:
                raise RuntimeError(f"{op.id}: the node answered {len(out)} bytes, expected {op.out_len}")
            cells["sdk_1"] = measure.run_sync(ops.sdk_call(op, key, data), s, warmup_s=w, node_cpu=proc.cpu_s)
            steps.done()
            steps.now(f"{op.id}: SDK asyncio API, 1 in flight")
            akey = asession.key(handles[op.key])
            cells["sdk_1_async"] = await measure.run_async(
                ops.sdk_call(op, akey, data), 1, s, warmup_s=w, node_cpu=proc.cpu_s
            )
            steps.done()
            steps.now(f"{op.id}: SDK, {args.window} in flight (asyncio)")
            cells["sdk_64_async"] = await measure.run_async(
                ops.sdk_call(op, akey, data), args.window, s, warmup_s=w, node_cpu=proc.cpu_s
            )
            steps.done()
            steps.now(f"{op.id}: SDK, {args.window} in flight ({args.window} threads)")
            cells["sdk_64_threads"] = measure.run_threads(
                lambda op=op, key=key, data=data: ops.sdk_call(op, key, data), args.window, s, warmup_s=w,
                node_cpu=proc.cpu_s,
            )
            pick_window(row)
            steps.done()
        await acluster.close()
        cluster.close()
    finally:
        if token is not None:
            softhsm_thread.submit(token.close).result()
        softhsm_thread.shutdown()
        proc.stop()


async def transport_floor(args: argparse.Namespace, pki: nodes.Pki) -> Cell:
    """A bare TLS 1.3 echo on loopback, 1 in flight: what a round trip costs here before any HSM work."""
    import echo

    server = echo.EchoServer(pki)
    try:
        call, transport = await echo.echo_call(server, pki)
        cell = await measure.run_async(call, 1, args.seconds, warmup_s=args.warmup, node_cpu=server.cpu_s)
        transport.close()
        return cell
    finally:
        server.stop()


async def run_find(
    args: argparse.Namespace,
    tmp: Path,
    pki: nodes.Pki,
    steps: Steps,
    rows: dict[str, dict[str, Any]],
    results: dict[str, Any],
) -> None:
    count = args.keys
    data_dir = tmp / "hsm-keys"
    steps.now(f"sealing {count:,} keys into a node's store")
    nodes.init_node(data_dir)
    sealed = [0]

    def advance(n: int) -> None:
        sealed[0] += n
        steps.now(f"sealing keys into a node's store: {sealed[0]:,} / {count:,}")

    filled = nodes.fill_objects(data_dir, count, lookups=args.lookups, advance=advance)
    steps.done()
    steps.now(f"starting the node on {count:,} keys")
    proc = nodes.start_node(data_dir, pki)
    memory: dict[str, Any] = {
        "keys": count,
        "fill_s": round(filled["fill_s"], 2),
        "node_start_s": round(proc.start_s, 2),
    }
    results["node_memory"] = memory
    try:
        memory["rss_after_start_bytes"] = proc.status("VmRSS")
        config = nodes.client_config(proc, pki)
        steps.done()
        lat = filled["latencies_ns"]
        from array import array

        row: dict[str, Any] = {"title": f"find by label among {count:,} keys", "cells": {}, "notes": []}
        rows[FIND_ID] = row
        cells = row["cells"]
        if lat:
            cells["raw_1"] = Cell(len(lat), sum(lat) / 1e9, array("q", lat), note="in-process, no network")

        lookups = itertools.count(1)

        def next_label() -> str:
            return nodes.label_of(nodes.lookup_index(next(lookups), count))

        steps.now("find by label: SDK, 1 in flight")
        with sdk.connect(config) as cluster:
            session = cluster.login(nodes.USER, nodes.USER_PW)
            found = session.find(label=nodes.label_of(0))
            if len(found) != 1:
                raise RuntimeError(f"find by label found {len(found)} objects, expected 1")
            cells["sdk_1"] = measure.run_sync(
                lambda: session.find(label=next_label()),
                args.seconds,
                warmup_s=args.warmup,
                node_cpu=proc.cpu_s,
            )
            steps.done()
            steps.now(f"find by label: SDK, {args.window} in flight ({args.window} threads)")
            cells["sdk_64_threads"] = measure.run_threads(
                lambda: lambda: session.find(label=next_label()),
                args.window,
                args.seconds,
                warmup_s=args.warmup,
                node_cpu=proc.cpu_s,
            )
        steps.done()
        steps.now(f"find by label: SDK, {args.window} in flight (asyncio)")
        acluster = await sdk.connect_async(config)
        asession = await acluster.login(nodes.USER, nodes.USER_PW)
        cells["sdk_64_async"] = await measure.run_async(
            lambda: asession.find(label=next_label()),
            args.window,
            args.seconds,
            warmup_s=args.warmup,
            node_cpu=proc.cpu_s,
        )
        await acluster.close()
        pick_window(row)
        steps.done()
        time.sleep(0.2)
        memory["rss_after_lookups_bytes"] = proc.status("VmRSS")
        memory["rss_peak_bytes"] = proc.status("VmHWM")
    finally:
        proc.stop()


# ------------------------------------------------------------------ results
def pick_window(row: dict[str, Any]) -> None:
    """The many-in-flight cell is whichever client loaded the node more: asyncio tasks or threads."""
    cells = row["cells"]
    candidates = [
        (c.rate, api)
        for api, c in (("asyncio", cells.get("sdk_64_async")), ("threads", cells.get("sdk_64_threads")))
        if c is not None
    ]
    if candidates:
        _, api = max(candidates)
        row["sdk_64_api"] = api
        cells["sdk_64"] = cells["sdk_64_async" if api == "asyncio" else "sdk_64_threads"]


def best_raw(cells: dict[str, Cell | None]) -> Cell | None:
    candidates = [c for c in (cells.get("raw_1"), cells.get("raw_2")) if c is not None]
    return max(candidates, key=lambda c: c.rate) if candidates else None


def best_softhsm(cells: dict[str, Cell | None]) -> Cell | None:
    candidates = [c for c in (cells.get("softhsm2"), cells.get("softhsm2_session")) if c is not None]
    return max(candidates, key=lambda c: c.rate) if candidates else None


def ratio(a: Cell | None, b: Cell | None) -> float | None:
    if a is None or b is None or not b.rate:
        return None
    return a.rate / b.rate


def ratios(cells: dict[str, Cell]) -> dict[str, float | None]:
    return {
        "sdk_1_vs_raw_1": ratio(cells.get("sdk_1"), cells.get("raw_1")),
        "sdk_64_vs_best_raw": ratio(cells.get("sdk_64"), best_raw(cells)),
        "sdk_1_vs_best_softhsm2": ratio(cells.get("sdk_1"), best_softhsm(cells)),
        "sdk_64_vs_best_softhsm2": ratio(cells.get("sdk_64"), best_softhsm(cells)),
    }


def targets(rows: dict[str, dict[str, Any]], memory: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def cell(op: str, col: str) -> Cell | None:
        return rows.get(op, {}).get("cells", {}).get(col)

    for op in ("rsa_pkcs1", "rsa_pss"):
        r = ratio(cell(op, "sdk_64"), best_raw(rows.get(op, {}).get("cells", {})))
        if r is not None:
            out.append(
                {
                    "target": f"{op}: 64 in flight >= 80% of cryptography on the same cores",
                    "measured": f"{cell(op, 'sdk_64').rate:,.0f}/s = {r:.0%} of "
                    f"{best_raw(rows[op]['cells']).rate:,.0f}/s",
                    "met": r >= 0.8,
                }
            )
    for op in ("ecdsa_p256", "aes_gcm_64"):
        sdk64, soft = cell(op, "sdk_64"), best_softhsm(rows.get(op, {}).get("cells", {}))
        if sdk64 is not None and soft is not None:
            out.append(
                {
                    "target": f"{op}: 64 in flight >= SoftHSM2 single thread (its faster key kind)",
                    "measured": f"{sdk64.rate:,.0f}/s vs {soft.rate:,.0f}/s ({sdk64.rate / soft.rate:.2f}x)",
                    "met": sdk64.rate >= soft.rate,
                }
            )
    ec1 = cell("ecdsa_p256", "sdk_1")
    if ec1 is not None:
        p50 = ec1.percentile_us(0.5)
        out.append(
            {
                "target": "ecdsa_p256: 1 in flight p50 < 150 us",
                "measured": f"p50 {p50:.0f} us",
                "met": p50 < 150,
            }
        )
    find1 = cell(FIND_ID, "sdk_1")
    if find1 is not None:
        p50 = find1.percentile_us(0.5)
        out.append(
            {
                "target": "find by label among the keys: p50 < 1 ms (SDK, 1 in flight)",
                "measured": f"p50 {p50:.0f} us",
                "met": p50 < 1000,
            }
        )
    if memory and "rss_after_lookups_bytes" in memory:
        rss = max(memory["rss_after_lookups_bytes"], memory.get("rss_peak_bytes", 0))
        out.append(
            {
                "target": f"node RSS with {memory['keys']:,} keys < 300 MB",
                "measured": f"{memory['rss_after_lookups_bytes'] / 1e6:.0f} MB (peak {rss / 1e6:.0f} MB)",
                "met": rss < 300e6,
            }
        )
    return out


def noise(results: dict[str, Any]) -> dict[str, Any] | None:
    """How much CPU other processes on the machine took while cells were measured."""
    seen = [
        (c.others_cpu, f"{op_id} {col}")
        for op_id, row in results["rows"].items()
        for col, c in row["cells"].items()
        if c is not None and c.others_cpu_s is not None
    ]
    if not seen:
        return None
    worst = max(seen)
    return {
        "mean_cores": round(sum(v for v, _ in seen) / len(seen), 3),
        "max_cores": round(worst[0], 3),
        "max_cell": worst[1],
    }


def to_json(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows = {}
    for op_id, row in results["rows"].items():
        cells = row["cells"]
        rows[op_id] = {
            "title": row["title"],
            "notes": row["notes"],
            "sdk_64_api": row.get("sdk_64_api"),
            **{col: cells[col].summary() if cells.get(col) else None for col in COLUMNS},
            "ratios": {k: None if v is None else round(v, 4) for k, v in ratios(cells).items()},
        }
    return {
        "machine": results["machine"],
        "settings": {
            "seconds_per_cell": args.seconds,
            "warmup_s": args.warmup,
            "window": args.window,
            "keys": args.keys,
            "in_process_lookups": args.lookups,
        },
        "method": method_notes(args),
        "operations": rows,
        "node_memory": results.get("node_memory"),
        "targets": targets(results["rows"], results.get("node_memory")),
        "notes": results["notes"],
        "other_load": noise(results),
        "transport_floor": results["transport_floor"].summary() if results.get("transport_floor") else None,
        "elapsed_s": round(results.get("elapsed_s", 0), 1),
    }


def method_notes(args: argparse.Namespace) -> list[str]:
    return [
        "SDK 1 in flight: the synchronous API (strongroom.client.connect), one thread calling key.sign / "
        "key.encrypt back to back; p50/p99 are per call.",
        f"SDK {args.window} in flight: the better of two clients, each keeping {args.window} calls in flight "
        f"on one TLS connection: the asyncio API (await connect_async, uvloop, {args.window} tasks each "
        "sending its next call as soon as its previous one is answered: a sliding window) and, marked T, the "
        f"synchronous API called from {args.window} threads. Latency is per call, queueing included. The "
        "client process and the node share the same cores.",
        "cryptography: the same operation called directly (cached key objects, fresh 12-byte random IV per "
        "AES-GCM call, new HMAC context per message); 2 threads = two threads calling it at once.",
        "SoftHSM2: python-pkcs11 in this process, one thread, a fresh token, handles looked up once; token "
        "keys (persistent, like the node's) and session keys (SoftHSM2 skips its per-use check of the token "
        "file).",
        "SDK/raw: 1 in flight vs cryptography 1 thread, and 64 in flight vs the better of 1 and 2 threads. "
        "SDK/SoftHSM2: vs the faster of SoftHSM2's token and session keys, 1 thread.",
        "node CPU: user+system CPU of the node process (/proc/PID/stat) per operation.",
        "find row: 'cryptography' column = the node's own find called in-process on the same store (no TLS, "
        "no SDK).",
    ]


# ------------------------------------------------------------------ table
def _n(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _lat(c: Cell | None) -> str:
    if c is None:
        return "—"
    return f"{_n(c.percentile_us(0.5))} / {_n(c.percentile_us(0.99))}"


def _rate(c: Cell | None) -> str:
    return "—" if c is None else f"{c.rate:,.0f}"


def _pair(a: float | None, b: float | None, fmt: str = "{:.2f}") -> str:
    return " · ".join("—" if v is None else fmt.format(v) for v in (a, b))


def _cpu(c: Cell | None) -> float | None:
    return None if c is None or c.node_cpu_s is None or not c.ops else c.node_cpu_s / c.ops * 1e6


def render(results: dict[str, Any], args: argparse.Namespace) -> Table:
    m = results["machine"]
    w = args.window
    table = Table(
        title=f"Strongroom node (SDK over TLS 1.3) vs cryptography vs SoftHSM2 — {m['os_cpu_count']} "
        f"cores (os.cpu_count {m['os_cpu_count']}, nproc {m['nproc']}), {m['cpu_model']}",
        title_justify="left",
        caption_justify="left",
        show_lines=True,
    )
    table.add_column("operation")
    for header in (
        "SDK\n1 in flight",
        f"SDK\n{w} in flight",
        "cryptography\n1 thread",
        "cryptography\n2 threads",
        "SoftHSM2\ntoken key",
        "SoftHSM2\nsession key",
        f"SDK/raw\n1 · {w}",
        f"SDK/SoftHSM2\n1 · {w}",
        f"node CPU\nµs/op 1 · {w}",
    ):
        table.add_column(header, justify="right", no_wrap=True)

    def cell(c: Cell | None, mark: str = "") -> str:
        return "—" if c is None else f"{c.rate:,.0f}/s{mark}\n{_lat(c)}"

    for op_id, row in results["rows"].items():
        c = row["cells"]
        r = ratios(c)
        table.add_row(
            row["title"] if op_id == FIND_ID else _short(op_id),
            cell(c.get("sdk_1")),
            cell(c.get("sdk_64"), " T" if row.get("sdk_64_api") == "threads" else ""),
            cell(c.get("raw_1")),
            cell(c.get("raw_2")),
            cell(c.get("softhsm2")),
            cell(c.get("softhsm2_session")),
            _pair(r["sdk_1_vs_raw_1"], r["sdk_64_vs_best_raw"]),
            _pair(r["sdk_1_vs_best_softhsm2"], r["sdk_64_vs_best_softhsm2"]),
            _pair(_cpu(c.get("sdk_1")), _cpu(c.get("sdk_64")), "{:.0f}"),
        )
    lines = [
        f"{m['date']}, Python {m['python']}, cryptography {m['cryptography']} ({m['cryptography_openssl']}), "
        f"node TLS: {m['python_ssl']}, {m['softhsm2'] and 'SoftHSM ' + m['softhsm2']}, python-pkcs11 "
        f"{m['python_pkcs11']}, strongroom {m['strongroom_commit']}; {args.seconds:g} s per cell."
    ]
    lines += ["• each cell: operations per second, then p50 / p99 latency in µs."]
    lines += [f"• {n}" for n in method_notes(args)]
    for op_id, row in results["rows"].items():
        lines += [f"• {_short(op_id)}: {n}" for n in row["notes"]]
    async1 = [
        (op_id, row["cells"]["sdk_1_async"])
        for op_id, row in results["rows"].items()
        if row["cells"].get("sdk_1_async")
    ]
    if async1:
        lines.append(
            "• the asyncio API with 1 in flight, ops/s and p50 µs: "
            + "; ".join(
                f"{_short(op_id)} {c.rate:,.0f}/s, {c.percentile_us(0.5):,.0f}" for op_id, c in async1
            )
        )
    floor = results.get("transport_floor")
    if floor:
        lines.append(
            f"• transport floor in this run: a bare TLS 1.3 echo on loopback (uvloop asyncio.Protocol, "
            f"100 B, 1 in flight, no HSM) {floor.rate:,.0f}/s, p50 {floor.percentile_us(0.5):,.0f} µs, "
            f"p99 {floor.percentile_us(0.99):,.0f} µs; CPU per round trip: server "
            f"{floor.node_cpu_s / floor.ops * 1e6:.0f} µs + client "
            f"{floor.client_cpu_s / floor.ops * 1e6:.0f} µs"
        )
    mem = results.get("node_memory")
    if mem:
        line = (
            f"• {mem['keys']:,} keys: sealed in {mem['fill_s']:.1f} s, node start {mem['node_start_s']:.1f} s"
        )
        if "rss_after_start_bytes" in mem:
            line += f"; node RSS {mem['rss_after_start_bytes'] / 1e6:.0f} MB after start"
        if "rss_after_lookups_bytes" in mem:
            line += (
                f", {mem['rss_after_lookups_bytes'] / 1e6:.0f} MB after the lookups "
                f"(peak {mem['rss_peak_bytes'] / 1e6:.0f} MB)"
            )
        lines.append(line)
    lines += [f"• {n}" for n in results["notes"]]
    load = noise(results)
    if load:
        line = (
            f"• other processes on this machine used {load['mean_cores']:.2f} cores on average while cells "
            f"were measured (most: {load['max_cores']:.2f} during {load['max_cell']})"
        )
        if load["max_cores"] > 0.15:
            line += " — the machine was not quiet: expect lower and noisier figures"
        lines.append(line)
    for t in targets(results["rows"], mem):
        lines.append(f"{'MET    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['measured']}")
    table.caption = Text("\n".join(lines))
    return table


def _short(op_id: str) -> str:
    return {
        "rsa_pkcs1": "RSA-2048 sign PKCS#1 v1.5",
        "rsa_pss": "RSA-2048 sign PSS",
        "ecdsa_p256": "ECDSA P-256 sign",
        "aes_gcm_64": "AES-256-GCM enc 64 B",
        "aes_gcm_4k": "AES-256-GCM enc 4 KiB",
        "hmac_64": "HMAC-SHA256 64 B",
    }.get(op_id, op_id)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [o for o in ops.OPERATIONS if args.only is None or o.id in args.only]
    find = args.only is None or FIND_ID in args.only
    results: dict[str, Any] = {"machine": machine(), "rows": {}, "notes": []}
    total = (3 + 8 * len(selected) if selected else 0) + (5 if find else 0)
    t0 = time.perf_counter()
    with Steps(total) as steps:
        uvloop.run(run(args, steps, results))
    results["elapsed_s"] = time.perf_counter() - t0
    data = to_json(results, args)
    if args.save:
        args.save.write_text(json.dumps(data, indent=2) + "\n")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
