"""Benchmark: CPU milliseconds per run of each system check (time.process_time over many runs), with a naive psutil reference."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Callable

from checks import build_check

TYPES = ("cpu", "memory", "disk", "network", "system")


def _psutil_reference() -> dict[str, Callable[[], Any]]:
    """What a straightforward psutil implementation of each check would call per run."""
    import psutil

    def cpu() -> Any:
        psutil.cpu_times_percent(percpu=False)
        psutil.cpu_times_percent(percpu=True)
        return psutil.cpu_stats()

    def memory() -> Any:
        return psutil.virtual_memory(), psutil.swap_memory()

    def disk() -> Any:
        parts = psutil.disk_partitions(all=False)
        for p in parts:
            psutil.disk_usage(p.mountpoint)
        return psutil.disk_io_counters(perdisk=True)

    def network() -> Any:
        psutil.net_io_counters(pernic=True)
        return psutil.net_connections("tcp")

    def system() -> Any:
        return psutil.getloadavg(), len(psutil.pids()), psutil.boot_time(), psutil.cpu_count()

    return {"cpu": cpu, "memory": memory, "disk": disk, "network": network, "system": system}


async def _measure(f: Callable[[], Any], runs: int, pause: float) -> tuple[float, float, Any]:
    """(CPU ms per call, wall ms per call, last result); CPU and wall time counted only inside the calls."""
    cpu = wall = 0.0
    res = None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        res = f()
        if asyncio.iscoroutine(res):
            res = await res
        c1, w1 = time.process_time(), time.perf_counter()
        cpu += c1 - c0
        wall += w1 - w0
        if pause:
            time.sleep(pause)  # let jiffies and counters advance, as between real runs; not counted
    return cpu * 1000 / runs, wall * 1000 / runs, res


async def bench(runs: int, reference: bool, pause: float) -> None:
    total = 0.0
    print(f"{'check':<10} {'CPU ms/run':>11} {'wall ms/run':>12} {'readings':>9}" + (f" {'psutil ref ms':>14}" if reference else ""))
    ref = _psutil_reference() if reference else {}
    for t in TYPES:
        check = build_check({"type": t})
        await check.run()  # baseline run: the first run has no rates
        time.sleep(pause)
        await check.run()
        time.sleep(pause)
        cpu_ms, wall_ms, res = await _measure(check.run, runs, pause)
        await check.close()
        total += cpu_ms
        line = f"{t:<10} {cpu_ms:>11.3f} {wall_ms:>12.3f} {len(res):>9}"
        if reference:
            f = ref[t]
            f()
            rcpu, _, _ = await _measure(f, max(20, runs // 5), pause)
            line += f" {rcpu:>14.3f}"
        print(line, flush=True)
    print(f"{'all five':<10} {total:>11.3f}   (budget for the whole agent: ~12 ms CPU per 10 s cycle)")
    # the network check counts TCP states on its first run and then every tcp_states_interval (30 s):
    # a count walks the kernel's whole TCP hash table, so it is measured on its own
    from checks.system.network import TcpStateCounter

    for label, counter in (("netlink", TcpStateCounter()), ("/proc/net/tcp*", TcpStateCounter(use_netlink=False))):
        counter.count()
        cpu_ms, wall_ms, res = await _measure(counter.count, max(20, runs // 5), pause)
        counter.close()
        print(f"{'tcp states':<10} {cpu_ms:>11.3f} {wall_ms:>12.3f} {sum(res.values()):>9}  per count, {label} (sockets counted)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=300, help="runs per check (default 300)")
    ap.add_argument("--pause", type=float, default=0.02, help="sleep between runs, not counted (default 0.02 s)")
    ap.add_argument("--no-reference", action="store_true", help="skip the naive psutil comparison")
    a = ap.parse_args()
    asyncio.run(bench(a.runs, not a.no_reference, a.pause))


if __name__ == "__main__":
    main()
