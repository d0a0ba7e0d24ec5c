"""Agent self metrics (checks.catalogue.AGENT_METRICS): buffer, shipping, checks, process CPU and RSS."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from typing import Callable

from checks.model import Reading, Sample

from agent.buffer import BufferStats
from agent.scheduler import CheckStats
from agent.shipper import ShipStats

log = logging.getLogger("infrawatch.agent.health")

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    try:
        with open("/proc/self/stat", "rb") as f:
            parts = f.read().rsplit(b")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / _CLK
    except (OSError, IndexError, ValueError):
        t = os.times()
        return t.user + t.system


def process_rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Health:
    """Builds the agent's self-metric samples from the live counters of its parts."""

    def __init__(
        self,
        buffer: BufferStats,
        ship: ShipStats,
        checks: dict[str, CheckStats],
        invalid: Counter[str],
        emit: Callable[[list[Reading]], None],
        interval: float,
    ) -> None:
        self.buffer = buffer
        self.ship = ship
        self.checks = checks
        self.invalid = invalid
        self.emit = emit
        self.interval = interval

    def samples(self, ts: float | None = None) -> list[Reading]:
        ts = time.time() if ts is None else ts
        b, s = self.buffer, self.ship
        out: list[Reading] = [
            Sample("agent.buffer.depth_readings", float(b.depth), ts, {}),
            Sample("agent.buffer.bytes", float(b.bytes), ts, {}),
            Sample("agent.buffer.dropped_total", float(b.dropped), ts, {}),
            Sample("agent.ship.batches_total", float(s.batches), ts, {}),
            Sample("agent.ship.rejected_readings_total", float(b.rejected), ts, {}),
            Sample("agent.process.cpu_seconds_total", process_cpu_seconds(), ts, {}),
            Sample("agent.process.rss_bytes", float(process_rss_bytes()), ts, {}),
        ]
        for reason, n in sorted(s.failures.items()):
            out.append(Sample("agent.ship.failures_total", float(n), ts, {"reason": reason}))
        for st in self.checks.values():
            tags = {"check": st.check, "type": st.type}
            if st.last_duration is not None:
                out.append(Sample("agent.check.duration_seconds", st.last_duration, ts, dict(tags)))
            out.append(Sample("agent.check.errors_total", float(st.errors), ts, dict(tags)))
            if st.skipped:
                out.append(Sample("agent.check.skipped_total", float(st.skipped), ts, dict(tags)))
        for source, n in sorted(self.invalid.items()):
            out.append(Sample("agent.readings.invalid_total", float(n), ts, {"source": source}))
        return out

    def emit_now(self) -> None:
        try:
            self.emit(self.samples())
        except Exception:
            log.exception("could not record self metrics")

    async def run(self) -> None:
        """Emit self metrics every interval, aligned to the interval (first after one interval)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 1
        while True:
            await asyncio.sleep(max(0.0, start + n * self.interval - loop.time()))
            self.emit_now()
            n = int((loop.time() - start) // self.interval) + 1
