"""Where the SDK path spends its time, for the node process and for the client.

Usage: python bench/hotspots.py [--seconds 5] [--out DIR] [--perf] [--py-spy] [SCENARIO ...]

1. A cost ladder per operation, in µs of CPU per operation: the bare ``cryptography`` call; the same call
   through the HSM boundary in-process (SDK objects calling the node's Application directly: PKCS#11
   checks and the crypto layer, no network); plus the node's request handling without I/O (a request frame
   fed to the server's connection object: frame, msgpack decode, dispatch, answer, encode); then the node
   process's whole CPU per operation over TLS with 1 and 64 in flight, and the client's CPU per operation.
   Then cProfile of that request handling (ECDSA, AES-GCM) and of the asyncio client at 64 in flight.
2. With ``--py-spy``: py-spy samples (``.venv/bin/pip install py-spy``) of the node and this client under
   load. A scenario is OPERATION:IN_FLIGHT, e.g. ``ecdsa_p256:64`` (asyncio client) or ``ecdsa_p256:1``
   (synchronous client). Raw stacks go to DIR; the summary gives the share of samples per stage and the top
   functions.
3. With ``--perf`` (Debian's linux-perf), for each scenario: the node's CPU split by library and the
   kernel's share, from ``perf record -e cpu-clock`` (C code, system calls and the kernel's network path).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.markup import escape
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import node as nodes
import ops
import strongroom.client as sdk

DEFAULT_SCENARIOS = ["ecdsa_p256:1", "ecdsa_p256:64", "aes_gcm_64:64", "rsa_pkcs1:64"]

# Stage of a sample. py-spy names frames "function (path:line)", paths relative to sys.path. Time spent in C
# (uvloop, the ssl module, system calls) counts as the innermost Python frame's own time, so some functions'
# own time is named first (LEAF rules); otherwise the first rule matching a frame, innermost outwards, wins.
NODE_LEAF = [
    ("transport write: TLS encrypt + send() system call", r"_Connection\._(flush|send) \("),
    ("event loop in C: epoll, recv() system calls, TLS decrypt", r"Runner\.run \(|run_forever \("),
]
NODE_STAGES = [
    (
        "crypto: strongroom crypto/ and the cryptography calls it makes",
        r"\(cryptography/|\((strongroom/)?crypto/",
    ),
    (
        "PKCS#11 checks: session, key lookup, mechanism, policy",
        r"\((strongroom/)?(node/(operations|base|"
        r"arguments|sessions|object_management|hsm)|objects/)",
    ),
    ("TLS record layer (ssl module)", r"\(ssl\.py"),
    ("msgpack decode/encode, frames, call arguments", r"msgspec|\((strongroom/)?protocol/"),
    ("server: dispatch and answer (node/listener.py)", r"\((strongroom/)?node/listener\.py"),
    ("thread pool hand-off", r"\(concurrent/futures|\(threading\.py|\(queue\.py"),
    ("event loop, Python side (asyncio/uvloop)", r"uvloop|\(asyncio/"),
]
CLIENT_LEAF = [
    ("transport write: TLS encrypt + send() system call", r"NodeConnection\.send \("),
    (
        "event loop in C: epoll, recv() system calls, TLS decrypt",
        r"Runner\.run \(|Thread\.run \(|run_forever \(",
    ),
    ("sync API: waiting for / waking the caller thread", r"Condition\.(wait|notify)|Event\.wait"),
]
CLIENT_STAGES = [
    ("TLS record layer (ssl module)", r"\(ssl\.py"),
    (
        "SDK: encode request (call struct + msgpack + frame)",
        r"request_frame|encode_frame|\((strongroom/)?protocol/messages",
    ),
    ("SDK: receive and decode answers", r"data_received|FrameReader|result_of"),
    (
        "sync API: thread hand-off (futures, call_soon_threadsafe)",
        r"\(concurrent/futures|\(threading\.py|"
        r"call_soon_threadsafe|SyncConnection",
    ),
    ("SDK: call plumbing (client/objects, connection)", r"\((strongroom/)?client/"),
    ("event loop, Python side (asyncio: wait_for, futures)", r"uvloop|\(asyncio/"),
    ("benchmark loop", r"\((bench/)?(measure|hotspots)\.py"),
]


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: ``outer;...;inner COUNT`` per line."""
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def stages(
    stacks: list[tuple[list[str], int]], leaf: list[tuple[str, str]], rules: list[tuple[str, str]]
) -> dict[str, int]:
    leaf_rules = [(name, re.compile(rx)) for name, rx in leaf]
    compiled = [(name, re.compile(rx)) for name, rx in rules]
    out: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        stage = next((name for name, rx in leaf_rules if rx.search(frames[-1])), None)
        if stage:
            out[stage] += count
            continue
        for frame in reversed(frames):
            stage = next((name for name, rx in compiled if rx.search(frame)), None)
            if stage:
                out[stage] += count
                break
        else:
            out["other"] += count
    return dict(out)


def _short_frame(frame: str) -> str:
    frame = re.sub(r"/[^ ]*/site-packages/", "", frame)
    frame = re.sub(r"/[^ ]*/(lib/python3\.\d+)/", "", frame)
    return re.sub(r"/[^ ]*/src/", "", frame)


def top_self(stacks: list[tuple[list[str], int]], n: int = 12) -> list[tuple[str, int]]:
    """Functions by own samples (innermost frame, line numbers folded)."""
    out: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        out[re.sub(r":\d+\)$", ")", _short_frame(frames[-1]))] += count
    return out.most_common(n)


def top_total(stacks: list[tuple[list[str], int]], pattern: str, n: int = 12) -> list[tuple[str, int]]:
    """Functions whose file matches ``pattern``, by samples with them anywhere on the stack."""
    rx = re.compile(pattern)
    out: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        seen = {re.sub(r":\d+\)$", ")", _short_frame(f)) for f in frames if rx.search(f)}
        for f in seen:
            out[f] += count
    return out.most_common(n)


class Sampler:
    def __init__(self, pid: int, path: Path, seconds: float, rate: int) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(path),
                # without pausing the process: paused threads look busy to py-spy
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self) -> list[tuple[list[str], int]]:
        _, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0 or not self.path.exists():
            raise RuntimeError(f"py-spy failed: {err}")
        return parse_raw(self.path)


async def scenario(
    name: str,
    width: int,
    proc: nodes.NodeProcess,
    config: dict,
    handles: dict[str, int],
    seconds: float,
    rate: int,
    out: Path,
) -> dict[str, Any]:
    op = next(o for o in ops.OPERATIONS if o.id == name)
    data = ops.message(op)
    tag = f"{name}-{width}"
    if width == 1:
        cluster = sdk.connect(config)
        session = cluster.login(nodes.USER, nodes.USER_PW)
        call = ops.sdk_call(op, session.key(handles[op.key]), data)
        measure.run_sync(call, 0.3)
    else:
        acluster = await sdk.connect_async(config)
        asession = await acluster.login(nodes.USER, nodes.USER_PW)
        call = ops.sdk_call(op, asession.key(handles[op.key]), data)
        await measure.run_async(call, width, 0.3)
    node_sampler = Sampler(proc.pid, out / f"node-{tag}.txt", seconds, rate)
    client_sampler = Sampler(os.getpid(), out / f"client-{tag}.txt", seconds, rate)
    time.sleep(0.3)  # let py-spy attach
    if width == 1:
        cell = measure.run_sync(call, seconds - 0.6, warmup_s=0, node_cpu=proc.cpu_s)
        cluster.close()
    else:
        cell = await measure.run_async(call, width, seconds - 0.6, warmup_s=0, node_cpu=proc.cpu_s)
        await acluster.close()
    return {"tag": tag, "cell": cell, "node": node_sampler.wait(), "client": client_sampler.wait()}


def report(console: Console, result: dict[str, Any]) -> None:
    cell = result["cell"]
    node_us = cell.node_cpu_s / cell.ops * 1e6
    client_us = cell.client_cpu_s / cell.ops * 1e6
    console.rule(
        f"{result['tag']}: {cell.rate:,.0f} ops/s, node CPU {node_us:.0f} µs/op, client CPU "
        f"{client_us:.0f} µs/op (sampled, so a little slower than unprofiled)"
    )
    for side, leaf, rules, per_op in (
        ("node", NODE_LEAF, NODE_STAGES, node_us),
        ("client", CLIENT_LEAF, CLIENT_STAGES, client_us),
    ):
        stacks = result[side]
        total = sum(c for _, c in stacks) or 1
        table = Table(title=f"{side}: share of CPU samples ({total:,} samples)", title_justify="left")
        table.add_column("stage")
        table.add_column("share", justify="right")
        table.add_column("µs/op", justify="right")
        for stage, count in sorted(stages(stacks, leaf, rules).items(), key=lambda kv: -kv[1]):
            table.add_row(stage, f"{count / total:.1%}", f"{count / total * per_op:.1f}")
        console.print(table)
        top = Table(title=f"{side}: top functions by own time", title_justify="left")
        top.add_column("function")
        top.add_column("share", justify="right")
        for fn, count in top_self(stacks):
            top.add_row(fn, f"{count / total:.1%}")
        console.print(top)
        if side == "node":
            incl = Table(title="node: strongroom functions, time including callees", title_justify="left")
            incl.add_column("function")
            incl.add_column("share", justify="right")
            for fn, count in top_total(stacks, r"\((strongroom/)?(node|crypto|objects|protocol|store)/", 16):
                incl.add_row(fn, f"{count / total:.1%}")
            console.print(incl)


# ------------------------------------------------------------------ cost ladder
LADDER_OPS = ["ecdsa_p256", "aes_gcm_64", "hmac_64", "rsa_pkcs1"]


class _FakeTransport:
    """Stands in for the TLS transport: keeps the last write."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _NoLoop:
    """For the server's connection object: the benchmark flushes answers itself."""

    def call_soon(self, *args: Any) -> None:
        pass


def in_process(data_dir: Path) -> tuple[Any, Any, Any, dict[str, int]]:
    """An HSM on ``data_dir`` used in-process, with the SDK's objects calling its Application directly."""
    from strongroom.client import Cluster
    from strongroom.client.faces import _Runner
    from strongroom.node import HSM, Application, Settings

    hsm = HSM(data_dir, settings=Settings(argon2_memory_kib=nodes.HASH_MEMORY_KIB, argon2_time_cost=1))
    app = Application(hsm)

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(app, name)(*args, **kwargs)

    cluster = Cluster(_Runner(call, is_async=False), lambda: None, {})
    admin = cluster.login("admin", nodes.initial_password(data_dir), role="admin")
    admin.activate(nodes.ADMIN_PW)
    admin.create_user(nodes.USER, nodes.USER_PW)
    admin.close()
    session = cluster.login(nodes.USER, nodes.USER_PW)
    return hsm, app, session, ops.sdk_keys(session)


def server_path(hsm: Any, app: Any, session: Any, op: ops.Operation, key: int, data: bytes):
    """A callable feeding one request frame to the node's connection object and flushing its answer."""
    from strongroom.client.connection import request_frame
    from strongroom.node.listener import NodeServer, _Connection

    server = NodeServer(hsm, None)
    conn = _Connection(server)
    conn.loop = _NoLoop()
    conn.transport = _FakeTransport()
    conn.app = app
    conn.hello_done = True
    name = "encrypt_once" if op.key == "aes" else "sign_once"
    frame = request_frame(1, name, (session.handle, op.mechanism, key, data), {})
    conn.data_received(frame)
    conn._flush()
    if not conn.transport.last or conn.in_flight:
        raise RuntimeError("the request did not complete on the loop thread")

    def run() -> None:
        conn.data_received(frame)
        conn._flush()

    return run


async def ladder(
    args: argparse.Namespace,
    tmp: Path,
    proc: nodes.NodeProcess,
    config: dict,
    handles: dict[str, int],
    console: Console,
) -> list[dict[str, Any]]:
    """Per operation: µs of CPU per operation at each step from the bare primitive to the whole round trip."""
    from strongroom.client.connection import _decoder, request_frame, result_of
    from strongroom.protocol import Response

    nodes.init_node(tmp / "hsm-inproc")
    hsm, app, session, local = in_process(tmp / "hsm-inproc")
    raw_keys = ops.RawKeys.generate()
    cluster = sdk.connect(config)
    sync_session = cluster.login(nodes.USER, nodes.USER_PW)
    acluster = await sdk.connect_async(config)
    asession = await acluster.login(nodes.USER, nodes.USER_PW)
    secs = min(args.seconds, 2.0)
    rows = []
    profiled: list[tuple[str, Any, float]] = []

    def us(cell: measure.Cell, cpu: str = "client") -> float:
        value = cell.client_cpu_s if cpu == "client" else cell.node_cpu_s
        return value / cell.ops * 1e6

    for name in LADDER_OPS:
        op = next(o for o in ops.OPERATIONS if o.id == name)
        data = ops.message(op)
        row: dict[str, Any] = {"op": name}
        row["raw"] = us(measure.run_sync(ops.raw_call(op, raw_keys, data), secs))
        row["in_process"] = us(measure.run_sync(ops.sdk_call(op, session.key(local[op.key]), data), secs))
        if op.key != "rsa":  # RSA leaves the event loop for the thread pool: no loop-only path to time
            try:
                run = server_path(hsm, app, session, op, local[op.key], data)
                row["server_no_io"] = us(measure.run_sync(run, secs))
                profiled.append((name, run, row["server_no_io"]))
            except Exception as exc:  # the server's internals changed: leave the step out
                console.print(f"[yellow]{name}: server step skipped ({type(exc).__name__}: {exc})")
        frame_args = (sync_session.handle, op.mechanism, handles[op.key], data)
        row["client_encode"] = us(
            measure.run_sync(
                lambda op=op, frame_args=frame_args: request_frame(
                    7, "encrypt_once" if op.key == "aes" else "sign_once", frame_args, {}),
                secs,
            )
        )
        answer = msgspec_response(Response(7, 0, os.urandom(op.out_len)))
        row["client_decode"] = us(measure.run_sync(lambda answer=answer: result_of(_decoder.decode(answer)), secs))
        sync1 = measure.run_sync(
            ops.sdk_call(op, sync_session.key(handles[op.key]), data), secs, node_cpu=proc.cpu_s
        )
        async1 = await measure.run_async(
            ops.sdk_call(op, asession.key(handles[op.key]), data), 1, secs, node_cpu=proc.cpu_s
        )
        async64 = await measure.run_async(
            ops.sdk_call(op, asession.key(handles[op.key]), data), 64, secs, node_cpu=proc.cpu_s
        )
        row.update(
            {
                "node_1": us(sync1, "node"),
                "node_1_async": us(async1, "node"),
                "node_64": us(async64, "node"),
                "client_sync_1": us(sync1),
                "client_async_1": us(async1),
                "client_async_64": us(async64),
                "p50_sync_1": sync1.percentile_us(0.5),
                "p50_async_1": async1.percentile_us(0.5),
            }
        )
        rows.append(row)
    await acluster.close()
    cluster.close()
    hsm.close()
    table = Table(
        title="CPU µs per operation, step by step (node side, then client side)", title_justify="left"
    )
    cols = [
        ("raw", "cryptography\ncall"),
        ("in_process", "HSM call\nin-process"),
        ("server_no_io", "+ request handling\nno I/O"),
        ("node_1", "node over TLS\n1 in flight (sync)"),
        ("node_1_async", "node over TLS\n1 in flight (async)"),
        ("node_64", "node over TLS\n64 in flight"),
        ("client_encode", "client\nencode"),
        ("client_decode", "client\ndecode"),
        ("client_sync_1", "client sync\n1 in flight"),
        ("client_async_1", "client async\n1 in flight"),
        ("client_async_64", "client async\n64 in flight"),
        ("p50_sync_1", "p50 sync\n1 in flight"),
        ("p50_async_1", "p50 async\n1 in flight"),
    ]
    table.add_column("operation")
    for _, header in cols:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(row["op"], *("—" if row.get(k) is None else f"{row[k]:.1f}" for k, _ in cols))
    console.print(table)
    for name, run, plain in profiled:
        if name in ("ecdsa_p256", "aes_gcm_64"):
            profile_calls(console, f"node request handling without I/O, {name}", run, 20_000, plain)
    await profile_client_async(console, config, handles, "ecdsa_p256", secs)
    return rows


def msgspec_response(response: Any) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(response)


# ------------------------------------------------------------------ cProfile
def profile_calls(
    console: Console, title: str, run: Any, ops_count: int, unprofiled_us: float | None
) -> None:
    """Run ``run()`` ``ops_count`` times under cProfile and print the top functions (one thread, never
    idle, so wall time is CPU time)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ops_count):
        run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt / ops_count * 1e6
    table = Table(
        title=f"{title}: cProfile, {ops_count:,} operations, {total:.1f} µs/op under the profiler"
        + (f" ({unprofiled_us:.1f} without)" if unprofiled_us else ""),
        title_justify="left",
    )
    for header in ("function", "calls/op", "own µs/op", "with callees µs/op"):
        table.add_column(header, justify="left" if header == "function" else "right")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:16]
    for (file, line, fn), (_, ncalls, tottime, cumtime, _) in rows:
        where = _short_frame(f"({file})").strip("()")
        table.add_row(
            escape(f"{fn} ({where}:{line})" if line else fn),
            f"{ncalls / ops_count:.1f}",
            f"{tottime / ops_count * 1e6:.2f}",
            f"{cumtime / ops_count * 1e6:.2f}",
        )
    console.print(table)


async def profile_client_async(
    console: Console, config: dict, handles: dict[str, int], name: str, seconds: float
) -> None:
    """cProfile of this client (asyncio API, 64 in flight): all of its work runs on this thread. The event
    loop's own C code (and its idle waits) are left out: the total is the Python-level work per operation."""
    import cProfile
    import pstats

    op = next(o for o in ops.OPERATIONS if o.id == name)
    acluster = await sdk.connect_async(config)
    call = ops.sdk_call(
        op, (await acluster.login(nodes.USER, nodes.USER_PW)).key(handles[op.key]), ops.message(op)
    )
    await measure.run_async(call, 64, 0.3)
    profiler = cProfile.Profile()
    profiler.enable()
    cell = await measure.run_async(call, 64, seconds, warmup_s=0)
    profiler.disable()
    await acluster.close()
    stats = pstats.Stats(profiler)
    loop_runs = re.compile(r"run_until_complete|run_forever|_run_once|select|epoll|poll")
    entries = {k: v for k, v in stats.stats.items() if not loop_runs.search(k[2])}
    n = cell.ops
    total = sum(v[2] for v in entries.values())
    table = Table(
        title=f"client, {name}, 64 in flight (asyncio API): cProfile, {n:,} operations, "
        f"{total / n * 1e6:.1f} µs/op of Python-level work under the profiler "
        f"(the whole client CPU unprofiled: see the ladder)",
        title_justify="left",
    )
    for header in ("function", "calls/op", "own µs/op", "with callees µs/op"):
        table.add_column(header, justify="left" if header == "function" else "right")
    for (file, line, fn), (_, ncalls, tottime, cumtime, _) in sorted(
        entries.items(), key=lambda kv: -kv[1][2]
    )[:14]:
        where = _short_frame(f"({file})").strip("()")
        table.add_row(
            escape(f"{fn} ({where}:{line})" if line else fn),
            f"{ncalls / n:.2f}",
            f"{tottime / n * 1e6:.2f}",
            f"{cumtime / n * 1e6:.2f}",
        )
    console.print(table)


# ------------------------------------------------------------------ perf
def perf_split(pid: int, seconds: float, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "perf",
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "-g",
            "-p",
            str(pid),
            "-o",
            str(path),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def perf_report(console: Console, path: Path, title: str) -> None:
    def report(*extra: str) -> list[tuple[float, str]]:
        out = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(path),
                "--no-children",
                "--stdio",
                "-g",
                "none",
                "--percent-limit",
                "0.5",
                *extra,
            ],
            capture_output=True,
            text=True,
        ).stdout
        rows = []
        for line in out.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
            if m:
                rows.append((float(m.group(1)), m.group(2)))
        return rows

    table = Table(title=f"{title}: CPU by library (perf, cpu-clock)", title_justify="left")
    table.add_column("library")
    table.add_column("share", justify="right")
    for share, dso in report("--sort", "dso")[:12]:
        table.add_row(escape(dso), f"{share:.1f}%")
    console.print(table)
    table = Table(title=f"{title}: top kernel symbols", title_justify="left")
    table.add_column("symbol")
    table.add_column("share", justify="right")
    for share, sym in [r for r in report("--sort", "sym") if "[k]" in r[1]][:8]:
        table.add_row(escape(sym), f"{share:.1f}%")
    console.print(table)


async def perf_scenario(
    spec: str,
    proc: nodes.NodeProcess,
    config: dict,
    handles: dict[str, int],
    seconds: float,
    out: Path,
    console: Console,
) -> None:
    name, _, width_s = spec.partition(":")
    width = int(width_s or 1)
    op = next(o for o in ops.OPERATIONS if o.id == name)
    data = ops.message(op)
    path = out / f"perf-node-{name}-{width}.data"
    if width == 1:
        cluster = sdk.connect(config)
        call = ops.sdk_call(op, cluster.login(nodes.USER, nodes.USER_PW).key(handles[op.key]), data)
        measure.run_sync(call, 0.3)
        recorder = perf_split(proc.pid, seconds - 1, path)
        measure.run_sync(call, seconds, warmup_s=0)
        cluster.close()
    else:
        acluster = await sdk.connect_async(config)
        call = ops.sdk_call(op, (await acluster.login(nodes.USER, nodes.USER_PW)).key(handles[op.key]), data)
        await measure.run_async(call, width, 0.3)
        recorder = perf_split(proc.pid, seconds - 1, path)
        await measure.run_async(call, width, seconds, warmup_s=0)
        await acluster.close()
    recorder.wait(60)
    perf_report(console, path, f"node, {name}, {width} in flight")


async def main_async(args: argparse.Namespace, console: Console) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="strongroom-profile-") as tmp_name:
        tmp = Path(tmp_name)
        pki = nodes.make_pki(tmp / "pki")
        initial = nodes.init_node(tmp / "hsm")
        proc = nodes.start_node(tmp / "hsm", pki)
        try:
            config = nodes.client_config(proc, pki)
            nodes.setup_users(config, initial)
            with sdk.connect(config) as cluster:
                handles = ops.sdk_keys(cluster.login(nodes.USER, nodes.USER_PW))
            await ladder(args, tmp, proc, config, handles, console)
            if args.perf:
                for spec in args.scenarios:
                    await perf_scenario(spec, proc, config, handles, args.seconds, out, console)
            if args.py_spy:
                for spec in args.scenarios:
                    name, _, width = spec.partition(":")
                    result = await scenario(
                        name, int(width or 1), proc, config, handles, args.seconds, args.rate, out
                    )
                    report(console, result)
        finally:
            proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=DEFAULT_SCENARIOS)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "strongroom-profile")
    parser.add_argument("--perf", action="store_true", help="also split the node's CPU by library with perf")
    parser.add_argument("--py-spy", action="store_true", help="also sample the node and client with py-spy")
    args = parser.parse_args()
    if args.perf and shutil.which("perf") is None:
        sys.exit("--perf needs perf: apt-get install linux-perf")
    if args.py_spy and shutil.which("py-spy") is None:
        bin_dir = Path(sys.executable).parent
        if (bin_dir / "py-spy").exists():
            os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        else:
            sys.exit("py-spy is needed: .venv/bin/pip install py-spy")
    console = Console() if sys.stdout.isatty() else Console(width=160)
    uvloop.run(main_async(args, console))
    if args.py_spy or args.perf:
        console.print(f"raw profiles in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
