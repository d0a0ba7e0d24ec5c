"""Benchmark: probes/s and CPU ms per HTTP probe with N probe instances per interval, run concurrently like the agent.

A local aiohttp server runs in a separate process (its CPU is not counted). Each round runs every
HttpCheck once, all at the same time, and the probing process's CPU time (all threads) is measured.

    python3 bench/http_probe.py                 # 200 targets, 5 rounds, 127.0.0.1
    python3 bench/http_probe.py --host localhost --targets 200 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVER = r"""
import sys
from aiohttp import web
async def ok(_r):
    return web.Response(text='{"status": "ok", "checks": {"db": "ok", "cache": "ok"}}', content_type="application/json")
app = web.Application()
app.router.add_get("/health/{n}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"benchmark server did not start on port {port}")


async def bench(host: str, port: int, targets: int, rounds: int, body_regex: bool) -> dict[str, float]:
    from checks import build_check
    from checks.model import Sample

    extra = {"body_must_match": [r'"status":\s*"ok"']} if body_regex else {}
    s0 = time.perf_counter()
    checks = [
        build_check({"type": "http", "name": f"h{i}", "target": f"http://{host}:{port}/health/{i}", "timeout": 10, **extra})
        for i in range(targets)
    ]
    # warm-up round: sessions created, code paths hot
    await asyncio.gather(*(c.run() for c in checks))
    setup_s = time.perf_counter() - s0
    cpu_per_round: list[float] = []
    wall_per_round: list[float] = []
    durations: list[float] = []
    failures = 0
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(c.run() for c in checks))
        cpu_per_round.append(time.process_time() - c0)
        wall_per_round.append(time.perf_counter() - w0)
        for out in results:
            for r in out:
                if isinstance(r, Sample) and r.name == "http.up":
                    failures += r.value == 0
                if isinstance(r, Sample) and r.name == "http.duration_seconds":
                    durations.append(r.value)
    for c in checks:
        await c.close()
    probes = targets * rounds
    return {
        "cpu_ms_per_probe": 1000 * sum(cpu_per_round) / probes,
        "cpu_s_per_round": statistics.mean(cpu_per_round),
        "wall_s_per_round": statistics.mean(wall_per_round),
        "probe_duration_p50_ms": 1000 * statistics.median(durations),
        "probe_duration_max_ms": 1000 * max(durations),
        "failures": float(failures),
        "probes_per_second": probes / sum(wall_per_round),
        "setup_s": setup_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (no DNS) or localhost (resolved every probe)")
    args = ap.parse_args()

    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        wait_port(port)
        print(f"HTTP probe benchmark: {args.targets} targets per interval, {args.rounds} rounds, "
              f"server in a separate process (pid {srv.pid}), {os.cpu_count()} CPUs")
        for host in dict.fromkeys([args.host, "localhost" if args.host != "localhost" else "127.0.0.1"]):
            for regex in (False, True):
                r = asyncio.run(bench(host, port, args.targets, args.rounds, regex))
                what = f"host={host:<9} body_regex={'yes' if regex else 'no ':<3}"
                print(f"  {what}  {r['probes_per_second']:.0f} probes/s  CPU {r['cpu_ms_per_probe']:.2f} ms/probe  "
                      f"({r['cpu_s_per_round']:.3f} CPU s per round of {args.targets}), "
                      f"wall {r['wall_s_per_round']:.3f} s/round, probe p50 {r['probe_duration_p50_ms']:.1f} ms "
                      f"max {r['probe_duration_max_ms']:.1f} ms, failures {int(r['failures'])}, "
                      f"set-up + first round {r['setup_s']:.2f} s")
    finally:
        srv.terminate()
        srv.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
