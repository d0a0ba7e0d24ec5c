"""Memory check: total, available, used, free, swap, from /proc/meminfo."""

from __future__ import annotations

import time
from dataclasses import dataclass

from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.model import Reading, Sample
from checks.system import ProcFile

_WANTED = frozenset((b"MemTotal", b"MemFree", b"MemAvailable", b"Buffers", b"Cached", b"SwapTotal", b"SwapFree"))


@dataclass(frozen=True, kw_only=True)
class MemoryConfig(CheckConfig):
    pass


def parse_meminfo(data: bytes) -> dict[bytes, int]:
    """The fields memory needs from /proc/meminfo, in bytes (the file says kB and means KiB)."""
    out: dict[bytes, int] = {}
    for line in data.split(b"\n"):
        key, _, rest = line.partition(b":")
        if key in _WANTED:
            out[key] = int(rest.split()[0]) * 1024
            if len(out) == len(_WANTED):
                break
    return out


class MemoryCheck(Check[MemoryConfig]):
    """Gauges only, so the first run already reports everything.

    used = total - available (what applications cannot get without swapping), as `free` and psutil
    report it; kernels older than 3.14 lack MemAvailable, then available = free + buffers + cached.
    """

    Config = MemoryConfig
    METRICS = (
        MetricSpec("system.memory.total_bytes", "bytes", "gauge", "usable RAM (MemTotal)"),
        MetricSpec("system.memory.available_bytes", "bytes", "gauge", "RAM available to start applications without swapping (MemAvailable)"),
        MetricSpec("system.memory.used_bytes", "bytes", "gauge", "total minus available"),
        MetricSpec("system.memory.free_bytes", "bytes", "gauge", "RAM not used for anything, not even caches (MemFree)"),
        MetricSpec("system.memory.used_percent", "percent", "gauge", "used as a share of total"),
        MetricSpec("system.memory.swap_total_bytes", "bytes", "gauge", "swap space configured"),
        MetricSpec("system.memory.swap_used_bytes", "bytes", "gauge", "swap space in use"),
    )

    def __init__(self, config: MemoryConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._meminfo = ProcFile("/proc/meminfo", single=True)

    async def close(self) -> None:
        self._meminfo.close()

    async def run(self) -> list[Reading]:
        # one small /proc read (tens of µs): inline
        return self.collect(time.time(), self._meminfo.read())

    def collect(self, ts: float, data: bytes) -> list[Reading]:
        m = parse_meminfo(data)
        total = m.get(b"MemTotal")
        if not total:
            raise RuntimeError("/proc/meminfo has no MemTotal")
        free = m.get(b"MemFree", 0)
        avail = m.get(b"MemAvailable")
        if avail is None:
            avail = min(total, free + m.get(b"Buffers", 0) + m.get(b"Cached", 0))
        used = total - avail
        swap_total = m.get(b"SwapTotal", 0)
        swap_used = max(0, swap_total - m.get(b"SwapFree", 0))
        return [
            Sample("system.memory.total_bytes", float(total), ts, {}),
            Sample("system.memory.available_bytes", float(avail), ts, {}),
            Sample("system.memory.used_bytes", float(used), ts, {}),
            Sample("system.memory.free_bytes", float(free), ts, {}),
            Sample("system.memory.used_percent", used * 100.0 / total, ts, {}),
            Sample("system.memory.swap_total_bytes", float(swap_total), ts, {}),
            Sample("system.memory.swap_used_bytes", float(swap_used), ts, {}),
        ]
