#!/usr/bin/env python3
"""Embedded store query latency: a 30-day range of one series at 1-hour step, from raw samples vs from rollups.

Fills a temporary store with 30 days of one series at a 10 s interval (259,200 samples) plus 99 other series
(so the tables are not trivially small), runs the rollup pass, then times the same query at each resolution.

    python3 bench/store_query.py [--days 30] [--interval 10] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.model import Batch, Sample, new_batch_id  # noqa: E402
from collector.config import Retention, StoreConfig  # noqa: E402
from collector.store import Store  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--other-series", type=int, default=99)
    args = ap.parse_args()
    cfg = StoreConfig(retention=Retention(raw=400 * 86400))
    store = Store(Path(tempfile.mkdtemp(prefix="iw-q-")) / "store.db", cfg)
    store.start()
    end = time.time() // 3600 * 3600
    start = end - args.days * 86400
    n = int(args.days * 86400 / args.interval)
    t0 = time.perf_counter()
    chunk = 20_000
    for off in range(0, n, chunk):
        samples = [Sample("bench.cpu", float(i % 100), start + i * args.interval, {"host": "h0"}) for i in range(off, min(n, off + chunk))]
        await store.ingest(Batch(new_batch_id(), "h0", time.time(), samples))
    # other series: one sample per hour each, to give the tables some width
    for s in range(args.other_series):
        samples = [Sample("bench.other", float(i), start + i * 3600, {"host": f"h{s + 1}"}) for i in range(args.days * 24)]
        await store.ingest(Batch(new_batch_id(), f"h{s + 1}", time.time(), samples))
    fill = time.perf_counter() - t0
    t1 = time.perf_counter()
    await store.maintain()
    roll = time.perf_counter() - t1
    print(f"filled {n} samples of one series (+{args.other_series} others) in {fill:.1f}s; rollup pass {roll:.1f}s")
    results = {}
    for res in ("raw", "1m", "1h"):
        lat = []
        for _ in range(args.repeat):
            q0 = time.perf_counter()
            out, _ = store.reader.query_ex("bench.cpu", {}, start, end, 3600, "avg", resolution=res)
            lat.append(time.perf_counter() - q0)
        pts = len(out[0]["points"])
        results[res] = out[0]["points"]
        print(f"RESULT resolution={res:3s} points={pts} median_ms={statistics.median(lat) * 1000:.1f} p95_ms={sorted(lat)[int(len(lat) * 0.95) - 1] * 1000:.1f}")
    diff = max(abs(a[1] - b[1]) for a, b in zip(results["raw"], results["1h"]))
    print(f"max |raw avg - 1h rollup avg| over {len(results['raw'])} buckets: {diff:.3g}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
