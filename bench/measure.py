"""Timing loops: a fixed wall-clock budget per measurement, per-operation latencies, CPU per operation."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cell:
    """One measurement: ``ops`` operations in ``seconds`` of wall time."""

    ops: int
    seconds: float
    latencies_ns: array = field(repr=False)
    client_cpu_s: float | None = None
    node_cpu_s: float | None = None
    others_cpu_s: float | None = None  # CPU time of every other process on the machine meanwhile
    note: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def others_cpu(self) -> float:
        """Cores' worth of CPU that other processes used during the measurement (0 on a quiet machine)."""
        return max(0.0, (self.others_cpu_s or 0.0) / self.seconds) if self.seconds else 0.0

    def percentile_us(self, q: float) -> float | None:
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] / 1e3

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ops": self.ops,
            "seconds": round(self.seconds, 4),
            "ops_per_s": round(self.rate, 1),
            "p50_us": _round(self.percentile_us(0.50)),
            "p99_us": _round(self.percentile_us(0.99)),
        }
        if self.client_cpu_s is not None and self.ops:
            out["client_cpu_us_per_op"] = round(self.client_cpu_s / self.ops * 1e6, 2)
        if self.node_cpu_s is not None and self.ops:
            out["node_cpu_us_per_op"] = round(self.node_cpu_s / self.ops * 1e6, 2)
        if self.others_cpu_s is not None and self.seconds:
            out["other_processes_cpu_share"] = round(self.others_cpu, 3)
        if self.note:
            out["note"] = self.note
        return out


_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


class Meter:
    """CPU of this process, of the node (if given) and of the whole machine over one measurement."""

    def __init__(self, node_cpu: Callable[[], float] | None = None) -> None:
        self.node_cpu = node_cpu
        self.n0 = node_cpu() if node_cpu else 0.0
        self.m0 = machine_busy_s()
        self.c0 = time.process_time()

    def finish(self, ops: int, seconds: float, lat: array) -> Cell:
        client = time.process_time() - self.c0
        node = self.node_cpu() - self.n0 if self.node_cpu else None
        machine = machine_busy_s() - self.m0
        return Cell(ops, seconds, lat, client, node, machine - client - (node or 0.0))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _loop(fn: Callable[[], Any], deadline_ns: int, lat: array) -> int:
    """Call ``fn`` until the deadline; latency of each call is the time since the previous one ended."""
    pc = time.perf_counter_ns
    append = lat.append
    prev = pc()
    while prev < deadline_ns:
        fn()
        now = pc()
        append(now - prev)
        prev = now
    return prev


def run_sync(
    fn: Callable[[], Any],
    seconds: float,
    *,
    warmup_s: float = 0.2,
    node_cpu: Callable[[], float] | None = None,
) -> Cell:
    """Call ``fn`` back to back on this thread for ``seconds`` (after a warm-up)."""
    _loop(fn, time.perf_counter_ns() + int(warmup_s * 1e9), array("q"))
    lat = array("q")
    meter = Meter(node_cpu)
    t0 = time.perf_counter_ns()
    end = _loop(fn, t0 + int(seconds * 1e9), lat)
    return meter.finish(len(lat), (end - t0) / 1e9, lat)


def run_threads(
    make_fn: Callable[[], Callable[[], Any]],
    threads: int,
    seconds: float,
    *,
    warmup_s: float = 0.2,
    node_cpu: Callable[[], float] | None = None,
) -> Cell:
    """``threads`` threads, each calling its own ``make_fn()`` back to back for ``seconds``."""
    fns = [make_fn() for _ in range(threads)]
    lats = [array("q") for _ in range(threads)]
    ends = [0] * threads
    start = threading.Barrier(threads + 1)
    t0_box: list[int] = []

    def work(i: int) -> None:
        _loop(fns[i], time.perf_counter_ns() + int(warmup_s * 1e9), array("q"))
        start.wait()
        start.wait()  # the main thread took the start time between the two waits
        ends[i] = _loop(fns[i], t0_box[0] + int(seconds * 1e9), lats[i])

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    meter = Meter(node_cpu)
    t0_box.append(time.perf_counter_ns())
    start.wait()
    for w in workers:
        w.join()
    lat = array("q")
    for part in lats:
        lat.extend(part)
    return meter.finish(len(lat), (max(ends) - t0_box[0]) / 1e9, lat)


async def run_async(
    call: Callable[[], Awaitable[Any]],
    width: int,
    seconds: float,
    *,
    warmup_s: float = 0.2,
    node_cpu: Callable[[], float] | None = None,
) -> Cell:
    """``width`` requests kept in flight on the running loop: ``width`` tasks, each awaiting ``call()`` back
    to     back (a sliding window: a new request leaves as soon as one is answered)."""

    async def worker(deadline_ns: int, lat: array | None) -> int:
        pc = time.perf_counter_ns
        prev = pc()
        while prev < deadline_ns:
            await call()
            now = pc()
            if lat is not None:
                lat.append(now - prev)
            prev = now
        return prev

    await asyncio.gather(*(worker(time.perf_counter_ns() + int(warmup_s * 1e9), None) for _ in range(width)))
    lat = array("q")
    meter = Meter(node_cpu)
    t0 = time.perf_counter_ns()
    ends = await asyncio.gather(*(worker(t0 + int(seconds * 1e9), lat) for _ in range(width)))
    return meter.finish(len(lat), (max(ends) - t0) / 1e9, lat)
