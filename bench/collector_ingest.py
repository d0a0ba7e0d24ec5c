#!/usr/bin/env python3
"""Collector ingest benchmark: N concurrent senders post 1000-sample gzip batches to a real collector process.

Prints samples/s durably stored (acknowledged only after the commit) and the collector's CPU seconds per
million samples. Bodies are built before the clock starts, so the senders cost little CPU.

    python3 bench/collector_ingest.py [--senders 8] [--seconds 20] [--batch 1000] [--series 200] [--synchronous full]

BENCH_THREADS=1 prints the collector's CPU per OS thread (main = event loop; the busiest other one is the store writer);
INFRAWATCH_DECODE_ON_LOOP=1 (passed through to the collector) parses batches on the event loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.model import Batch, Sample, encode_batch, new_batch_id  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token-123456"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_bodies(sender: int, count: int, batch: int, series: int, t0: float) -> list[tuple[int, bytes]]:
    """`count` gzip bodies for one sender (host bench-N): `series` series × batch/series timestamps each."""
    out = []
    per = max(1, batch // series)
    for k in range(count):
        samples = []
        for j in range(per):
            ts = t0 + (k * per + j) * 0.01
            for s in range(series):
                samples.append(Sample("bench.value", float(k + j + s), ts, {"host": f"bench-{sender}", "n": str(s)}))
        b = Batch(new_batch_id(), f"bench-{sender}", time.time(), samples[:batch])
        out.append((len(b.samples), gzip.compress(encode_batch(b), 1)))
    return out


async def sender(url: str, bodies: list[tuple[int, bytes]], deadline: float, stats: dict[str, int]) -> None:
    import aiohttp

    hdr = {"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for n, body in bodies:
            if time.monotonic() >= deadline:
                return
            while True:
                async with s.post(url, data=body, headers=hdr) as r:
                    await r.read()
                    if r.status == 200:
                        stats["samples"] += n
                        stats["batches"] += 1
                        break
                    stats[f"http_{r.status}"] = stats.get(f"http_{r.status}", 0) + 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "0.2")))


async def run(args: argparse.Namespace, url: str, pid: int) -> dict[str, float]:
    t0 = time.time() - 3600
    est = int(args.seconds * 400_000 / args.batch / args.senders) + 20  # enough bodies for ~400k samples/s
    print(f"building {est * args.senders} bodies ...", flush=True)
    bodies = [build_bodies(i, est, args.batch, args.series, t0) for i in range(args.senders)]
    stats: dict[str, int] = {"samples": 0, "batches": 0}
    c0 = cpu_seconds(pid)
    w0 = time.monotonic()
    deadline = w0 + args.seconds
    await asyncio.gather(*(sender(url, b, deadline, stats) for b in bodies))
    wall = time.monotonic() - w0
    cpu = cpu_seconds(pid) - c0
    if os.environ.get("BENCH_THREADS"):
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            parts = raw.rsplit(")", 1)[1].split()
            print(f"  thread {tid} {name}: cpu {(int(parts[11]) + int(parts[12])) / CLK:.2f}s")
    return {"wall": wall, "cpu": cpu, **stats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--series", type=int, default=200, help="distinct series per sender")
    ap.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="iw-bench-"))
    port = free_port()
    (tmp / "collector.yaml").write_text(
        f"listen: 127.0.0.1:{port}\ndata_dir: {tmp}/data\nshared_token: {TOKEN}\nself_metrics_interval: 0\n"
        f"log: {{level: warning}}\nstore:\n  synchronous: {args.synchronous}\n  maintenance_interval: 1h\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "infrawatch", "collector", "-c", str(tmp / "collector.yaml")], env=env)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        res = asyncio.run(run(args, f"http://127.0.0.1:{port}/api/v1/batches", p.pid))
    finally:
        p.terminate()
        p.wait(30)
    stored = sqlite3.connect(tmp / "data" / "store.db").execute("SELECT count(*) FROM points").fetchone()[0]
    rate = res["samples"] / res["wall"]
    cpu_per_m = res["cpu"] / (res["samples"] / 1e6) if res["samples"] else float("nan")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"senders={args.senders} batch={args.batch} series/sender={args.series} synchronous={args.synchronous} cores={os.cpu_count()} load={load}")
    print(f"acknowledged: {int(res['samples'])} samples in {int(res['batches'])} batches over {res['wall']:.1f}s; in store after stop: {stored}")
    extra = {k: v for k, v in res.items() if k.startswith("http_")}
    if extra:
        print(f"non-200 answers (retried): {extra}")
    print(f"RESULT ingest_samples_per_second={rate:,.0f}  collector_cpu_seconds_per_million_samples={cpu_per_m:.2f}  (goal >= 200,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
