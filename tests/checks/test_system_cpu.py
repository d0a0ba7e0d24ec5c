"""cpu check against the OS: /proc/stat shares per core and total, a busy process raises usage, counter resets give no rate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from checks import build_check
from checks.model import Sample
from checks.system.cpu import CpuCheck

PARTS = ("user", "system", "iowait", "steal", "idle")


def by_cpu(samples: list[Sample]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in samples:
        if "cpu" in s.tags:
            out.setdefault(s.tags["cpu"], {})[s.name.removeprefix("system.cpu.").removesuffix("_percent")] = s.value
    return out


async def test_first_run_sets_the_baseline_then_shares_add_up_per_core() -> None:
    check = build_check({"type": "cpu"})
    assert await check.run() == []  # only counters so far: no rate, no share
    await asyncio.sleep(0.3)
    readings = await check.run()
    assert all(isinstance(r, Sample) for r in readings)
    cpus = by_cpu(readings)  # type: ignore[arg-type]
    ncpu = sum(1 for line in open("/proc/stat") if line.startswith("cpu") and line[3].isdigit())
    assert set(cpus) == {"total", *(str(i) for i in range(ncpu))}
    for cpu, v in cpus.items():
        assert set(v) == {"usage", *PARTS}, cpu
        assert all(0.0 <= x <= 100.0 for x in v.values()), (cpu, v)
        assert sum(v[p] for p in PARTS) == pytest.approx(100.0, abs=1e-6), (cpu, v)
        assert v["usage"] == pytest.approx(100.0 - v["idle"] - v["iowait"], abs=1e-6)
    names = {r.name for r in readings if isinstance(r, Sample)}
    assert {"system.cpu.context_switches_per_second", "system.cpu.interrupts_per_second"} <= names
    assert all(r.value >= 0 for r in readings if isinstance(r, Sample))
    await check.close()


async def test_per_cpu_off_reports_only_the_total() -> None:
    check = build_check({"type": "cpu", "per_cpu": False})
    await check.run()
    await asyncio.sleep(0.2)
    assert set(by_cpu(await check.run())) == {"total"}  # type: ignore[arg-type]


async def test_a_busy_process_shows_as_usage_and_user_time() -> None:
    check = build_check({"type": "cpu"})
    ncpu = os.cpu_count() or 1
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.2\nwhile time.time() < end: pass"])
    try:
        await asyncio.sleep(0.1)
        await check.run()
        await asyncio.sleep(0.8)
        cpus = by_cpu(await check.run())  # type: ignore[arg-type]
    finally:
        busy.wait(10)
    # one core spinning is at least 1/ncpu of the machine (minus scheduling slack); other tests only add to it
    assert cpus["total"]["usage"] >= 0.6 * 100.0 / ncpu
    assert cpus["total"]["user"] >= 0.5 * 100.0 / ncpu
    # per core: the spinning process may migrate between cores, but the cores together ran it most of the time
    assert sum(v["usage"] for k, v in cpus.items() if k != "total") >= 60.0


async def test_context_switch_rate_matches_proc_stat_delta() -> None:
    def ctxt() -> int:
        return next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("ctxt "))

    check = build_check({"type": "cpu", "per_cpu": False})
    await asyncio.sleep(1.05)  # the cpu and system checks share a /proc/stat read up to 1 s old: let it expire
    t0, c0 = time.monotonic(), ctxt()
    await check.run()
    await asyncio.sleep(0.5)
    out = await check.run()
    t1, c1 = time.monotonic(), ctxt()
    rate = next(r.value for r in out if isinstance(r, Sample) and r.name == "system.cpu.context_switches_per_second")
    # the check's interval (≥ the 0.5 s sleep) lies inside ours: its delta is at most ours
    assert 0 < rate <= (c1 - c0) / 0.5
    assert t1 - t0 >= 0.5


STAT = """cpu  {u} 0 {s} {i} {w} 0 0 {st} 0 0
cpu0 {u} 0 {s} {i} {w} 0 0 {st} 0 0
intr {intr} 1 2 3
ctxt {ctxt}
btime 1700000000
processes 100
procs_running 1
procs_blocked 0
"""


def stat(u: int, s: int, i: int, w: int, st: int, ctxt: int, intr: int) -> bytes:
    return STAT.format(u=u, s=s, i=i, w=w, st=st, ctxt=ctxt, intr=intr).encode()


def test_exact_shares_and_rates_from_counters() -> None:
    """Synthetic /proc/stat text (the parser seam): exact arithmetic, resets never give a rate."""
    c = CpuCheck(CpuCheck.Config(type="cpu"))
    assert c.collect(100.0, 1.7e9, stat(100, 50, 800, 40, 10, 1000, 5000)) == []
    out = c.collect(110.0, 1.7e9, stat(160, 70, 900, 50, 20, 3000, 6000))  # +60 +20 +100 +10 +10 = 200 ticks
    v = {(r.name, r.tags.get("cpu")): r.value for r in out if isinstance(r, Sample)}
    assert v[("system.cpu.user_percent", "total")] == pytest.approx(30.0)
    assert v[("system.cpu.system_percent", "0")] == pytest.approx(10.0)
    assert v[("system.cpu.idle_percent", "total")] == pytest.approx(50.0)
    assert v[("system.cpu.iowait_percent", "total")] == pytest.approx(5.0)
    assert v[("system.cpu.steal_percent", "total")] == pytest.approx(5.0)
    assert v[("system.cpu.usage_percent", "total")] == pytest.approx(45.0)
    assert v[("system.cpu.context_switches_per_second", None)] == pytest.approx(200.0)
    assert v[("system.cpu.interrupts_per_second", None)] == pytest.approx(100.0)
    # a reboot (counters restart near zero): nothing for this interval, no negative or huge value
    assert c.collect(120.0, 1.7e9, stat(5, 5, 10, 0, 0, 30, 40)) == []
    # and the next interval is normal again
    out = c.collect(130.0, 1.7e9, stat(15, 5, 10, 0, 0, 130, 40))
    v = {(r.name, r.tags.get("cpu")): r.value for r in out if isinstance(r, Sample)}
    assert v[("system.cpu.usage_percent", "total")] == pytest.approx(100.0)
    assert v[("system.cpu.context_switches_per_second", None)] == pytest.approx(10.0)


def test_a_single_column_going_backwards_counts_as_zero() -> None:
    """Per-CPU iowait may decrease on tickless kernels while the total advances: that column is 0, never negative."""
    c = CpuCheck(CpuCheck.Config(type="cpu"))
    c.collect(1.0, 1.7e9, stat(100, 50, 800, 40, 0, 1, 1))
    out = c.collect(2.0, 1.7e9, stat(150, 50, 850, 30, 0, 2, 2))
    assert all(r.value >= 0 for r in out if isinstance(r, Sample))
    v = {(r.name, r.tags.get("cpu")): r.value for r in out if isinstance(r, Sample)}
    assert v[("system.cpu.iowait_percent", "total")] == 0.0
    assert v[("system.cpu.user_percent", "total")] == pytest.approx(50.0)
