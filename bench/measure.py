"""Timing loops: a fixed wall-clock budget per measurement, per-operation latencies, CPU per operation."""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


@dataclass
class Cell:
    """One measurement: ``ops`` operations in ``seconds`` of wall time."""

    ops: int
    seconds: float
    latencies_ns: array = field(repr=False)
    client_cpu_s: float | None = None
    node_cpu_s: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile_us(self, q: float) -> float | None:
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] / 1e3

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ops": self.ops, "seconds": round(self.seconds, 4), "ops_per_s": round(self.rate, 1),
                               "p50_us": _round(self.percentile_us(0.50)), "p99_us": _round(self.percentile_us(0.99))}
        if self.client_cpu_s is not None and self.ops:
            out["client_cpu_us_per_op"] = round(self.client_cpu_s / self.ops * 1e6, 2)
        if self.node_cpu_s is not None and self.ops:
            out["node_cpu_us_per_op"] = round(self.node_cpu_s / self.ops * 1e6, 2)
        if self.note:
            out["note"] = self.note
        return out


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


def run_sync(fn: Callable[[], Any], seconds: float, *, warmup_s: float = 0.2,
             node_cpu: Callable[[], float] | None = None) -> Cell:
    """Call ``fn`` back to back on this thread for ``seconds`` (after a warm-up)."""
    _loop(fn, time.perf_counter_ns() + int(warmup_s * 1e9), array("q"))
    lat = array("q")
    n0 = node_cpu() if node_cpu else None
    c0 = time.process_time()
    t0 = time.perf_counter_ns()
    end = _loop(fn, t0 + int(seconds * 1e9), lat)
    client = time.process_time() - c0
    node = node_cpu() - n0 if node_cpu and n0 is not None else None
    return Cell(len(lat), (end - t0) / 1e9, lat, client, node)


def run_threads(make_fn: Callable[[], Callable[[], Any]], threads: int, seconds: float, *,
                warmup_s: float = 0.2) -> Cell:
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
    c0 = time.process_time()
    t0_box.append(time.perf_counter_ns())
    start.wait()
    for w in workers:
        w.join()
    client = time.process_time() - c0
    lat = array("q")
    for part in lats:
        lat.extend(part)
    return Cell(len(lat), (max(ends) - t0_box[0]) / 1e9, lat, client)


async def run_async(call: Callable[[], Awaitable[Any]], width: int, seconds: float, *, warmup_s: float = 0.2,
                    node_cpu: Callable[[], float] | None = None) -> Cell:
    """``width`` requests kept in flight on the running loop: ``width`` tasks, each awaiting ``call()`` back to
    back (a sliding window: a new request leaves as soon as one is answered)."""

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
    n0 = node_cpu() if node_cpu else None
    c0 = time.process_time()
    t0 = time.perf_counter_ns()
    ends = await asyncio.gather(*(worker(t0 + int(seconds * 1e9), lat) for _ in range(width)))
    client = time.process_time() - c0
    node = node_cpu() - n0 if node_cpu and n0 is not None else None
    return Cell(len(lat), (max(ends) - t0) / 1e9, lat, client, node)
