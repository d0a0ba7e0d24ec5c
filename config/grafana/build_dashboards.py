"""Generates the Grafana dashboards in config/grafana/dashboards/ (run: python3 config/grafana/build_dashboards.py).

The JSON files are shipped and importable as they are; this generator keeps their ~70 panels
consistent (datasource variable, ids, layout, units). Edit here, regenerate, commit both.
tests/grafana/test_dashboards.py fails when the JSON and this generator disagree.

Query conventions (the dashboard test relies on them):
- every metric is selected with braces, `name{...}` or `{__name__=~"..."}`, never a bare name;
- series names follow the InfluxDB sink's mapping: infrawatch metric `a.b.c` → `a_b_c`;
- the datasource is always `${datasource}` (a datasource variable of type prometheus).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
#: probe check types whose `<type>.up` / `<type>.duration_seconds` the Services dashboard shows
PROBES = "http|tcp|redis|elasticsearch|memcached|sql|nginx"
HOST_REPORTING = "system_uptime_seconds"  # emitted by the default `system` check of every agent


# ---------------------------------------------------------------------------------------- building blocks


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False, ref: str = "A") -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "expr": expr, "editorMode": "code"}
    if legend:
        t["legendFormat"] = legend
    if instant:
        t.update(instant=True, range=False)
    else:
        t.update(instant=False, range=True)
    if table:
        t["format"] = "table"
    return t


def targets(*specs: tuple[str, str], instant: bool = False, table: bool = False) -> list[dict[str, Any]]:
    return [target(e, lg, instant=instant, table=table, ref=chr(ord("A") + i)) for i, (e, lg) in enumerate(specs)]


def timeseries(title: str, tgts: list[dict[str, Any]], unit: str = "short", *, w: int = 12, h: int = 8, desc: str = "",
               min_: float | None = None, max_: float | None = None, stack: bool = False,
               thresholds: list[tuple[float | None, str]] | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "auto", "spanNulls": True,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if thresholds:
        defaults["thresholds"] = _thresholds(thresholds)
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries", "title": title, "description": desc, "datasource": DS, "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "_size": (w, h),
    }


def stat(title: str, expr: str, unit: str = "short", *, w: int = 4, h: int = 4, desc: str = "",
         thresholds: list[tuple[float | None, str]] | None = None, mappings: list[dict[str, Any]] | None = None,
         legend: str = "") -> dict[str, Any]:
    return {
        "type": "stat", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": _thresholds(thresholds or [(None, "green")]),
                                     "mappings": mappings or [], "color": {"mode": "thresholds"}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto", "orientation": "auto"},
        "_size": (w, h),
    }


def table(title: str, columns: list[tuple[str, str, str]], join_on: str, *, w: int = 24, h: int = 8, desc: str = "",
          overrides: list[dict[str, Any]] | None = None, sort_by: str | None = None) -> dict[str, Any]:
    """One instant query per column (name, expr, unit), merged into rows on the labels they share."""
    tgts = [target(expr, instant=True, table=True, ref=chr(ord("A") + i)) for i, (_, expr, _u) in enumerate(columns)]
    rename = {f"Value #{chr(ord('A') + i)}": name for i, (name, _, _u) in enumerate(columns)}
    unit_overrides = [
        {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]} for name, _, unit in columns
    ]
    return {
        "type": "table", "title": title, "description": desc, "datasource": DS, "targets": tgts,
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": rename, "indexByName": {}}},
        ],
        "fieldConfig": {"defaults": {"custom": {"align": "auto", "filterable": True}}, "overrides": unit_overrides + (overrides or [])},
        "options": {"showHeader": True, "sortBy": [{"displayName": sort_by or join_on, "desc": False}], "footer": {"show": False}},
        "_size": (w, h),
    }


def state_timeline(title: str, tgts: list[dict[str, Any]], *, w: int = 24, h: int = 8, desc: str = "") -> dict[str, Any]:
    return {
        "type": "state-timeline", "title": title, "description": desc, "datasource": DS, "targets": tgts,
        "fieldConfig": {"defaults": {"mappings": UP_MAPPINGS, "thresholds": _thresholds([(None, "red"), (1, "green")]),
                                     "color": {"mode": "thresholds"}}, "overrides": []},
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}},
        "_size": (w, h),
    }


def row(title: str, panels: list[dict[str, Any]], *, collapsed: bool = False) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": collapsed, "_children": panels}


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


UP_MAPPINGS = [
    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0}, "1": {"text": "UP", "color": "green", "index": 1}}}
]


def status_override(column: str) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [
            {"id": "mappings", "value": UP_MAPPINGS},
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            {"id": "thresholds", "value": _thresholds([(None, "red"), (1, "green")])},
        ],
    }


def percent_override(column: str, warn: float = 80, crit: float = 90) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            {"id": "thresholds", "value": _thresholds([(None, "green"), (warn, "orange"), (crit, "red")])},
        ],
    }


def layout(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assign ids and grid positions; rows get their panels either nested (collapsed) or following them."""
    out: list[dict[str, Any]] = []
    state = {"id": 0, "x": 0, "y": 0, "h": 0}

    def place(p: dict[str, Any]) -> dict[str, Any]:
        w, h = p.pop("_size")
        if state["x"] + w > 24:
            state["x"], state["y"], state["h"] = 0, state["y"] + state["h"], 0
        state["id"] += 1
        q = {"id": state["id"], "gridPos": {"h": h, "w": w, "x": state["x"], "y": state["y"]}, **p}
        state["x"] += w
        state["h"] = max(state["h"], h)
        return q

    def newline() -> None:
        if state["x"]:
            state["x"], state["y"], state["h"] = 0, state["y"] + state["h"], 0

    for item in items:
        if item["type"] == "row":
            newline()
            children = item.pop("_children")
            state["id"] += 1
            r = {"id": state["id"], "gridPos": {"h": 1, "w": 24, "x": 0, "y": state["y"]}, **item, "panels": []}
            state["y"] += 1
            out.append(r)
            placed = [place(dict(c)) for c in children]
            newline()
            if item["collapsed"]:
                r["panels"] = placed
            else:
                out.extend(placed)
        else:
            out.append(place(dict(item)))
    return out


def ds_variable() -> dict[str, Any]:
    return {
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "regex": "",
        "current": {"selected": True, "text": "VictoriaMetrics", "value": "infrawatch-victoriametrics"},
        "hide": 0, "refresh": 1, "includeAll": False, "multi": False, "options": [], "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, *, multi: bool = True, all_value: str | None = ".*") -> dict[str, Any]:
    v: dict[str, Any] = {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "definition": query, "refresh": 2, "sort": 1, "regex": "", "hide": 0,
        "multi": multi, "includeAll": multi, "current": {}, "options": [], "skipUrlSync": False,
    }
    if multi and all_value is not None:
        v["allValue"] = all_value
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def custom_variable(name: str, label: str, values: list[str], all_value: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "custom", "query": ",".join(values), "multi": True, "includeAll": True,
        "allValue": all_value, "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0,
        "options": [{"selected": False, "text": v, "value": v} for v in values], "skipUrlSync": False,
    }


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]], items: list[dict[str, Any]],
              *, time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["infrawatch"],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": "30s", "time": {"from": time_from, "to": "now"}, "fiscalYearStartMonth": 0,
        "liveNow": False, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [{"title": "infrawatch", "type": "dashboards", "tags": ["infrawatch"], "asDropdown": True,
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": {"list": [ds_variable(), *variables]},
        "panels": layout(items),
    }


def probe_sel(metric_suffix: str, extra: str = "") -> str:
    """A selector over every probe type's `<type>_<suffix>` series, with a `probe` label added."""
    return (f'label_replace({{__name__=~"(${{probe}})_{metric_suffix}",host=~"$host"{extra}}}, '
            f'"probe", "$1", "__name__", "(.+)_{metric_suffix}")')


HOST_VAR_MULTI = query_variable("host", "Host", f"label_values({HOST_REPORTING}, host)")
H = 'host=~"$host"'


# ---------------------------------------------------------------------------------------- dashboards


def overview() -> dict[str, Any]:
    last_seen = f"time() - max by (host) (tlast_over_time({HOST_REPORTING}{{{H}}}[24h]))"
    return dashboard(
        "infrawatch-overview", "infrawatch / Overview",
        "Every host at a glance: reporting status, CPU, memory, disk and network.",
        [HOST_VAR_MULTI],
        [
            row("Fleet", [
                stat("Hosts reporting", f"count(({last_seen}) < 120) or vector(0)", w=4,
                     desc="Hosts whose agent reported within the last 2 minutes."),
                stat("Hosts silent", f"count(({last_seen}) >= 120) or vector(0)", w=4,
                     thresholds=[(None, "green"), (1, "red")],
                     desc="Hosts seen in the last 24 hours that have not reported for 2 minutes or more."),
                stat("Busiest CPU", f'max(system_cpu_usage_percent{{{H},cpu="total"}})', "percent", w=4,
                     thresholds=[(None, "green"), (80, "orange"), (95, "red")]),
                stat("Fullest filesystem", f"max(system_filesystem_used_percent{{{H}}})", "percent", w=4,
                     thresholds=[(None, "green"), (85, "orange"), (95, "red")]),
                stat("Total network in", f"sum(system_network_rx_bytes_per_second{{{H}}})", "Bps", w=4),
                stat("Total network out", f"sum(system_network_tx_bytes_per_second{{{H}}})", "Bps", w=4),
                table("Hosts", [
                    ("Status", f"({last_seen}) < bool 120", "none"),
                    ("Last report", last_seen, "s"),
                    ("CPU", f'max by (host) (system_cpu_usage_percent{{{H},cpu="total"}})', "percent"),
                    ("Memory", f"max by (host) (system_memory_used_percent{{{H}}})", "percent"),
                    ("Fullest disk", f"max by (host) (system_filesystem_used_percent{{{H}}})", "percent"),
                    ("Load 1m", f"max by (host) (system_load_1m{{{H}}})", "short"),
                    ("Net in", f"sum by (host) (system_network_rx_bytes_per_second{{{H}}})", "Bps"),
                    ("Net out", f"sum by (host) (system_network_tx_bytes_per_second{{{H}}})", "Bps"),
                    ("Uptime", f"max by (host) (system_uptime_seconds{{{H}}})", "dtdurations"),
                ], "host", h=10, desc="One row per host. Status: UP when the agent reported within 2 minutes.",
                    overrides=[status_override("Status"), percent_override("CPU"), percent_override("Memory"),
                               percent_override("Fullest disk", 85, 95)]),
            ]),
            row("Resources", [
                timeseries("CPU usage", [target(f'system_cpu_usage_percent{{{H},cpu="total"}}', "{{host}}")], "percent",
                           min_=0, max_=100),
                timeseries("Memory used", [target(f"system_memory_used_percent{{{H}}}", "{{host}}")], "percent",
                           min_=0, max_=100),
                timeseries("Fullest filesystem per host", [target(f"max by (host) (system_filesystem_used_percent{{{H}}})", "{{host}}")],
                           "percent", min_=0, max_=100, thresholds=[(None, "green"), (90, "red")]),
                timeseries("Load (1 minute)", [target(f"system_load_1m{{{H}}}", "{{host}}")], "short", min_=0),
                timeseries("Network in", [target(f"sum by (host) (system_network_rx_bytes_per_second{{{H}}})", "{{host}}")], "Bps", min_=0),
                timeseries("Network out", [target(f"sum by (host) (system_network_tx_bytes_per_second{{{H}}})", "{{host}}")], "Bps", min_=0),
            ]),
        ],
    )


def host() -> dict[str, Any]:
    h = 'host="$host"'
    var = query_variable("host", "Host", f"label_values({HOST_REPORTING}, host)", multi=False)
    return dashboard(
        "infrawatch-host", "infrawatch / Host",
        "One host in detail: CPU, memory, filesystems, block devices, network interfaces, processes.",
        [var],
        [
            row("Summary", [
                stat("Uptime", f"system_uptime_seconds{{{h}}}", "dtdurations"),
                stat("CPU usage", f'system_cpu_usage_percent{{{h},cpu="total"}}', "percent",
                     thresholds=[(None, "green"), (80, "orange"), (95, "red")]),
                stat("Memory used", f"system_memory_used_percent{{{h}}}", "percent",
                     thresholds=[(None, "green"), (80, "orange"), (95, "red")]),
                stat("Load 1m", f"system_load_1m{{{h}}}", "short"),
                stat("CPUs", f"system_cpu_count{{{h}}}", "short"),
                stat("Fullest filesystem", f"max(system_filesystem_used_percent{{{h}}})", "percent",
                     thresholds=[(None, "green"), (85, "orange"), (95, "red")]),
            ]),
            row("CPU", [
                timeseries("CPU by mode (all cores)", targets(
                    (f'system_cpu_user_percent{{{h},cpu="total"}}', "user"),
                    (f'system_cpu_system_percent{{{h},cpu="total"}}', "system"),
                    (f'system_cpu_iowait_percent{{{h},cpu="total"}}', "iowait"),
                    (f'system_cpu_steal_percent{{{h},cpu="total"}}', "steal"),
                ), "percent", min_=0, max_=100, stack=True),
                timeseries("CPU usage per core", [target(f'system_cpu_usage_percent{{{h},cpu!="total"}}', "cpu {{cpu}}")],
                           "percent", min_=0, max_=100),
                timeseries("Load average", targets(
                    (f"system_load_1m{{{h}}}", "1m"), (f"system_load_5m{{{h}}}", "5m"), (f"system_load_15m{{{h}}}", "15m"),
                ), "short", min_=0),
                timeseries("Context switches and interrupts", targets(
                    (f"system_cpu_context_switches_per_second{{{h}}}", "context switches"),
                    (f"system_cpu_interrupts_per_second{{{h}}}", "interrupts"),
                ), "ops", min_=0),
                timeseries("Processes", targets(
                    (f"system_processes_count{{{h}}}", "processes"), (f"system_processes_running{{{h}}}", "running"),
                    (f"system_processes_blocked{{{h}}}", "blocked (I/O)"),
                ), "short", min_=0),
                timeseries("Processes created", [target(f"system_processes_created_per_second{{{h}}}", "forks")], "ops", min_=0),
            ]),
            row("Memory", [
                timeseries("Memory", targets(
                    (f"system_memory_total_bytes{{{h}}}", "total"), (f"system_memory_used_bytes{{{h}}}", "used"),
                    (f"system_memory_available_bytes{{{h}}}", "available"),
                ), "bytes", min_=0),
                timeseries("Memory used", [target(f"system_memory_used_percent{{{h}}}", "used")], "percent", min_=0, max_=100),
                timeseries("Swap", targets(
                    (f"system_memory_swap_total_bytes{{{h}}}", "total"), (f"system_memory_swap_used_bytes{{{h}}}", "used"),
                ), "bytes", min_=0),
            ]),
            row("Filesystems", [
                table("Filesystems", [
                    ("Used %", f"max by (mountpoint) (system_filesystem_used_percent{{{h}}})", "percent"),
                    ("Size", f"max by (mountpoint) (system_filesystem_total_bytes{{{h}}})", "bytes"),
                    ("Used", f"max by (mountpoint) (system_filesystem_used_bytes{{{h}}})", "bytes"),
                    ("Free", f"max by (mountpoint) (system_filesystem_free_bytes{{{h}}})", "bytes"),
                    ("Inodes used %", f"max by (mountpoint) (system_filesystem_inodes_used_percent{{{h}}})", "percent"),
                ], "mountpoint", overrides=[percent_override("Used %", 85, 95), percent_override("Inodes used %", 85, 95)]),
                timeseries("Filesystem used", [target(f"system_filesystem_used_percent{{{h}}}", "{{mountpoint}}")],
                           "percent", min_=0, max_=100),
                timeseries("Inodes used", [target(f"system_filesystem_inodes_used_percent{{{h}}}", "{{mountpoint}}")],
                           "percent", min_=0, max_=100),
            ], collapsed=True),
            row("Block devices", [
                timeseries("Disk throughput", targets(
                    (f"system_disk_read_bytes_per_second{{{h}}}", "{{device}} read"),
                    (f"system_disk_write_bytes_per_second{{{h}}}", "{{device}} write"),
                ), "Bps", min_=0),
                timeseries("Disk operations", targets(
                    (f"system_disk_read_ops_per_second{{{h}}}", "{{device}} read"),
                    (f"system_disk_write_ops_per_second{{{h}}}", "{{device}} write"),
                ), "iops", min_=0),
                timeseries("Average wait (await)", [target(f"system_disk_average_wait_ms{{{h}}}", "{{device}}")], "ms", min_=0),
                timeseries("Utilisation", [target(f"system_disk_utilization_percent{{{h}}}", "{{device}}")], "percent",
                           min_=0, max_=100),
            ], collapsed=True),
            row("Network", [
                timeseries("Traffic", targets(
                    (f"system_network_rx_bytes_per_second{{{h}}}", "{{interface}} in"),
                    (f"system_network_tx_bytes_per_second{{{h}}}", "{{interface}} out"),
                ), "Bps", min_=0),
                timeseries("Packets", targets(
                    (f"system_network_rx_packets_per_second{{{h}}}", "{{interface}} in"),
                    (f"system_network_tx_packets_per_second{{{h}}}", "{{interface}} out"),
                ), "pps", min_=0),
                timeseries("Errors and drops", targets(
                    (f"system_network_rx_errors_per_second{{{h}}}", "{{interface}} rx errors"),
                    (f"system_network_tx_errors_per_second{{{h}}}", "{{interface}} tx errors"),
                    (f"system_network_rx_drops_per_second{{{h}}}", "{{interface}} rx drops"),
                    (f"system_network_tx_drops_per_second{{{h}}}", "{{interface}} tx drops"),
                ), "pps", min_=0),
                timeseries("TCP connections by state", [target(f"system_network_tcp_connections{{{h}}}", "{{state}}")], "short",
                           min_=0, stack=True),
            ], collapsed=True),
        ],
    )


def network() -> dict[str, Any]:
    sel = 'host=~"$host",target=~"$target"'
    return dashboard(
        "infrawatch-network", "infrawatch / Network",
        "Reachability from every agent: ping loss and round-trip times per target, over time.",
        [HOST_VAR_MULTI, query_variable("target", "Target", 'label_values(ping_loss_ratio{host=~"$host"}, target)')],
        [
            row("Now", [
                stat("Targets down", f"count(max by (target) (ping_up{{{sel}}}) == 0) or vector(0)", w=6,
                     thresholds=[(None, "green"), (1, "red")], desc="Targets no agent could reach in its last run."),
                stat("Worst loss", f"max(ping_loss_ratio{{{sel}}})", "percentunit", w=6,
                     thresholds=[(None, "green"), (0.05, "orange"), (0.2, "red")]),
                stat("Worst average RTT", f"max(ping_rtt_avg_seconds{{{sel}}})", "s", w=6),
                stat("Ping run time", f"max(ping_duration_seconds{{{H}}})", "s", w=6,
                     desc="Wall time of the slowest agent's whole ping run (all targets)."),
                table("Targets", [
                    ("Up", f"min by (host, target) (ping_up{{{sel}}})", "none"),
                    ("Loss", f"max by (host, target) (ping_loss_ratio{{{sel}}})", "percentunit"),
                    ("RTT min", f"min by (host, target) (ping_rtt_min_seconds{{{sel}}})", "s"),
                    ("RTT avg", f"max by (host, target) (ping_rtt_avg_seconds{{{sel}}})", "s"),
                    ("RTT max", f"max by (host, target) (ping_rtt_max_seconds{{{sel}}})", "s"),
                    ("Jitter", f"max by (host, target) (ping_jitter_seconds{{{sel}}})", "s"),
                ], "target", h=10, overrides=[status_override("Up"), percent_override("Loss", 0.05, 0.2)]),
            ]),
            row("Over time", [
                timeseries("Packet loss per target", [target(f"max by (host, target) (ping_loss_ratio{{{sel}}})", "{{target}} from {{host}}")],
                           "percentunit", min_=0, max_=1, w=24),
                timeseries("Average round-trip time per target",
                           [target(f"max by (host, target) (ping_rtt_avg_seconds{{{sel}}})", "{{target}} from {{host}}")], "s", min_=0),
                timeseries("Maximum round-trip time per target",
                           [target(f"max by (host, target) (ping_rtt_max_seconds{{{sel}}})", "{{target}} from {{host}}")], "s", min_=0),
                timeseries("Jitter per target", [target(f"max by (host, target) (ping_jitter_seconds{{{sel}}})", "{{target}} from {{host}}")],
                           "s", min_=0),
                timeseries("RTT standard deviation (mdev) per target",
                           [target(f"max by (host, target) (ping_rtt_mdev_seconds{{{sel}}})", "{{target}} from {{host}}")], "s", min_=0),
                state_timeline("Reachability per target", [target(f"min by (target) (ping_up{{{sel}}})", "{{target}}")]),
            ]),
        ],
    )


def services() -> dict[str, Any]:
    up = probe_sel("up")
    dur = probe_sel("duration_seconds")
    return dashboard(
        "infrawatch-services", "infrawatch / Services",
        "Service probes (web, image, search, cache, databases): up, latency, failures by result, TLS certificate days left.",
        [HOST_VAR_MULTI, custom_variable("probe", "Probe type", PROBES.split("|"), PROBES)],
        [
            row("Now", [
                stat("Probes failing", f"count(min by (probe, target) ({up}) == 0) or vector(0)", w=6,
                     thresholds=[(None, "green"), (1, "red")], desc="Targets whose last probe did not succeed."),
                stat("Slowest probe", f"max({dur})", "s", w=6),
                stat("Soonest certificate expiry", f'min({{__name__=~".+_tls_cert_expiry_days",{H}}})', "d", w=6,
                     thresholds=[(None, "red"), (7, "orange"), (21, "green")]),
                stat("Probed targets", f"count(max by (probe, target) ({up})) or vector(0)", w=6),
                table("Probes", [
                    ("Up", f"min by (host, probe, target) ({up})", "none"),
                    ("Duration", f"max by (host, probe, target) ({dur})", "s"),
                ], "target", h=10, overrides=[status_override("Up")],
                    desc="Worst result over the last few minutes (a failure shows until the probe's series turn stale)."),
            ]),
            row("Over time", [
                state_timeline("Up per target", [target(f"min by (probe, target) ({up})", "{{probe}} {{target}}")]),
                timeseries("Probe duration", [target(f"max by (probe, target) ({dur})", "{{probe}} {{target}}")], "s", min_=0),
                timeseries("Failures by result", [target(
                    'sum by (probe, target, result) (label_replace(count_over_time('
                    f'{{__name__=~"(${{probe}})_up",result!="success",{H}}}[$__interval]) keep_metric_names, '
                    '"probe", "$1", "__name__", "(.+)_up"))', "{{probe}} {{target}}: {{result}}")], "short", min_=0,
                    desc="Probe runs that did not succeed, by result (timeout, connection_failed, bad_status, ...)."),
                timeseries("HTTP time per phase", [target(f"max by (target, phase) (http_phase_seconds{{{H}}})", "{{target}} {{phase}}")],
                           "s", min_=0, stack=True),
                timeseries("HTTP status code", [target(f"max by (target) (http_status_code{{{H}}})", "{{target}}")], "none"),
                timeseries("TLS certificate days left",
                           [target(f'min by (target) ({{__name__=~".+_tls_cert_expiry_days",{H}}})', "{{target}}")], "d",
                           thresholds=[(None, "red"), (7, "orange"), (21, "green")]),
            ]),
        ],
    )


def applications() -> dict[str, Any]:
    m = 'module=~"$module"'
    return dashboard(
        "infrawatch-applications", "infrawatch / Applications",
        "Application exceptions per module (payment, order, ...) and service. "
        "Series: app.exceptions.count (exceptions received per agent batch, tags module, service, host).",
        [HOST_VAR_MULTI, query_variable("module", "Module", "label_values(app_exceptions_count, module)")],
        [
            row("Exceptions", [
                stat("Exceptions in range", f"sum(sum_over_time(app_exceptions_count{{{H},{m}}}[$__range])) or vector(0)", w=6,
                     thresholds=[(None, "green"), (1, "orange"), (100, "red")]),
                stat("payment", f'sum(sum_over_time(app_exceptions_count{{{H},module="payment"}}[$__range])) or vector(0)', w=6,
                     thresholds=[(None, "green"), (1, "red")]),
                stat("order", f'sum(sum_over_time(app_exceptions_count{{{H},module="order"}}[$__range])) or vector(0)', w=6,
                     thresholds=[(None, "green"), (1, "red")]),
                stat("Modules with exceptions", f"count(sum by (module) (sum_over_time(app_exceptions_count{{{H},{m}}}[$__range])) > 0) or vector(0)", w=6),
                timeseries("Exceptions per module",
                           [target(f"sum by (module) (sum_over_time(app_exceptions_count{{{H},{m}}}[$__interval]))", "{{module}}")],
                           "short", min_=0, stack=True, w=24),
                table("Modules and services with the most exceptions", [
                    ("Exceptions", f'topk(20, sum by (module, service) (sum_over_time(app_exceptions_count{{{H},{m}}}[$__range])))', "short"),
                ], "module", sort_by="Exceptions",
                    desc="Exception groups (fingerprints, messages, stacks) are in the collector's exceptions view and API; "
                         "the metric carries module and service only, to keep series few."),
                timeseries("Exceptions per host", [target(f"sum by (host) (sum_over_time(app_exceptions_count{{{H},{m}}}[$__interval]))", "{{host}}")],
                           "short", min_=0, w=24),
            ]),
        ],
    )


def performance() -> dict[str, Any]:
    m = 'module=~"$module"'
    return dashboard(
        "infrawatch-performance", "infrawatch / Performance",
        "API and SQL timings from the application SDK, OpenTelemetry and slow-query logs, aggregated per interval by "
        "the agent: p95 per endpoint and per SQL fingerprint. Series: app.request.duration_p95_seconds / _p99_ / "
        "count / errors (tags service, module, endpoint) and app.sql.* (tags service, module, db, fingerprint).",
        [HOST_VAR_MULTI, query_variable("module", "Module", "label_values(app_request_count, module)")],
        [
            row("API", [
                timeseries("API p95 per endpoint",
                           [target(f"max by (module, endpoint) (app_request_duration_p95_seconds{{{H},{m}}})", "{{module}} {{endpoint}}")],
                           "s", min_=0, w=24),
                timeseries("API requests per interval",
                           [target(f"sum by (module) (app_request_count{{{H},{m}}})", "{{module}}")], "short", min_=0, stack=True),
                timeseries("API errors per interval",
                           [target(f"sum by (module, endpoint) (app_request_errors{{{H},{m}}})", "{{module}} {{endpoint}}")],
                           "short", min_=0, stack=True),
                table("Slowest endpoints (p95)", [
                    ("p95", f"topk(20, max by (module, endpoint) (max_over_time(app_request_duration_p95_seconds{{{H},{m}}}[$__range])))", "s"),
                    ("p99", f"max by (module, endpoint) (max_over_time(app_request_duration_p99_seconds{{{H},{m}}}[$__range]))", "s"),
                    ("Requests", f"sum by (module, endpoint) (sum_over_time(app_request_count{{{H},{m}}}[$__range]))", "short"),
                ], "endpoint", sort_by="p95"),
            ]),
            row("SQL", [
                timeseries("SQL p95 per fingerprint",
                           [target(f"max by (db, fingerprint) (app_sql_duration_p95_seconds{{{H},{m}}})", "{{db}} {{fingerprint}}")],
                           "s", min_=0, w=24),
                table("Slowest SQL (p95)", [
                    ("p95", f"topk(20, max by (db, fingerprint) (max_over_time(app_sql_duration_p95_seconds{{{H},{m}}}[$__range])))", "s"),
                    ("p99", f"max by (db, fingerprint) (max_over_time(app_sql_duration_p99_seconds{{{H},{m}}}[$__range]))", "s"),
                    ("Statements", f"sum by (db, fingerprint) (sum_over_time(app_sql_count{{{H},{m}}}[$__range]))", "short"),
                ], "fingerprint", sort_by="p95"),
            ]),
        ],
    )


def collector_health() -> dict[str, Any]:
    return dashboard(
        "infrawatch-collector", "infrawatch / Collector health",
        "The collector's and the agents' own metrics: ingest, store, sink queues and deliveries, agent buffers and shipping.",
        [HOST_VAR_MULTI],
        [
            row("Collector ingest and store", [
                timeseries("Samples ingested per second", [target("sum(rate(collector_ingest_samples_total{}[$__rate_interval]))", "samples/s")],
                           "short", min_=0),
                timeseries("Batches rejected", [target("sum by (reason) (increase(collector_ingest_rejected_total{}[$__rate_interval]))", "{{reason}}")],
                           "short", min_=0),
                timeseries("Store size", [target("max(collector_store_bytes{})", "bytes on disk")], "bytes", min_=0),
                timeseries("Collector process", targets(
                    ("rate(collector_process_cpu_seconds_total{}[$__rate_interval])", "CPU (cores)"),
                ), "short", min_=0),
            ]),
            row("Sinks", [
                timeseries("Sink queue depth", [target("max by (sink) (collector_sink_queue_depth_batches{})", "{{sink}}")], "short", min_=0,
                           desc="Batches waiting in each sink's disk queue (Zabbix, InfluxDB, ...): grows while a destination is down."),
                timeseries("Sink drops", [target("sum by (sink, reason) (increase(collector_sink_dropped_total{}[$__rate_interval]))", "{{sink}} {{reason}}")],
                           "short", min_=0),
                timeseries("InfluxDB sink: points written per second",
                           [target("sum by (sink) (rate(collector_sink_influxdb_points_total{}[$__rate_interval]))", "{{sink}}")], "short", min_=0),
                timeseries("InfluxDB sink: write duration",
                           [target("max by (sink) (collector_sink_influxdb_request_duration_seconds{})", "{{sink}}")], "s", min_=0),
            ]),
            row("Agents", [
                timeseries("Agent buffer depth", [target(f"max by (host) (agent_buffer_depth_readings{{{H}}})", "{{host}}")], "short", min_=0),
                timeseries("Agent buffer size", [target(f"max by (host) (agent_buffer_bytes{{{H}}})", "{{host}}")], "bytes", min_=0),
                timeseries("Batches shipped", [target(f"sum by (host) (increase(agent_ship_batches_total{{{H}}}[$__rate_interval]))", "{{host}}")],
                           "short", min_=0),
                timeseries("Readings dropped by agents",
                           [target(f"sum by (host) (agent_buffer_dropped_total{{{H}}})", "{{host}}")], "short", min_=0),
                timeseries("Check run time", [target(f"max by (host, check) (agent_check_duration_seconds{{{H}}})", "{{host}} {{check}}")],
                           "s", min_=0),
                timeseries("Agent resources", targets(
                    (f"max by (host) (agent_process_rss_bytes{{{H}}})", "{{host}} RSS"),
                ), "bytes", min_=0),
            ]),
        ],
    )


DASHBOARDS = {
    "overview.json": overview,
    "host.json": host,
    "network.json": network,
    "services.json": services,
    "applications.json": applications,
    "performance.json": performance,
    "collector.json": collector_health,
}


def render() -> dict[str, str]:
    return {name: json.dumps(fn(), indent=2, ensure_ascii=False) + "\n" for name, fn in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
