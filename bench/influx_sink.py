#!/usr/bin/env python3
"""InfluxDB sink benchmark: points/s into a real VictoriaMetrics and CPU seconds per million points.

Starts its own VictoriaMetrics (Debian package `victoria-metrics`) on a free loopback port, builds
agent-like batches (1,000 samples each over many hosts and series, realistic tags), and pushes them
through `InfluxDBSink.send()` the way the collector's sink runner does (several batches per call).
Reported: wall-clock points/s, the sink process's CPU seconds per million points (user+sys, all
threads), VictoriaMetrics' CPU for the same work, the encoder alone (line protocol, no I/O), and a
read-back count proving every point arrived. Then the collector's path: the same data enqueued as
committed wire JSON into the collector's SinkRunner (its SQLite outbox), drained through the sink.
On a busy machine wall-clock figures drop; CPU seconds per million points are the stable figure. For comparison it also times influxdb-client's
`Point` objects on the same samples (the issue measured 58-87k points/s for them).

    python3 bench/influx_sink.py [--points 2000000] [--batches-per-send 10] [--gzip-level 1] [--concurrency 4]

Goal (issue 7): >= 200,000 points/s, the sink never the bottleneck of ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.config import from_dict  # noqa: E402
from checks.model import Batch, Sample, new_batch_id  # noqa: E402
from collector.sinks.base import SinkContext  # noqa: E402
from collector.sinks.influxdb import InfluxDBSink  # noqa: E402
from collector.sinks.lineproto import LineEncoder  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
METRICS = [
    ("system.cpu.usage_percent", "cpu", 9), ("system.cpu.user_percent", "cpu", 9), ("system.cpu.system_percent", "cpu", 9),
    ("system.memory.used_percent", None, 1), ("system.memory.available_bytes", None, 1), ("system.load.1m", None, 1),
    ("system.filesystem.used_percent", "mountpoint", 4), ("system.filesystem.free_bytes", "mountpoint", 4),
    ("system.disk.write_bytes_per_second", "device", 3), ("system.disk.read_bytes_per_second", "device", 3),
    ("system.network.rx_bytes_per_second", "interface", 3), ("system.network.tx_bytes_per_second", "interface", 3),
    ("ping.rtt_avg_seconds", "target", 20), ("ping.loss_ratio", "target", 20), ("http.duration_seconds", "target", 10),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def series_templates() -> list[tuple[str, dict[str, str]]]:
    out = []
    for name, tag, n in METRICS:
        for i in range(n):
            tags = {tag: (str(i) if tag == "cpu" else f"/data{i}" if tag == "mountpoint" else f"10.0.{i}.1" if tag == "target" else f"eth{i}")} if tag else {}
            if name.startswith(("ping.", "http.")):
                tags["result"] = "success"
            out.append((name, tags))
    return out


def make_batches(points: int, per_batch: int = 1000, hosts: int = 200) -> list[Batch]:
    """Agent-like batches: each host reports every series once per 10 s interval."""
    rnd = random.Random(7)
    templates = series_templates()
    t0 = time.time() - 86400 * 2  # two days back: nothing collides with other data, all inside retention
    batches: list[Batch] = []
    samples: list[Sample] = []
    k = 0
    host = 0
    while k < points:
        agent = f"host-{host % hosts:04d}"
        ts = t0 + (host // hosts) * 10 + (host % hosts) * 0.001
        for name, tags in templates:
            samples.append(Sample(name, round(rnd.random() * 100, 6), ts, dict(tags)))
            k += 1
            if len(samples) == per_batch or k == points:
                batches.append(Batch(new_batch_id(), agent, ts, samples))
                samples = []
            if k == points:
                break
        host += 1
    return batches


def start_vm(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not os.access(exe, os.X_OK):
        sys.exit("victoria-metrics not found: apt-get install victoria-metrics")
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
         "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("victoria-metrics did not become healthy")


def vm_count(url: str, expected: int, settle: float = 15.0) -> tuple[int, float]:
    """Points stored (count_over_time over every series) and how long they took to become visible.

    VictoriaMetrics answers 204 before a row is searchable; force_flush makes buffered rows visible,
    but on a busy machine the last in-flight parts can lag: poll until the count settles.
    """
    q = urllib.parse.urlencode({"query": 'sum(count_over_time({__name__=~".+"}[3d]))'})
    t0 = time.monotonic()
    total = 0
    while True:
        urllib.request.urlopen(f"{url}/internal/force_flush").read()
        doc = json.loads(urllib.request.urlopen(f"{url}/api/v1/query?{q}&time={time.time():.3f}", timeout=120).read())
        res = doc["data"]["result"]
        total = int(float(res[0]["value"][1])) if res else 0
        waited = time.monotonic() - t0
        if total >= expected or waited > settle:
            return total, waited
        time.sleep(0.5)


def bench_point_objects(batches: list[Batch], limit: int = 100_000) -> float:
    """influxdb-client's Point API on the same samples (line building only), points/s."""
    from influxdb_client import Point, WritePrecision

    n = 0
    t = time.perf_counter()
    for b in batches:
        for s in b.samples:
            m, _, f = s.name.rpartition(".")
            p = Point(m.replace(".", "_")).field(f, s.value).time(round(s.ts * 1000), WritePrecision.MS).tag("host", b.agent)
            for k, v in s.tags.items():
                p = p.tag(k, v)
            p.to_line_protocol()
            n += 1
            if n >= limit:
                return n / (time.perf_counter() - t)
    return n / (time.perf_counter() - t)


async def run(args: argparse.Namespace) -> None:
    print(f"building {args.points:,} samples in batches of 1,000 ...", flush=True)
    batches = make_batches(args.points)

    enc = LineEncoder()
    t = time.perf_counter()
    c0 = self_cpu()
    enc.chunks(batches, args.batch_size)
    enc_wall, enc_cpu = time.perf_counter() - t, self_cpu() - c0
    print(f"encoder only (cold prefix cache): {args.points / enc_wall:,.0f} points/s, {enc_cpu / args.points * 1e6:.2f} CPU s per million points")
    print(f"influxdb-client Point objects:    {bench_point_objects(batches):,.0f} points/s (line building only, for comparison)")

    with tempfile.TemporaryDirectory(prefix="iw-bench-vm-") as tmp:
        vm, url = start_vm(tmp)
        try:
            cfg = from_dict(InfluxDBSink.Config, {
                "url": url, "gzip_level": args.gzip_level, "batch_size": args.batch_size, "concurrency": args.concurrency,
                "gzip": not args.no_gzip,
            })
            sink = InfluxDBSink(cfg, SinkContext(tmp))
            await sink.start()
            # warm-up (connection pool, prefix cache of a fresh sink): not counted, not re-sent
            warm, rest = batches[: args.batches_per_send], batches[args.batches_per_send :]
            await sink.send(warm)
            points = sum(len(b.samples) for b in rest)
            vm_c0, c0, t = cpu_of(vm.pid), self_cpu(), time.perf_counter()
            for i in range(0, len(rest), args.batches_per_send):
                await sink.send(rest[i : i + args.batches_per_send])
            wall = time.perf_counter() - t
            cpu, vm_cpu = self_cpu() - c0, cpu_of(vm.pid) - vm_c0
            await sink.close()
            total, waited = vm_count(url, args.points)
            print(f"\nsink → VictoriaMetrics 1.79 (gzip {'off' if args.no_gzip else f'level {args.gzip_level}'}, "
                  f"{args.batch_size} lines/request, {args.concurrency} in flight, {args.batches_per_send} batches per send):")
            print(f"  throughput:           {points / wall:,.0f} points/s ({points:,} points in {wall:.2f} s)")
            print(f"  sink process CPU:     {cpu / points * 1e6:.2f} CPU s per million points ({cpu / wall:.2f} cores busy; "
                  f"one free core would carry {points / cpu:,.0f} points/s)")
            print(f"  VictoriaMetrics CPU:  {vm_cpu / points * 1e6:.2f} CPU s per million points ({vm_cpu / wall:.2f} cores busy)")
            print(f"  read back:            {total:,} points stored of {args.points:,} sent " + ("(all" if total == args.points else "(MISMATCH")
                  + f", visible {waited:.1f} s after the last write)")
            print(f"  machine:              {os.cpu_count()} CPUs; goal >= 200,000 points/s: {'met' if points / wall >= 200_000 else 'NOT met'}")
            await bench_runner(args, batches, url, tmp, vm.pid)
        finally:
            vm.send_signal(signal.SIGTERM)
            vm.wait(30)


async def bench_runner(args: argparse.Namespace, batches: list[Batch], url: str, tmp: str, vm_pid: int) -> None:
    """The collector's path: committed batches (wire JSON) → SinkRunner's SQLite outbox → decode → sink → VM.

    Enqueueing happens first (as ingest would, never waiting for the sink), then the drain is timed.
    """
    try:
        from collector.sinkrunner import SinkRunner
    except ImportError:
        print("\n(collector/sinkrunner.py not in this tree: runner figures skipped)")
        return
    from checks.model import encode_batch

    # the same samples two hours later: new points, not overwrites of the ones written above
    shifted = [Batch(new_batch_id(), b.agent, b.sent_at, [Sample(x.name, x.value, x.ts + 7200, x.tags) for x in b.samples]) for b in batches]
    payload = [(b.batch_id, encode_batch(b)) for b in shifted]
    points = sum(len(b.samples) for b in shifted)
    cfg = from_dict(InfluxDBSink.Config, {
        "url": url, "gzip_level": args.gzip_level, "batch_size": args.batch_size, "concurrency": args.concurrency,
        "gzip": not args.no_gzip,
    })
    runner = SinkRunner(InfluxDBSink(cfg, SinkContext(tmp)), Path(tmp) / "outbox.db", queue_max_bytes=4 * 2**30,
                        max_batches_per_send=args.batches_per_send * 5)
    c0, t = self_cpu(), time.perf_counter()
    for i in range(0, len(payload), 100):
        runner.enqueue_many(payload[i : i + 100])
    enq_wall, enq_cpu = time.perf_counter() - t, self_cpu() - c0
    vm_c0, c0, t = cpu_of(vm_pid), self_cpu(), time.perf_counter()
    await runner.start()
    drained = await runner.flush(timeout=600)
    wall = time.perf_counter() - t
    cpu, vm_cpu = self_cpu() - c0, cpu_of(vm_pid) - vm_c0
    await runner.stop()
    total, waited = vm_count(url, 2 * args.points)
    print(f"\ncollector path: SinkRunner outbox (SQLite) → decode → sink → VictoriaMetrics ({args.batches_per_send * 5} batches per send):")
    print(f"  enqueue (ingest side): {points / enq_wall:,.0f} points/s, {enq_cpu / points * 1e6:.2f} CPU s per million points")
    print(f"  drain throughput:      {points / wall:,.0f} points/s ({points:,} points in {wall:.2f} s){'' if drained else ' (NOT drained)'}")
    print(f"  collector CPU (drain): {cpu / points * 1e6:.2f} CPU s per million points ({cpu / wall:.2f} cores busy; "
          f"one free core would carry {points / cpu:,.0f} points/s)")
    print(f"  VictoriaMetrics CPU:   {vm_cpu / points * 1e6:.2f} CPU s per million points")
    print(f"  read back:             {total - args.points:,} of {points:,} " + ("(all" if total - args.points == points else "(MISMATCH")
          + f", visible {waited:.1f} s after the last write)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=2_000_000)
    p.add_argument("--batches-per-send", type=int, default=10, help="agent batches (1,000 samples) per send() call")
    p.add_argument("--batch-size", type=int, default=5000, help="lines per write request (sink batch_size)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--gzip-level", type=int, default=1)
    p.add_argument("--no-gzip", action="store_true")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
