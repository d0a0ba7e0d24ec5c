"""Benchmark: ping sweep of N loopback targets × 3 echoes, infrawatch's ping check vs fping, same targets, same run.

Prints wall time, CPU seconds, targets/s and CPU µs per target of both (median of --repeat runs), the ratios, and whether the goals
hold (wall ≤ 1.5× fping's, CPU ≤ 10× fping's). Both use the same pacing: fping `-i` (ms between any two
packets) ↔ our `rate` (packets/s), fping `-p` ↔ `echo_interval`, fping `-t` ↔ `echo_timeout`.

Traffic goes to 127.0.0.0/8 only. Needs root (raw sockets, fping's -i below 1 ms) or
net.ipv4.ping_group_range covering your group. Our CPU is measured in-process (getrusage) for a run of
an already-started check, as in the long-running agent; the first ("cold") run is reported separately.

    python3 bench/ping_sweep.py                 # 1000 targets, -i 1 and -i 0.1
    python3 bench/ping_sweep.py --targets 2000 --intervals 0.1
    python3 bench/ping_sweep.py --targets 254 --icmplib
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks import build_check  # noqa: E402
from checks.model import Sample  # noqa: E402


def loopback_targets(n: int) -> list[str]:
    return [f"127.{20 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}" for i in range(n)]


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_fping(targets: list[str], count: int, interval_ms: float, period_ms: float, timeout_ms: float) -> tuple[float, float, int]:
    """(wall s, cpu s, echoes lost)"""
    args = ["fping", "-q", "-C", str(count), "-i", f"{interval_ms:g}", "-p", f"{period_ms:g}", "-t", f"{timeout_ms:g}", "-f", "-"]
    c0, w0 = cpu_children(), time.perf_counter()
    p = subprocess.run(args, input="\n".join(targets) + "\n", capture_output=True, text=True)
    wall, cpu = time.perf_counter() - w0, cpu_children() - c0
    lost = 0
    seen = 0
    for line in p.stderr.splitlines():
        if " : " not in line:
            continue
        seen += 1
        lost += sum(1 for v in line.split(" : ", 1)[1].split() if v == "-")
    if seen != len(targets):
        raise SystemExit(f"fping reported {seen} of {len(targets)} targets: {p.stderr[-500:]}")
    return wall, cpu, lost


async def run_ours(check, count: int) -> tuple[float, float, int]:
    c0, w0 = cpu_self(), time.perf_counter()
    readings = await check.run()
    wall, cpu = time.perf_counter() - w0, cpu_self() - c0
    lost = sum(round(s.value * count) for s in readings if isinstance(s, Sample) and s.name == "ping.loss_ratio")
    return wall, cpu, lost


async def run_icmplib(targets: list[str], count: int, interval_ms: float, timeout_ms: float) -> tuple[float, float, int]:
    from icmplib import async_multiping

    c0, w0 = cpu_self(), time.perf_counter()
    hosts = await async_multiping(targets, count=count, interval=interval_ms / 1000, timeout=timeout_ms / 1000, concurrent_tasks=len(targets), privileged=True)
    wall, cpu = time.perf_counter() - w0, cpu_self() - c0
    return wall, cpu, sum(h.packets_sent - h.packets_received for h in hosts)


N_TARGETS = 0


def fmt(label: str, wall: float, cpu: float, lost: int) -> str:
    n = max(N_TARGETS, 1)
    return (f"  {label:<28} wall {wall:7.3f} s   cpu {cpu:7.3f} s   {n / wall:8.0f} targets/s   "
            f"cpu {cpu / n * 1e6:6.0f} µs/target   lost echoes {lost}")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--intervals", default="1,0.1", help="fping -i values in ms (comma-separated); ours: rate = 1000/i")
    ap.add_argument("--period", type=float, default=20.0, help="fping -p / echo_interval, ms")
    ap.add_argument("--timeout", type=float, default=500.0, help="fping -t / echo_timeout, ms")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--socket", default="auto", choices=["auto", "dgram", "raw"])
    ap.add_argument("--icmplib", action="store_true", help="also time icmplib.async_multiping(privileged=True)")
    a = ap.parse_args()
    if shutil.which("fping") is None:
        print("fping is not installed: apt-get install fping", file=sys.stderr)
        return 2
    targets = loopback_targets(a.targets)
    global N_TARGETS
    N_TARGETS = len(targets)
    print(f"ping sweep: {a.targets} loopback targets × {a.count} echoes, -p {a.period:g} ms, -t {a.timeout:g} ms, median of {a.repeat}")
    ok = True
    for iv in (float(x) for x in a.intervals.split(",")):
        rate = 1000.0 / iv if iv > 0 else 0.0
        check = build_check(
            {"type": "ping", "targets": targets, "count": a.count, "echo_interval": a.period / 1000, "echo_timeout": a.timeout / 1000,
             "rate": rate, "socket": a.socket, "interval": 60}
        )
        cold = await run_ours(check, a.count)
        f_runs, o_runs = [], []
        for _ in range(a.repeat):
            f_runs.append(run_fping(targets, a.count, iv, a.period, a.timeout))
            o_runs.append(await run_ours(check, a.count))
        mode = check._engine.socket_mode(2) if check._engine else "?"  # type: ignore[attr-defined]
        await check.close()
        fw, fc = statistics.median(r[0] for r in f_runs), statistics.median(r[1] for r in f_runs)
        ow, oc = statistics.median(r[0] for r in o_runs), statistics.median(r[1] for r in o_runs)
        print(f"\npacing -i {iv:g} ms (rate {rate:g}/s), our socket: {mode}")
        print(fmt("fping", fw, fc, max(r[2] for r in f_runs)))
        print(fmt("infrawatch ping", ow, oc, max(r[2] for r in o_runs)))
        print(fmt("infrawatch ping (cold run)", *cold))
        wr, cr = ow / fw, oc / max(fc, 1e-3)
        good = wr <= 1.5 and cr <= 10
        ok &= good
        print(f"  ratio: wall {wr:.2f}× (goal ≤ 1.5×), cpu {cr:.2f}× (goal ≤ 10×) → {'OK' if good else 'MISSED'}")
        if a.icmplib:
            print(fmt("icmplib async_multiping", *(await run_icmplib(targets, a.count, a.period, a.timeout))))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
