"""Zabbix naming: infrawatch metric + tags → Zabbix host and item key, LLD rules and the template's item list."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

KEY_PREFIX = "infrawatch."
HEARTBEAT_KEY = "infrawatch.heartbeat"
TEMPLATE_HOST = "infrawatch"  # technical name of the shipped template
TEMPLATE_GROUP = "Templates/infrawatch"


@dataclass(frozen=True, slots=True)
class Discovery:
    """One low-level-discovery rule: which tags become which LLD macros."""

    name: str  # "filesystems"
    tags: tuple[str, ...]  # sample tags (or the pseudo-tags "probe", "subject") in key-parameter order
    macros: tuple[str, ...]  # LLD macros, same order
    title: str  # human name of the rule
    #: how many of the macros are key parameters; the rest only decorate names (e.g. {#SEVERITY})
    key_params: int = 0

    @property
    def rule_key(self) -> str:
        return f"{KEY_PREFIX}discovery.{self.name}"

    @property
    def key_macros(self) -> tuple[str, ...]:
        return self.macros[: self.key_params or len(self.macros)]


DISCOVERIES: dict[str, Discovery] = {
    d.name: d
    for d in (
        Discovery("filesystems", ("mountpoint",), ("{#MOUNTPOINT}",), "Filesystems"),
        Discovery("devices", ("device",), ("{#DEVICE}",), "Block devices"),
        Discovery("interfaces", ("interface",), ("{#INTERFACE}",), "Network interfaces"),
        Discovery("cpus", ("cpu",), ("{#CPU}",), "CPU cores"),
        Discovery("ping", ("target",), ("{#TARGET}",), "Ping targets"),
        Discovery("probes", ("probe", "target"), ("{#PROBE}", "{#TARGET}"), "Service probes"),
        Discovery("tls", ("probe", "target"), ("{#PROBE}", "{#TARGET}"), "TLS certificates"),
        Discovery("modules", ("module",), ("{#MODULE}",), "Application modules"),
        Discovery("endpoints", ("module", "endpoint"), ("{#MODULE}", "{#ENDPOINT}"), "Application endpoints"),
        Discovery("alerts", ("alertname", "subject", "severity"), ("{#ALERTNAME}", "{#SUBJECT}", "{#SEVERITY}"),
                  "infrawatch alerts", key_params=2),
    )
}

# Tags naming a per-device dimension (checked in this order; the first that matches wins).
DIMENSION_TAGS = ("mountpoint", "device", "interface", "cpu", "target", "module")
# Tags whose value is appended to the key *name* ("quantile=p95" → "...duration_seconds.p95").
SUFFIX_TAGS = ("quantile", "stat")
# Default extra tags that become plain key parameters (no LLD) after the dimension parameters.
DEFAULT_KEY_TAGS = ("check", "state", "status_class", "reason", "source")
CPU_TOTAL = "total"
# alerts.firing: the tag naming what an alert is about (first present wins) becomes {#SUBJECT}
ALERT_SUBJECT_TAGS = ("mountpoint", "target", "module", "service", "probe", "device", "interface")
ALERT_SEVERITIES = ("critical", "warning", "info")


# ---------------------------------------------------------------- key syntax


def quote_param(value: str) -> str | None:
    """Quote one key parameter exactly as Zabbix does when it substitutes an LLD macro.

    Mirrors zbx_quote_key_param(param, forced=0): unquoted unless it starts with '"' or ' ' or
    contains ',' or ']'; quoted form escapes '"' with a backslash. Returns None for values
    Zabbix cannot represent (quoting needed but the value ends with a backslash) or that it
    would parse differently (a leading '['), so callers can report them instead of guessing.
    """
    if value.startswith("["):
        return None
    if not (value.startswith('"') or value.startswith(" ") or "," in value or "]" in value):
        return value
    if value.endswith("\\"):
        return None
    return '"' + value.replace('"', '\\"') + '"'


def item_key(metric: str, params: Iterable[str] = ()) -> str | None:
    """`infrawatch.<metric>[p1,p2]`; None if a parameter cannot be expressed as a Zabbix key."""
    params = list(params)
    if not params:
        return KEY_PREFIX + metric
    quoted = []
    for p in params:
        q = quote_param(p)
        if q is None:
            return None
        quoted.append(q)
    return f"{KEY_PREFIX}{metric}[{','.join(quoted)}]"


def prototype_key(metric: str, discovery: Discovery) -> str:
    return f"{KEY_PREFIX}{metric}[{','.join(discovery.key_macros)}]"


_HOST_BAD = re.compile(r"[^0-9A-Za-z_. -]")


def zabbix_host_name(name: str, prefix: str = "", host_map: Mapping[str, str] | None = None) -> str:
    """Map an infrawatch host (the `host` tag or the agent name) to a Zabbix technical host name."""
    if host_map and name in host_map:
        return host_map[name]
    out = _HOST_BAD.sub("_", prefix + name).strip() or "_"
    return out[:128]


def format_value(v: float) -> str:
    """Integral values without '.0' (so they also fit unsigned items); others with full precision."""
    if type(v) is not float:
        v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if math.isfinite(v):
        return repr(v)
    return "0"


def split_ts(ts: float) -> tuple[int, int]:
    """Unix seconds (float) → integer (clock, ns) as Zabbix stores them."""
    total_ns = round(ts * 1_000_000_000)
    clock, ns = divmod(total_ns, 1_000_000_000)
    return int(clock), int(ns)


# ---------------------------------------------------------------- metric → key


@dataclass(frozen=True, slots=True)
class Mapped:
    """Where one sample goes in Zabbix (host excluded)."""

    key: str
    metric: str  # key name without prefix (suffix tags applied; "probe.up" for http.up)
    discovery: str | None  # LLD rule name, or None for a host-level item
    entry: tuple[str, ...] | None  # LLD macro values for `discovery`
    covered: bool  # the shipped template defines this key (item or item prototype)


class KeyMapper:
    """Maps (metric, tags) to a Zabbix key; caches results (metric and tag sets repeat endlessly)."""

    def __init__(self, key_tags: Iterable[str] = DEFAULT_KEY_TAGS) -> None:
        self.key_tags = tuple(key_tags)
        self._cache: dict[tuple, Mapped | None] = {}

    def map(self, name: str, tags: Mapping[str, str]) -> Mapped | None:
        """None when the tags cannot be expressed as a Zabbix key (see quote_param)."""
        sig = (name, *tags.items())  # tag sets repeat endlessly, usually in the same order
        try:
            return self._cache[sig]
        except KeyError:
            pass
        m = _map_alert(name, tags) if name.startswith("alerts.") else self._map(name, tags)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[sig] = m
        return m

    def _map(self, name: str, tags: Mapping[str, str]) -> Mapped | None:
        metric = name
        for t in SUFFIX_TAGS:
            v = tags.get(t)
            if v:
                metric = f"{metric}.{_suffix(v)}"
        disc: str | None = None
        dims: list[str] = []
        for t in DIMENSION_TAGS:
            v = tags.get(t)
            if v is None:
                continue
            if t == "cpu":
                if v == CPU_TOTAL:
                    dims = [v]
                    break
                disc = "cpus"
            elif t == "target":
                probe, _, rest = metric.partition(".")
                if probe == "ping":
                    disc = "ping"
                else:
                    metric = f"probe.{rest}" if rest else "probe.value"
                    disc = "tls" if rest == "tls_cert_expiry_days" else "probes"
                    dims = [probe]
            elif t == "module":
                ep = tags.get("endpoint")
                if ep is not None:
                    disc = "endpoints"
                    dims = [v, ep]
                    break
                disc = "modules"
            else:
                disc = {"mountpoint": "filesystems", "device": "devices", "interface": "interfaces"}[t]
            dims.append(v)
            break
        extra = [tags[t] for t in self.key_tags if t in tags]
        key = item_key(metric, dims + extra)
        if key is None:
            return None
        if extra:  # extra parameters: not an LLD entry of the template's rules
            covered = False
            entry_disc = disc
        else:
            entry_disc = disc
            covered = metric in TEMPLATE_METRICS.get(disc, ()) or (disc is None and key in STATIC_KEYS)
        entry = tuple(dims) if entry_disc else None
        return Mapped(key, metric, entry_disc, entry, covered)


def _map_alert(name: str, tags: Mapping[str, str]) -> Mapped | None:
    """alerts.firing → LLD "alerts" (alert name, subject; severity decorates); alerts.active → [severity]."""
    if name == "alerts.active":
        key = item_key(name, [tags.get("severity", "")])
        return None if key is None else Mapped(key, name, None, None, key in STATIC_KEYS)
    if name != "alerts.firing":
        key = item_key(name)
        return None if key is None else Mapped(key, name, None, None, False)
    alert = tags.get("alertname", "")
    subject = next((tags[t] for t in ALERT_SUBJECT_TAGS if tags.get(t)), "")
    key = item_key(name, [alert, subject])
    if key is None:
        return None
    return Mapped(key, name, "alerts", (alert, subject, tags.get("severity", "")), True)


def _suffix(v: str) -> str:
    """"0.95" / "95" / "p95" → "p95"; other values lower-cased with unsafe characters replaced."""
    s = v.strip().lower()
    try:
        f = float(s)
    except ValueError:
        return re.sub(r"[^0-9a-z_]", "_", s) or "_"
    if 0 < f < 1:
        f *= 100
    return f"p{f:g}".replace(".", "_")


def lld_payload(discovery: Discovery, entries: Iterable[tuple[str, ...]]) -> list[dict[str, str]]:
    """The JSON array sent to an LLD rule: every current entry as {macro: value}.

    Entries that differ only in decorating macros (beyond the key parameters) would give two
    items one key; the last in sort order wins.
    """
    n = discovery.key_params or len(discovery.macros)
    by_key: dict[tuple[str, ...], tuple[str, ...]] = {}
    for e in sorted(entries):
        by_key[e[:n]] = e
    return [dict(zip(discovery.macros, e)) for e in by_key.values()]


# ---------------------------------------------------------------- the template's items

# (metric, item name, units) per LLD rule (None: host-level items). The template in
# config/zabbix/infrawatch_template.yaml is generated from this list (collector/sinks/zabbix_template.py)
# and the sink uses it to know which keys the template will create for a host.
TEMPLATE_ITEMS: dict[str | None, tuple[tuple[str, str, str], ...]] = {
    None: (
        ("heartbeat", "infrawatch heartbeat", ""),
        ("system.cpu.usage_percent[total]", "CPU usage", "%"),
        ("system.cpu.user_percent[total]", "CPU user time", "%"),
        ("system.cpu.system_percent[total]", "CPU system time", "%"),
        ("system.cpu.iowait_percent[total]", "CPU iowait time", "%"),
        ("system.cpu.steal_percent[total]", "CPU steal time", "%"),
        ("system.cpu.idle_percent[total]", "CPU idle time", "%"),
        ("system.cpu.count", "Number of CPUs", ""),
        ("system.cpu.context_switches_per_second", "Context switches per second", "sps"),
        ("system.cpu.interrupts_per_second", "Interrupts per second", "ips"),
        ("system.load.1m", "Load average (1m)", ""),
        ("system.load.5m", "Load average (5m)", ""),
        ("system.load.15m", "Load average (15m)", ""),
        ("system.memory.total_bytes", "Memory total", "B"),
        ("system.memory.available_bytes", "Memory available", "B"),
        ("system.memory.used_bytes", "Memory used", "B"),
        ("system.memory.used_percent", "Memory utilization", "%"),
        ("system.memory.swap_total_bytes", "Swap total", "B"),
        ("system.memory.swap_used_bytes", "Swap used", "B"),
        ("system.processes.count", "Processes", ""),
        ("system.uptime_seconds", "Uptime", "uptime"),
        ("agent.buffer.depth_readings", "Agent buffer depth", ""),
        ("agent.buffer.dropped_total", "Agent readings dropped", ""),
        ("agent.process.rss_bytes", "Agent memory (RSS)", "B"),
        ("alerts.active[critical]", "infrawatch alerts firing: critical", ""),
        ("alerts.active[warning]", "infrawatch alerts firing: warning", ""),
        ("alerts.active[info]", "infrawatch alerts firing: info", ""),
    ),
    "filesystems": (
        ("system.filesystem.total_bytes", "FS [{#MOUNTPOINT}]: total", "B"),
        ("system.filesystem.used_bytes", "FS [{#MOUNTPOINT}]: used", "B"),
        ("system.filesystem.free_bytes", "FS [{#MOUNTPOINT}]: free", "B"),
        ("system.filesystem.used_percent", "FS [{#MOUNTPOINT}]: space utilization", "%"),
        ("system.filesystem.inodes_used_percent", "FS [{#MOUNTPOINT}]: inodes utilization", "%"),
    ),
    "devices": (
        ("system.disk.read_bytes_per_second", "Disk [{#DEVICE}]: read rate", "Bps"),
        ("system.disk.write_bytes_per_second", "Disk [{#DEVICE}]: write rate", "Bps"),
        ("system.disk.read_ops_per_second", "Disk [{#DEVICE}]: read ops", "!r/s"),
        ("system.disk.write_ops_per_second", "Disk [{#DEVICE}]: write ops", "!w/s"),
        ("system.disk.average_wait_ms", "Disk [{#DEVICE}]: average wait", "ms"),
        ("system.disk.utilization_percent", "Disk [{#DEVICE}]: utilization", "%"),
    ),
    "interfaces": (
        ("system.network.rx_bytes_per_second", "Interface [{#INTERFACE}]: bytes received", "Bps"),
        ("system.network.tx_bytes_per_second", "Interface [{#INTERFACE}]: bytes sent", "Bps"),
        ("system.network.rx_packets_per_second", "Interface [{#INTERFACE}]: packets received", "pps"),
        ("system.network.tx_packets_per_second", "Interface [{#INTERFACE}]: packets sent", "pps"),
        ("system.network.rx_errors_per_second", "Interface [{#INTERFACE}]: inbound errors", "eps"),
        ("system.network.tx_errors_per_second", "Interface [{#INTERFACE}]: outbound errors", "eps"),
        ("system.network.rx_drops_per_second", "Interface [{#INTERFACE}]: inbound drops", "dps"),
        ("system.network.tx_drops_per_second", "Interface [{#INTERFACE}]: outbound drops", "dps"),
    ),
    "cpus": (
        ("system.cpu.usage_percent", "CPU {#CPU}: usage", "%"),
    ),
    "ping": (
        ("ping.up", "Ping [{#TARGET}]: up", ""),
        ("ping.loss_ratio", "Ping [{#TARGET}]: loss", ""),
        ("ping.rtt_min_seconds", "Ping [{#TARGET}]: rtt min", "s"),
        ("ping.rtt_avg_seconds", "Ping [{#TARGET}]: rtt avg", "s"),
        ("ping.rtt_max_seconds", "Ping [{#TARGET}]: rtt max", "s"),
    ),
    "probes": (
        ("probe.up", "Probe {#PROBE} [{#TARGET}]: up", ""),
        ("probe.duration_seconds", "Probe {#PROBE} [{#TARGET}]: duration", "s"),
    ),
    "tls": (
        ("probe.tls_cert_expiry_days", "Probe {#PROBE} [{#TARGET}]: TLS certificate days left", "d"),
    ),
    "modules": (
        ("app.exceptions.count", "Module {#MODULE}: exceptions", ""),
    ),
    "endpoints": (
        ("app.request.count", "Endpoint {#MODULE} {#ENDPOINT}: requests", ""),
        ("app.request.errors", "Endpoint {#MODULE} {#ENDPOINT}: failed requests", ""),
        ("app.request.duration_avg_seconds", "Endpoint {#MODULE} {#ENDPOINT}: mean duration", "s"),
        ("app.request.duration_p95_seconds", "Endpoint {#MODULE} {#ENDPOINT}: p95 duration", "s"),
        ("app.request.duration_p99_seconds", "Endpoint {#MODULE} {#ENDPOINT}: p99 duration", "s"),
        ("app.request.duration_max_seconds", "Endpoint {#MODULE} {#ENDPOINT}: max duration", "s"),
    ),
    "alerts": (
        ("alerts.firing", "Alert {#ALERTNAME} [{#SUBJECT}] ({#SEVERITY}): firing", ""),
    ),
}


def _static_key(spec: str) -> str:
    return KEY_PREFIX + spec


STATIC_KEYS: frozenset[str] = frozenset(_static_key(m) for m, _, _ in TEMPLATE_ITEMS[None])
TEMPLATE_METRICS: dict[str | None, frozenset[str]] = {
    d: frozenset(m for m, _, _ in items) for d, items in TEMPLATE_ITEMS.items() if d is not None
}
