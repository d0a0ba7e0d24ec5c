"""Memcached probe: a small asyncio text-protocol client for `stats` (hit ratio, evictions, connections, memory)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from checks.base import CONNECTION_FAILED, ERROR, MISMATCH, CheckConfig, Probe, ProbeResult, probe_metrics
from checks.catalogue import MetricSpec
from checks.model import Sample
from checks.tcp import ProbeFailure, failure_result, open_first, parse_host_port, probe_deadline, resolve

_MAX_STATS_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True)
class MemcachedConfig(CheckConfig):
    #: host:port (default port 11211); the host is resolved on every run
    target: str

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_host_port(self.target, 11211)
        except ValueError as e:
            raise ValueError(f"target: {e}") from None


async def read_stats(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, arg: str = "") -> dict[str, str]:
    """Send `stats [arg]` and parse the `STAT name value` lines up to `END`."""
    writer.write(f"stats {arg}".rstrip().encode() + b"\r\n")
    await writer.drain()
    stats: dict[str, str] = {}
    total = 0
    while True:
        line = await reader.readline()
        if not line:
            raise ProbeFailure(CONNECTION_FAILED, "connection closed in the middle of the stats reply")
        total += len(line)
        if total > _MAX_STATS_BYTES:
            raise ProbeFailure(MISMATCH, "stats reply too large; is this a memcached server?")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if text == "END":
            return stats
        if text.startswith(("ERROR", "CLIENT_ERROR", "SERVER_ERROR")):
            raise ProbeFailure(ERROR, f"server answered {text!r} to stats")
        parts = text.split(" ", 2)
        if len(parts) != 3 or parts[0] != "STAT":
            raise ProbeFailure(MISMATCH, f"unexpected line in the stats reply: {text[:80]!r}; is this a memcached server?")
        stats[parts[1]] = parts[2]


class MemcachedCheck(Probe[MemcachedConfig]):
    """Connect, run `stats`; hit ratio from the change of get_hits/get_misses since the previous run."""

    Config: ClassVar[type[CheckConfig]] = MemcachedConfig
    METRICS = probe_metrics("memcached", "memcached server") + (
        MetricSpec("memcached.connect_seconds", "seconds", "gauge", "time to connect", ("target",)),
        MetricSpec("memcached.stats_seconds", "seconds", "gauge", "round-trip time of the stats command", ("target",)),
        MetricSpec(
            "memcached.hit_ratio", "ratio", "gauge",
            "get hits / (hits + misses) since the previous run; absent on the first run or without gets",
            ("target",),
        ),
        MetricSpec("memcached.evictions_total", "count", "counter", "items evicted to free memory (stats evictions)", ("target",)),
        MetricSpec("memcached.curr_connections", "count", "gauge", "open connections (stats curr_connections)", ("target",)),
        MetricSpec("memcached.items", "count", "gauge", "items stored (stats curr_items)", ("target",)),
        MetricSpec("memcached.used_bytes", "bytes", "gauge", "bytes used to store items (stats bytes)", ("target",)),
        MetricSpec("memcached.limit_bytes", "bytes", "gauge", "memory limit (stats limit_maxbytes)", ("target",)),
        MetricSpec("memcached.memory_used_ratio", "ratio", "gauge", "used_bytes / limit_bytes", ("target",)),
    )

    def __init__(self, config: MemcachedConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._host, self._port = parse_host_port(config.target, 11211)
        self._prev: tuple[str, int, int, int] | None = None  # (pid, uptime, hits, misses)

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        phase = "resolving"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(deadline):
                addrs = await resolve(self._host, self._port)
                phase = "connecting"
                ts = time.time()
                t0 = time.perf_counter()
                reader, writer, _ip = await open_first(addrs, c.target)
                t1 = time.perf_counter()
                phase = "waiting for the stats reply"
                stats = await read_stats(reader, writer)
                t2 = time.perf_counter()
                res.samples += [Sample("memcached.connect_seconds", t1 - t0, ts), Sample("memcached.stats_seconds", t2 - t1, ts)]
                res.samples += self._stats_samples(stats, ts)
        except (TimeoutError, ProbeFailure, OSError) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        finally:
            if writer is not None:
                writer.close()
        return res

    def _stats_samples(self, st: dict[str, str], ts: float) -> list[Sample]:
        def num(key: str) -> float | None:
            try:
                return float(st[key])
            except (KeyError, ValueError):
                return None

        out: list[Sample] = []
        for key, name in (
            ("evictions", "memcached.evictions_total"),
            ("curr_connections", "memcached.curr_connections"),
            ("curr_items", "memcached.items"),
            ("bytes", "memcached.used_bytes"),
            ("limit_maxbytes", "memcached.limit_bytes"),
        ):
            v = num(key)
            if v is not None:
                out.append(Sample(name, v, ts))
        used, limit = num("bytes"), num("limit_maxbytes")
        if used is not None and limit:
            out.append(Sample("memcached.memory_used_ratio", used / limit, ts))
        hits, misses, uptime = num("get_hits"), num("get_misses"), num("uptime")
        if hits is not None and misses is not None:
            cur = (st.get("pid", ""), int(uptime or 0), int(hits), int(misses))
            prev, self._prev = self._prev, cur
            if prev is not None and prev[0] == cur[0] and cur[1] >= prev[1] and cur[2] >= prev[2] and cur[3] >= prev[3]:
                dh, dm = cur[2] - prev[2], cur[3] - prev[3]
                if dh + dm > 0:
                    out.append(Sample("memcached.hit_ratio", dh / (dh + dm), ts))
        return out
