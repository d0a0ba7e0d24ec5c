"""Builds the shipped Zabbix template (6.0 export YAML) from the key mapping; `python -m` rewrites the file."""

from __future__ import annotations

import hashlib
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from collector.sinks.zabbix_keys import (
    DISCOVERIES,
    KEY_PREFIX,
    TEMPLATE_GROUP,
    TEMPLATE_HOST,
    TEMPLATE_ITEMS,
    prototype_key,
)

TEMPLATE_FILE = Path(__file__).resolve().parents[2] / "config" / "zabbix" / "infrawatch_template.yaml"
T = TEMPLATE_HOST

# Threshold macros (context macros give payment/order their own, tighter values).
MACROS: tuple[tuple[str, str, str], ...] = (
    ("{$INFRAWATCH.NODATA.TIMEOUT}", "5m", "No heartbeat for this long: host down."),
    ("{$INFRAWATCH.CPU.UTIL.CRIT}", "90", "CPU usage (%) over 5 minutes that raises a problem."),
    ("{$INFRAWATCH.MEMORY.UTIL.MAX}", "90", "Memory utilization (%) over 5 minutes that raises a problem."),
    ("{$INFRAWATCH.FS.PUSED.MAX.CRIT}", "90", "Filesystem space utilization (%) that raises a problem."),
    ("{$INFRAWATCH.FS.INODES.MAX.CRIT}", "90", "Filesystem inode utilization (%) that raises a problem."),
    ("{$INFRAWATCH.PING.LOSS.MAX}", "0.2", "Ping loss ratio (0..1) over 5 minutes that raises a problem."),
    ("{$INFRAWATCH.TLS.EXPIRY.DAYS}", "14", "Days before certificate expiry that raise a problem."),
    ("{$INFRAWATCH.EXC.WINDOW}", "5m", "Window of the exception burst triggers."),
    ("{$INFRAWATCH.EXC.MAX}", "100", "Exceptions per window in a module that raise a problem."),
    ('{$INFRAWATCH.EXC.MAX:"payment"}', "10", "Exceptions per window in the payment module that raise a problem."),
    ('{$INFRAWATCH.EXC.MAX:"order"}', "10", "Exceptions per window in the order module that raise a problem."),
    ("{$INFRAWATCH.P95.WINDOW}", "5m", "Window of the latency triggers."),
    ("{$INFRAWATCH.P95.MAX}", "2", "Request p95 latency (s) of a module that raises a problem."),
    ('{$INFRAWATCH.P95.MAX:"payment"}', "1", "Request p95 latency (s) of the payment module that raises a problem."),
    ('{$INFRAWATCH.P95.MAX:"order"}', "1", "Request p95 latency (s) of the order module that raises a problem."),
)

# infrawatch alert severity → Zabbix trigger priority ("warning" also takes unknown severities)
ALERT_PRIORITY = {"critical": "HIGH", "warning": "WARNING", "info": "INFO"}

# Triggers: (item metric spec, discovery or None, expression with {K} for the item reference, name, priority, description)
TRIGGERS: tuple[tuple[str, str | None, str, str, str, str], ...] = (
    ("heartbeat", None, "nodata({K},{$INFRAWATCH.NODATA.TIMEOUT})=1",
     "主机停止上报 / Host stopped reporting: {HOST.NAME}", "HIGH",
     "No value arrived from this host's agent for {$INFRAWATCH.NODATA.TIMEOUT}."),
    ("system.cpu.usage_percent[total]", None, "min({K},5m)>{$INFRAWATCH.CPU.UTIL.CRIT}",
     "CPU 使用率过高 / High CPU utilization (over {$INFRAWATCH.CPU.UTIL.CRIT}% for 5m)", "WARNING", ""),
    ("system.memory.used_percent", None, "min({K},5m)>{$INFRAWATCH.MEMORY.UTIL.MAX}",
     "内存使用率过高 / High memory utilization (over {$INFRAWATCH.MEMORY.UTIL.MAX}% for 5m)", "AVERAGE", ""),
    ("system.filesystem.used_percent", "filesystems", "last({K})>{$INFRAWATCH.FS.PUSED.MAX.CRIT}",
     "磁盘空间不足 / FS [{#MOUNTPOINT}]: space utilization over {$INFRAWATCH.FS.PUSED.MAX.CRIT}%", "AVERAGE", ""),
    ("system.filesystem.inodes_used_percent", "filesystems", "last({K})>{$INFRAWATCH.FS.INODES.MAX.CRIT}",
     "inode 不足 / FS [{#MOUNTPOINT}]: inode utilization over {$INFRAWATCH.FS.INODES.MAX.CRIT}%", "AVERAGE", ""),
    ("ping.loss_ratio", "ping", "min({K},5m)>{$INFRAWATCH.PING.LOSS.MAX}",
     "丢包 / Ping [{#TARGET}]: packet loss over {$INFRAWATCH.PING.LOSS.MAX} for 5m", "WARNING", ""),
    ("ping.up", "ping", "max({K},3m)=0",
     "目标不可达 / Ping [{#TARGET}]: unreachable for 3m", "HIGH", ""),
    ("probe.up", "probes", "max({K},#3)=0",
     "服务探测失败 / Probe {#PROBE} [{#TARGET}]: down", "HIGH",
     "The last 3 probe runs failed; the probe.failure events in infrawatch say why."),
    ("probe.tls_cert_expiry_days", "tls", "last({K})<{$INFRAWATCH.TLS.EXPIRY.DAYS}",
     "证书即将过期 / Probe {#PROBE} [{#TARGET}]: TLS certificate expires in less than {$INFRAWATCH.TLS.EXPIRY.DAYS} days", "WARNING", ""),
    ("app.exceptions.count", "modules", 'sum({K},{$INFRAWATCH.EXC.WINDOW})>{$INFRAWATCH.EXC.MAX:"{#MODULE}"}',
     "异常激增 / Module {#MODULE}: exception burst (more than {$INFRAWATCH.EXC.MAX:\"{#MODULE}\"} in {$INFRAWATCH.EXC.WINDOW})",
     "HIGH", "Payment and order have tighter thresholds through context macros."),
    ("app.request.duration_p95_seconds", "endpoints", 'min({K},{$INFRAWATCH.P95.WINDOW})>{$INFRAWATCH.P95.MAX:"{#MODULE}"}',
     "接口变慢 / Endpoint {#MODULE} {#ENDPOINT}: request p95 over {$INFRAWATCH.P95.MAX:\"{#MODULE}\"}s for {$INFRAWATCH.P95.WINDOW}",
     "AVERAGE", "Payment and order have tighter thresholds through context macros."),
    *(("alerts.firing", "alerts", "last({K})=1", f"infrawatch 告警 / alert {{#ALERTNAME}} [{{#SUBJECT}}] firing ({sev})", prio,
        "An infrawatch alerting rule fires on this host (infrawatch notifies its own receivers as well). "
        "The rule's overrides keep only the prototype of the alert's severity.")
      for sev, prio in ALERT_PRIORITY.items()),
)

COLORS = ("1A7C11", "F63100", "2774A4", "A54F10", "FC6EA3", "6C59DC", "AC8C14", "611F27")

# Graphs: (name, discovery or None, [item metric specs])
GRAPHS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("CPU utilization", None, ("system.cpu.user_percent[total]", "system.cpu.system_percent[total]",
                              "system.cpu.iowait_percent[total]", "system.cpu.steal_percent[total]")),
    ("CPU usage", None, ("system.cpu.usage_percent[total]",)),
    ("Load average", None, ("system.load.1m", "system.load.5m", "system.load.15m")),
    ("Memory", None, ("system.memory.total_bytes", "system.memory.available_bytes")),
    ("FS [{#MOUNTPOINT}]: space utilization", "filesystems", ("system.filesystem.used_percent",)),
    ("Disk [{#DEVICE}]: throughput", "devices", ("system.disk.read_bytes_per_second", "system.disk.write_bytes_per_second")),
    ("Interface [{#INTERFACE}]: traffic", "interfaces", ("system.network.rx_bytes_per_second", "system.network.tx_bytes_per_second")),
    ("Ping [{#TARGET}]: round-trip time", "ping", ("ping.rtt_min_seconds", "ping.rtt_avg_seconds", "ping.rtt_max_seconds")),
    ("Ping [{#TARGET}]: loss", "ping", ("ping.loss_ratio",)),
    ("Probe {#PROBE} [{#TARGET}]: duration", "probes", ("probe.duration_seconds",)),
    ("Module {#MODULE}: exceptions", "modules", ("app.exceptions.count",)),
    ("Endpoint {#MODULE} {#ENDPOINT}: request latency", "endpoints",
     ("app.request.duration_avg_seconds", "app.request.duration_p95_seconds", "app.request.duration_p99_seconds")),
)

COMPONENT = {
    None: "system", "filesystems": "storage", "devices": "storage", "interfaces": "network", "cpus": "cpu",
    "ping": "reachability", "probes": "service", "tls": "tls", "modules": "application", "endpoints": "application",
    "alerts": "alerting",
}


def _uuid(*parts: str) -> str:
    """Stable UUIDv4-shaped id (Zabbix 6.0 requires v4 format) derived from the element's identity."""
    digest = hashlib.md5("\x00".join(("infrawatch", *parts)).encode()).digest()
    return uuid.UUID(bytes=digest, version=4).hex


def _key(spec: str, disc: str | None) -> str:
    if disc is None:
        return KEY_PREFIX + spec
    return prototype_key(spec, DISCOVERIES[disc])


def _component(spec: str, disc: str | None) -> str:
    if disc is None:
        head = spec.split(".")[1] if spec.startswith("system.") else spec.split(".")[0]
        return {"cpu": "cpu", "load": "cpu", "memory": "memory", "processes": "os", "uptime_seconds": "os"}.get(head, head)
    return COMPONENT[disc]


def _item(spec: str, name: str, units: str, disc: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "uuid": _uuid("item", disc or "", spec),
        "name": name,
        "type": "TRAP",
        "key": _key(spec, disc),
        "delay": "0",
        "history": "31d",
        "value_type": "FLOAT",
    }
    if units:
        d["units"] = units
    d["description"] = f"infrawatch metric {spec.split('[')[0]} (pushed by the collector's zabbix sink)."
    d["tags"] = [{"tag": "component", "value": _component(spec, disc)}]
    trig = [t for t in TRIGGERS if t[0] == spec and t[1] == disc]
    if trig:
        d["trigger_prototypes" if disc else "triggers"] = [_trigger(t) for t in trig]
    return d


def _trigger(t: tuple[str, str | None, str, str, str, str]) -> dict[str, Any]:
    spec, disc, expr, name, priority, desc = t
    d: dict[str, Any] = {
        "uuid": _uuid("trigger", disc or "", spec, expr, name),
        "expression": expr.replace("{K}", f"/{T}/{_key(spec, disc)}"),
        "name": name,
        "priority": priority,
    }
    if desc:
        d["description"] = desc
    d["tags"] = [{"tag": "scope", "value": "availability" if "up" in spec or "heartbeat" in spec else "performance"}]
    return d


def _alert_overrides() -> list[dict[str, Any]]:
    """Discover only the trigger prototype whose priority matches the entry's {#SEVERITY}."""
    hide_unless = {"critical": "^critical$", "info": "^info$"}
    out = []
    for step, sev in enumerate(ALERT_PRIORITY, start=1):
        if sev in hide_unless:
            cond = {"macro": "{#SEVERITY}", "value": hide_unless[sev], "operator": "NOT_MATCHES_REGEX", "formulaid": "A"}
        else:  # warning: everything that is neither critical nor info
            cond = {"macro": "{#SEVERITY}", "value": "^(critical|info)$", "formulaid": "A"}
        out.append({
            "name": f"severity {sev}",
            "step": str(step),
            "filter": {"conditions": [cond]},
            "operations": [{"operationobject": "TRIGGER_PROTOTYPE", "operator": "LIKE", "value": f"({sev})",
                            "discover": "NO_DISCOVER"}],
        })
    return out


def _graph(name: str, disc: str | None, specs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "uuid": _uuid("graph", disc or "", name),
        "name": name,
        "graph_items": [
            {"sortorder": str(i), "color": COLORS[i % len(COLORS)], "item": {"host": T, "key": _key(s, disc)}}
            for i, s in enumerate(specs)
        ],
    }


def _dashboard() -> dict[str, Any]:
    widgets: list[dict[str, Any]] = []
    x = y = 0
    for name, disc, _ in GRAPHS:
        proto = disc is not None
        fields: list[dict[str, Any]] = [
            {"type": "GRAPH_PROTOTYPE" if proto else "GRAPH", "name": "graphid", "value": {"name": name, "host": T}},
        ]
        if proto:
            fields.append({"type": "INTEGER", "name": "columns", "value": "1"})
        widgets.append({"type": "GRAPH_PROTOTYPE" if proto else "GRAPH_CLASSIC", "name": re.sub(r"\s*\[?\{#[A-Z]+\}\]?", "", name),
                        "x": str(x), "y": str(y), "width": "12", "height": "5", "fields": fields})
        x = 12 - x
        if x == 0:
            y += 5
    return {"uuid": _uuid("dashboard", "host"), "name": "infrawatch host", "pages": [{"widgets": widgets}]}


def build_template() -> dict[str, Any]:
    """The whole zabbix_export document."""
    items = [_item(s, n, u, None) for s, n, u in TEMPLATE_ITEMS[None]]
    rules = []
    for disc_name, disc in DISCOVERIES.items():
        protos = [_item(s, n, u, disc_name) for s, n, u in TEMPLATE_ITEMS.get(disc_name, ())]
        rule: dict[str, Any] = {
            "uuid": _uuid("rule", disc_name),
            "name": f"{disc.title} discovery",
            "type": "TRAP",
            "key": disc.rule_key,
            "delay": "0",
            "lifetime": "7d",
            "description": "Pushed by the infrawatch collector: a JSON array of every current entry ("
            + ", ".join(disc.macros) + "). Entries left out of a payload are removed after the lifetime.",
            "item_prototypes": protos,
        }
        if disc_name == "alerts":
            rule["overrides"] = _alert_overrides()
        graphs = [_graph(n, d, s) for n, d, s in GRAPHS if d == disc_name]
        if graphs:
            rule["graph_prototypes"] = graphs
        rules.append(rule)
    template = {
        "uuid": _uuid("template", T),
        "template": T,
        "name": "infrawatch by Zabbix trapper",
        "description": "Items, discovery rules, triggers, graphs and a dashboard for values pushed by the infrawatch "
        "collector's zabbix sink (trapper protocol). Key mapping: docs/zabbix.md. "
        "Generated by collector/sinks/zabbix_template.py; do not edit by hand.",
        "groups": [{"name": TEMPLATE_GROUP}],
        "items": items,
        "discovery_rules": rules,
        "tags": [{"tag": "class", "value": "os"}, {"tag": "target", "value": "infrawatch"}],
        "macros": [{"macro": m, "value": v, "description": d} for m, v, d in MACROS],
        "dashboards": [_dashboard()],
    }
    return {
        "zabbix_export": {
            "version": "6.0",
            "date": "2024-01-01T00:00:00Z",
            "groups": [{"uuid": _uuid("group", TEMPLATE_GROUP), "name": TEMPLATE_GROUP}],
            "templates": [template],
            "graphs": [_graph(n, d, s) for n, d, s in GRAPHS if d is None],
        }
    }


def render() -> str:
    header = "# infrawatch Zabbix template (Zabbix 6.0 export format; also imports into 7.0).\n" \
             "# Generated by `python -m collector.sinks.zabbix_template`; edit the generator, not this file.\n"
    return header + yaml.safe_dump(build_template(), sort_keys=False, allow_unicode=True, width=200)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")
