"""CPU check: total and per-core time split (user/system/iowait/steal/idle), usage, context switches and interrupts per second, from /proc/stat."""

from __future__ import annotations

import time
from dataclasses import dataclass

from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.model import Reading, Sample
from checks.system import Rates, proc_stat

# /proc/stat cpu columns: user nice system idle iowait irq softirq steal guest guest_nice.
# guest and guest_nice are already included in user and nice, so only the first 8 are summed.
_NFIELDS = 8


@dataclass(frozen=True, kw_only=True)
class CpuConfig(CheckConfig):
    #: also report every core (tag cpu = core number), not only cpu=total
    per_cpu: bool = True


_T = ("cpu",)


class CpuCheck(Check[CpuConfig]):
    """Percentages are shares of the CPU time that elapsed between two runs; the first run only sets the baseline.

    user = user + nice; system = system + irq + softirq; the five parts user, system, iowait, steal, idle
    add up to 100. usage = 100 - idle - iowait (psutil's cpu_percent definition).

    A core's total going backwards (core taken offline and back) skips that core for one interval. A
    single column going backwards while the total advances is a documented kernel quirk (per-CPU
    iowait can decrease on tickless kernels); that column's delta counts as 0 for the interval.
    """

    Config = CpuConfig
    METRICS = (
        MetricSpec("system.cpu.usage_percent", "percent", "gauge", "share of CPU time not idle and not waiting for I/O (cpu=total: all cores)", _T),
        MetricSpec("system.cpu.user_percent", "percent", "gauge", "share of CPU time in user mode, including niced processes and guests", _T),
        MetricSpec("system.cpu.system_percent", "percent", "gauge", "share of CPU time in kernel mode, including hard and soft interrupts", _T),
        MetricSpec("system.cpu.iowait_percent", "percent", "gauge", "share of CPU time idle while I/O was outstanding", _T),
        MetricSpec("system.cpu.steal_percent", "percent", "gauge", "share of CPU time the hypervisor gave to other guests", _T),
        MetricSpec("system.cpu.idle_percent", "percent", "gauge", "share of CPU time idle with no I/O outstanding", _T),
        MetricSpec("system.cpu.context_switches_per_second", "per_second", "rate", "context switches per second, all cores"),
        MetricSpec("system.cpu.interrupts_per_second", "per_second", "rate", "interrupts serviced per second, all cores"),
    )

    def __init__(self, config: CpuConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._prev_cpu: dict[bytes, list[int]] = {}
        self._rates = Rates()
        self._used = -1.0

    async def run(self) -> list[Reading]:
        # one /proc/stat read, well under a millisecond even on large hosts: done inline
        now, data = proc_stat(self._used)
        self._used = now
        return self.collect(now, time.time(), data)

    def collect(self, now: float, ts: float, data: bytes) -> list[Reading]:
        per_cpu = self.config.per_cpu
        prev = self._prev_cpu
        cur: dict[bytes, list[int]] = {}
        out: list[Reading] = []
        ctxt = intr = None
        for line in data.split(b"\n"):
            if line[:3] == b"cpu":
                name, *vals = line.split(None, _NFIELDS + 1)[: _NFIELDS + 1]
                if name != b"cpu" and not per_cpu:
                    continue
                v = [int(x) for x in vals[:_NFIELDS]]
                if len(v) < _NFIELDS:  # very old kernels lack steal
                    v.extend([0] * (_NFIELDS - len(v)))
                cur[name] = v
                old = prev.get(name)
                if old is not None:
                    self._emit(out, ts, "total" if name == b"cpu" else name[3:].decode(), old, v)
            elif line[:5] == b"ctxt ":
                ctxt = int(line[5:])
            elif line[:5] == b"intr ":
                sp = line.find(b" ", 5)
                intr = int(line[5:sp] if sp > 0 else line[5:])
        self._prev_cpu = cur
        if ctxt is not None and intr is not None:
            r = self._rates.update("ctxt_intr", now, (ctxt, intr))
            if r is not None:
                out.append(Sample("system.cpu.context_switches_per_second", r[0], ts, {}))
                out.append(Sample("system.cpu.interrupts_per_second", r[1], ts, {}))
        return out

    @staticmethod
    def _emit(out: list[Reading], ts: float, cpu: str, old: list[int], new: list[int]) -> None:
        if sum(new) <= sum(old):
            return  # no time passed, or the core's counters were reset
        d = [b - a if b > a else 0 for a, b in zip(old, new)]
        total = d[0] + d[1] + d[2] + d[3] + d[4] + d[5] + d[6] + d[7]
        if total <= 0:
            return
        k = 100.0 / total
        idle = d[3] * k
        iowait = d[4] * k
        out.append(Sample("system.cpu.usage_percent", max(0.0, 100.0 - idle - iowait), ts, {"cpu": cpu}))
        out.append(Sample("system.cpu.user_percent", (d[0] + d[1]) * k, ts, {"cpu": cpu}))
        out.append(Sample("system.cpu.system_percent", (d[2] + d[5] + d[6]) * k, ts, {"cpu": cpu}))
        out.append(Sample("system.cpu.iowait_percent", iowait, ts, {"cpu": cpu}))
        out.append(Sample("system.cpu.steal_percent", d[7] * k, ts, {"cpu": cpu}))
        out.append(Sample("system.cpu.idle_percent", idle, ts, {"cpu": cpu}))
