"""Find-by-label latency among many token objects, and the node's memory.

Usage: python bench/find_by_label.py [--objects 100000] [--lookups 2000]

Objects are written through the node's own sealing path (the same envelope and index columns as
C_CreateObject), in batches of one transaction each, so the store holds what a real node would.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from strongroom.node import HSM, Settings
from strongroom.objects import templates
from strongroom.objects.attributes import normalize_template
from strongroom.objects.model import HsmObject
from strongroom.vocab import CKA, CKK, CKO, CKU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(argon2_memory_kib=1024, argon2_time_cost=1)
        hsm = HSM.initialize(tmp, preco_password="initial-pass", settings=settings)
        app = hsm.connect()
        s = app.open_session()
        app.login(s, CKU.SO, "admin:initial-pass")
        app.activate(s, "admin-pass-1")
        app.create_user(s, "bench", "bench-pass", "crypto-user")
        app.close_all_sessions()
        app.login(s := app.open_session(), CKU.USER, "bench:bench-pass")
        batch = 5_000
        start = time.perf_counter()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("sealing objects", total=args.objects)
            for first in range(0, args.objects, batch):
                with hsm.store.transaction() as tx:
                    for i in range(first, min(first + batch, args.objects)):
                        attrs = templates.for_create(normalize_template({
                            CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: bytes(32),
                            CKA.TOKEN: True, CKA.LABEL: f"key-{i}"}))
                        material = attrs.pop(CKA.VALUE)
                        obj = HsmObject(hsm.new_handle(tx, True), attrs, material, "bench")
                        hsm.put_object(tx, obj)
                progress.advance(task, min(batch, args.objects - first))
        fill_s = time.perf_counter() - start
        hsm._objects.clear()
        latencies = []
        for n in range(args.lookups):
            label = f"key-{(n * 7919) % args.objects}"
            t0 = time.perf_counter()
            found = app.find(s, {CKA.LABEL: label})
            latencies.append(time.perf_counter() - t0)
            assert len(found) == 1
        latencies.sort()
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        table = Table(title=f"find by label among {args.objects:,} token objects")
        for column in ("lookups", "p50 (ms)", "p99 (ms)", "mean (ms)", "fill (s)", "max RSS (MiB)"):
            table.add_column(column, justify="right")
        table.add_row(f"{args.lookups:,}", f"{latencies[len(latencies) // 2] * 1e3:.3f}",
                      f"{latencies[int(len(latencies) * 0.99)] * 1e3:.3f}",
                      f"{statistics.fmean(latencies) * 1e3:.3f}", f"{fill_s:.1f}", f"{rss_mib:.0f}")
        console.print(table)
        hsm.close()


if __name__ == "__main__":
    main()
