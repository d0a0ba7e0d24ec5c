"""memory check against the OS: totals equal /proc/meminfo and psutil, used = total - available, old kernels without MemAvailable."""

from __future__ import annotations

import psutil
import pytest

from checks import build_check
from checks.model import Sample
from checks.system.memory import MemoryCheck


def meminfo() -> dict[str, int]:
    out = {}
    for line in open("/proc/meminfo"):
        k, _, rest = line.partition(":")
        out[k] = int(rest.split()[0]) * 1024
    return out


async def test_values_agree_with_proc_meminfo_on_the_first_run() -> None:
    check = build_check({"type": "memory"})
    before = meminfo()
    out = await check.run()
    after = meminfo()
    v = {r.name: r.value for r in out if isinstance(r, Sample)}
    assert all(isinstance(r, Sample) and r.tags == {} for r in out)
    assert v["system.memory.total_bytes"] == before["MemTotal"] == after["MemTotal"]
    assert v["system.memory.total_bytes"] == psutil.virtual_memory().total
    lo, hi = sorted((before["MemAvailable"], after["MemAvailable"]))
    slack = 64 * 2**20  # other tests allocate and free memory meanwhile
    assert lo - slack <= v["system.memory.available_bytes"] <= hi + slack
    assert v["system.memory.used_bytes"] == v["system.memory.total_bytes"] - v["system.memory.available_bytes"]
    assert v["system.memory.used_percent"] == pytest.approx(100.0 * v["system.memory.used_bytes"] / v["system.memory.total_bytes"])
    assert 0 < v["system.memory.free_bytes"] <= v["system.memory.total_bytes"]
    assert v["system.memory.swap_total_bytes"] == before["SwapTotal"]
    assert 0 <= v["system.memory.swap_used_bytes"] <= v["system.memory.swap_total_bytes"]
    await check.close()


def test_kernels_without_memavailable_fall_back_to_free_plus_caches() -> None:
    """Synthetic /proc/meminfo text (the parser seam): pre-3.14 kernels have no MemAvailable."""
    c = MemoryCheck(MemoryCheck.Config(type="memory"))
    text = b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\nSwapTotal: 200 kB\nSwapFree: 50 kB\n"
    v = {r.name: r.value for r in c.collect(1.7e9, text) if isinstance(r, Sample)}
    assert v["system.memory.available_bytes"] == 400 * 1024
    assert v["system.memory.used_percent"] == pytest.approx(60.0)
    assert v["system.memory.swap_used_bytes"] == 150 * 1024
    with pytest.raises(RuntimeError, match="MemTotal"):
        c.collect(1.7e9, b"MemFree: 1 kB\n")
