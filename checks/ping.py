"""The ping check: ICMP echo to many targets per run — loss, round-trip statistics and reachability per target."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

from checks.base import CONNECTION_FAILED, DNS_ERROR, SUCCESS, TIMEOUT, Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.config import ConfigError, Duration
from checks.icmp import EchoResult, EchoTarget, IcmpEngine
from checks.model import PROBE_FAILURE, Event, Reading, Sample

log = logging.getLogger("infrawatch.checks.ping")

_RTF_UP = 0x0001
_RTF_GATEWAY = 0x0002
MAX_TARGETS = 100_000


@dataclass(frozen=True, kw_only=True)
class PingConfig(CheckConfig):
    #: IP addresses (IPv4, IPv6, `fe80::1%eth0`) or host names, resolved on every run
    targets: list[str] = field(default_factory=list)
    #: also ping the gateways of the default routes (/proc/net/route, /proc/net/ipv6_route)
    default_gateway: bool = False
    #: echo requests per target and run
    count: int = 3
    #: time between two echoes to the same target
    echo_interval: Duration = 1.0
    #: an echo without a reply within this time is lost
    echo_timeout: Duration = 1.0
    #: at most this many echo requests per second over all targets (0 = no pacing)
    rate: float = 1000.0
    #: ICMP payload bytes (like ping -s); at least 8
    size: int = 56
    #: which address family names resolve to: auto (the resolver's first answer), ipv4, ipv6
    family: Literal["auto", "ipv4", "ipv6"] = "auto"
    #: auto: unprivileged datagram socket if net.ipv4.ping_group_range allows, else raw (CAP_NET_RAW)
    socket: Literal["auto", "dgram", "raw"] = "auto"
    #: time allowed for resolving one name
    dns_timeout: Duration = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.targets and not self.default_gateway:
            raise ValueError("no targets: list addresses or names under `targets`, or set `default_gateway: true`")
        if len(self.targets) > MAX_TARGETS:
            raise ValueError(f"targets: at most {MAX_TARGETS} targets per check")
        for i, t in enumerate(self.targets):
            if not t or t != t.strip() or any(c.isspace() for c in t) or len(t) > 253:
                raise ConfigError(f"targets[{i}]", f"not an address or host name: {t!r}")
        if not 1 <= self.count <= 10_000:
            raise ValueError(f"count must be between 1 and 10000, got {self.count}")
        if self.echo_timeout <= 0:
            raise ValueError("echo_timeout must be greater than 0")
        if self.rate < 0:
            raise ValueError("rate must not be negative (0 = no pacing)")
        if not 8 <= self.size <= 65_000:
            raise ValueError(f"size must be between 8 and 65000 bytes, got {self.size}")
        if self.dns_timeout <= 0:
            raise ValueError("dns_timeout must be greater than 0")
        need = (self.count - 1) * self.echo_interval + self.echo_timeout
        if need >= self.effective_timeout:
            raise ValueError(
                f"(count - 1) × echo_interval + echo_timeout = {need:g}s does not fit in the check's timeout "
                f"({self.effective_timeout:g}s): lower count, echo_interval or echo_timeout, or raise interval/timeout"
            )


@dataclass(slots=True)
class _Target:
    label: str
    #: a literal address (resolved once) or None for a name
    literal: EchoTarget | None
    gateway: bool = False
    name: str | None = None


def _literal(text: str) -> EchoTarget | None:
    """An EchoTarget for an IP literal (with an optional %scope), None for a name."""
    host, _, scope = text.partition("%")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        if scope:
            return None
        a = str(ip)
        return EchoTarget(socket.AF_INET, a, (a, 0))
    a = socket.inet_ntop(socket.AF_INET6, ip.packed)
    scope_id = 0
    if scope:
        try:
            scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            return None
    return EchoTarget(socket.AF_INET6, a, (a, 0, 0, scope_id))


def default_gateways(route4: str = "/proc/net/route", route6: str = "/proc/net/ipv6_route") -> list[tuple[str, EchoTarget]]:
    """(label, target) for the gateway of every default route in this network namespace."""
    out: dict[str, EchoTarget] = {}
    try:
        with open(route4) as f:
            lines = f.read().splitlines()[1:]
    except OSError as e:
        log.warning("cannot read the IPv4 routing table", extra={"path": route4, "error": str(e)})
        lines = []
    for line in lines:
        p = line.split()
        if len(p) < 8:
            continue
        try:
            dest, gw, flags, mask = int(p[1], 16), int(p[2], 16), int(p[3], 16), int(p[7], 16)
        except ValueError:
            continue
        if dest == 0 and mask == 0 and gw and flags & _RTF_UP and flags & _RTF_GATEWAY:
            a = socket.inet_ntoa(struct.pack("<I", gw))
            out.setdefault(a, EchoTarget(socket.AF_INET, a, (a, 0)))
    try:
        with open(route6) as f:
            lines6 = f.read().splitlines()
    except OSError:
        lines6 = []  # no IPv6 on this host
    for line in lines6:
        p = line.split()
        if len(p) < 10:
            continue
        try:
            dest, plen, nh, flags = int(p[0], 16), int(p[1], 16), bytes.fromhex(p[4]), int(p[8], 16)
        except ValueError:
            continue
        if dest != 0 or plen != 0 or not any(nh) or not flags & _RTF_UP or not flags & _RTF_GATEWAY:
            continue
        a = socket.inet_ntop(socket.AF_INET6, nh)
        iface = p[9]
        scope_id = 0
        label = a
        if ipaddress.IPv6Address(nh).is_link_local:
            try:
                scope_id = socket.if_nametoindex(iface)
            except OSError:
                continue
            label = f"{a}%{iface}"
        out.setdefault(label, EchoTarget(socket.AF_INET6, a, (a, 0, 0, scope_id)))
    return list(out.items())


def _stats(res: EchoResult) -> dict[str, float]:
    rtts = [r for _, r in sorted(res.replies)]
    n = len(rtts)
    out = {"loss": 1.0 - n / res.sent if res.sent else 1.0}
    if n:
        avg = sum(rtts) / n
        out["min"] = min(rtts)
        out["max"] = max(rtts)
        out["avg"] = avg
        out["mdev"] = math.sqrt(max(0.0, sum(r * r for r in rtts) / n - avg * avg))
        out["jitter"] = sum(abs(b - a) for a, b in zip(rtts, rtts[1:])) / (n - 1) if n > 1 else 0.0
    return out


class PingCheck(Check[PingConfig]):
    """ICMP echo to every target; one socket per address family shared by all targets."""

    Config = PingConfig
    METRICS = (
        MetricSpec("ping.up", "bool", "gauge", "1 if the target answered at least one echo request, else 0", ("target", "address", "role", "result")),
        MetricSpec("ping.loss_ratio", "ratio", "gauge", "share of echo requests without a reply within echo_timeout", ("target", "address", "role")),
        MetricSpec("ping.rtt_min_seconds", "seconds", "gauge", "shortest round-trip time of the run", ("target", "address", "role")),
        MetricSpec("ping.rtt_avg_seconds", "seconds", "gauge", "mean round-trip time of the run", ("target", "address", "role")),
        MetricSpec("ping.rtt_max_seconds", "seconds", "gauge", "longest round-trip time of the run", ("target", "address", "role")),
        MetricSpec("ping.rtt_mdev_seconds", "seconds", "gauge", "standard deviation of the round-trip times (ping's mdev)", ("target", "address", "role")),
        MetricSpec("ping.jitter_seconds", "seconds", "gauge", "mean difference between consecutive round-trip times", ("target", "address", "role")),
        MetricSpec("ping.duration_seconds", "seconds", "gauge", "wall time of the whole ping run over all targets"),
    )

    def __init__(self, config: PingConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._targets = [_Target(t, _literal(t)) for t in config.targets]
        for t in self._targets:
            if t.literal is None:
                t.name = t.label
        self._engine: IcmpEngine | None = None
        #: labels currently down: a probe.failure Event is emitted when a target becomes unreachable
        self._down: set[str] = set()

    async def _resolve(self, name: str) -> EchoTarget | str:
        fam = {"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[self.config.family]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.config.dns_timeout):
                infos = await loop.getaddrinfo(name, None, family=fam, type=socket.SOCK_DGRAM)
        except TimeoutError:
            return f"cannot resolve {name}: no answer within {self.config.dns_timeout:g}s"
        except (socket.gaierror, UnicodeError, OSError) as e:
            return f"cannot resolve {name}: {getattr(e, 'strerror', None) or e}"
        for family, _t, _p, _c, sa in infos:
            if family == socket.AF_INET:
                return EchoTarget(family, sa[0], (sa[0], 0))
            if family == socket.AF_INET6:
                a = sa[0].partition("%")[0]
                return EchoTarget(family, a, (a, 0, 0, sa[3]))
        return f"cannot resolve {name}: no IPv4 or IPv6 address"

    async def run(self) -> list[Reading]:
        cfg = self.config
        ts = time.time()
        t0 = time.perf_counter()
        targets = list(self._targets)
        if cfg.default_gateway:
            seen = {t.label for t in targets}
            for label, et in default_gateways():
                if label not in seen:
                    targets.append(_Target(label, et, gateway=True))

        names = {t.name for t in targets if t.literal is None and t.name}
        resolved: dict[str, EchoTarget | str] = {}
        if names:
            sem = asyncio.Semaphore(32)

            async def one(n: str) -> None:
                async with sem:
                    resolved[n] = await self._resolve(n)

            async with asyncio.TaskGroup() as tg:
                for n in names:
                    tg.create_task(one(n))

        send: list[EchoTarget] = []
        index: list[int] = []
        for i, t in enumerate(targets):
            et = t.literal if t.literal is not None else resolved.get(t.name or "")
            if isinstance(et, EchoTarget):
                send.append(et)
                index.append(i)

        if self._engine is None:
            self._engine = IcmpEngine(cfg.socket, cfg.size)
        results: list[EchoResult | str] = [resolved.get(t.name or "", "") if t.literal is None else "" for t in targets]
        if send:
            echo = await self._engine.ping(send, count=cfg.count, interval=cfg.echo_interval, timeout=cfg.echo_timeout, rate=cfg.rate)
            for j, i in enumerate(index):
                results[i] = echo[j]

        out: list[Reading] = []
        for i, (t, res) in enumerate(zip(targets, results)):
            tags = {"target": t.label}
            if t.gateway:
                tags["role"] = "gateway"
            if isinstance(res, str):  # resolution failed
                result, reason, address, data = DNS_ERROR, res, None, {}
            else:
                et = resolved.get(t.name) if t.name else None
                address = et.address if isinstance(et, EchoTarget) else None
                if address:
                    tags["address"] = address
                st = _stats(res)
                for key, metric in (("loss", "ping.loss_ratio"), ("min", "ping.rtt_min_seconds"), ("avg", "ping.rtt_avg_seconds"),
                                    ("max", "ping.rtt_max_seconds"), ("mdev", "ping.rtt_mdev_seconds"), ("jitter", "ping.jitter_seconds")):
                    if key in st:
                        out.append(Sample(metric, st[key], ts, dict(tags)))
                data = {"sent": res.sent, "received": res.received}
                if res.received:
                    result, reason = SUCCESS, ""
                elif res.errors:
                    result, reason = CONNECTION_FAILED, res.error
                else:
                    result = TIMEOUT
                    reason = f"no reply to {res.sent} echo request{'s' if res.sent != 1 else ''} within {cfg.echo_timeout:g}s each"
                    if res.late:
                        reason += f" ({res.late} late)"
            out.append(Sample("ping.up", 1.0 if result == SUCCESS else 0.0, ts, {**tags, "result": result}))
            if result == SUCCESS:
                self._down.discard(t.label)
            elif t.label not in self._down:
                self._down.add(t.label)
                out.append(
                    Event(
                        PROBE_FAILURE,
                        ts,
                        f"ping of {t.label} failed: {result}: {reason}",
                        {"target": t.label, "probe": "ping", "check": self.name, "result": result},
                        {"result": result, "reason": reason, **({"address": address} if address else {}), **data},
                    )
                )
        current = {t.label for t in targets}
        self._down &= current
        out.append(Sample("ping.duration_seconds", time.perf_counter() - t0, ts, {}))
        return out

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
