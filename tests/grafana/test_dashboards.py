"""Grafana: dashboards are valid JSON models, and every panel query returns data from a real VictoriaMetrics.

The panels are discovered from the shipped JSON files (rows and collapsed rows included), so a panel
added later is tested without touching this file, and every panel must return data.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from checks.catalogue import all_metrics
from collector.sinks.influxdb import InfluxDBSink  # noqa: F401  (registers the sink's own metrics in the catalogue)
from collector.sinks.lineproto import Mapping

# Producers that register their metrics in the catalogue on import: the agent's application aggregation
# (app.request.*, app.sql.*), the collector's self-metrics (collector.*) and exceptions extension (app.exceptions.count).
for _mod in ("agent.aggregate", "collector.selfmetrics", "collector.exceptions"):
    try:
        importlib.import_module(_mod)
    except ImportError:  # pragma: no cover - not in this tree: their panels then fail naming the metric
        pass

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "config" / "grafana"
DASH_DIR = GRAFANA / "dashboards"
DASHBOARD_FILES = sorted(DASH_DIR.glob("*.json"))
REQUIRED = {"overview", "host", "network", "services", "applications", "performance", "collector"}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
DS_UID = "infrawatch-victoriametrics"
BUILTINS = {"__interval": "5s", "__rate_interval": "1m", "__range": "15m", "__interval_ms": "5000", "__range_s": "900"}

MAPPING = Mapping()


def series_name(metric: str) -> str:
    return MAPPING.series_name(metric)


# ---------------------------------------------------------------------------------------- discovery


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows) included."""
    for p in panels:
        yield p
        yield from walk(p.get("panels") or [])


def query_panels() -> list[tuple[str, int, str]]:
    out = []
    for f in DASHBOARD_FILES:
        for p in walk(load(f)["panels"]):
            if p.get("type") != "row":
                out.append((f.name, p["id"], p.get("title", "")))
    return out


PANELS = query_panels()

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^{}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def selectors(expr: str) -> list[tuple[str, str]]:
    """(selector text, metric name or __name__ regex) of every series selector in a substituted expression."""
    out = []
    for m in _SELECTOR.finditer(expr):
        name, body = m.group(1), m.group(2)
        if name in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            continue
        if not name:
            matchers = {k: (op, v) for k, op, v in _MATCHER.findall(body)}
            assert "__name__" in matchers, f"selector {m.group(0)!r} has neither a metric name nor __name__"
            op, v = matchers["__name__"]
            assert op == "=~", f"selector {m.group(0)!r}: use __name__=~"
            name = f"re:{v}"
        out.append((m.group(0), name))
    return out


def catalogue_series() -> dict[str, str]:
    """VictoriaMetrics series name → infrawatch metric name, for every catalogued metric."""
    return {series_name(name): name for name in all_metrics()}


def metrics_of(sel_name: str, cat: dict[str, str]) -> set[str]:
    """The catalogued infrawatch metrics a selector's name (or __name__ regex) stands for."""
    if sel_name.startswith("re:"):
        rx = re.compile(sel_name[3:])
        return {m for s, m in cat.items() if rx.fullmatch(s)}
    return {cat[sel_name]} if sel_name in cat else set()


# ---------------------------------------------------------------------------------------- static validity


def test_all_dashboards_shipped_and_generated() -> None:
    assert {f.stem for f in DASHBOARD_FILES} == REQUIRED
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rendered = mod.render()
    for f in DASHBOARD_FILES:
        assert rendered[f.name] == f.read_text(encoding="utf-8"), f"{f.name} differs from build_dashboards.py: regenerate it"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_model_is_valid(path: Path) -> None:
    d = load(path)
    assert isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36
    assert d["uid"].startswith("infrawatch-") and len(d["uid"]) <= 40 and d["title"]
    assert "id" not in d or d["id"] is None  # a provisioned dashboard must not carry a database id
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus" and ds["current"]["value"] == DS_UID
    panels = list(walk(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"duplicate panel ids: {ids}"
    known_vars = set(variables) | set(BUILTINS)
    top_rects = []
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"panel {p['id']} outside the grid: {g}"
        if p["type"] == "row":
            assert not p.get("targets")
            if not p["collapsed"]:
                assert p["panels"] == [], f"row {p['title']!r}: an expanded row lists its panels after itself"
            continue
        assert p["datasource"] == DS_REF, f"panel {p['id']} {p['title']!r}: datasource must be {DS_REF}"
        assert p["targets"], f"panel {p['id']} {p['title']!r} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"] == DS_REF
            expr = t["expr"]
            used = set(re.findall(r"\$\{?(\w+)", expr)) - {"1"}  # "$1" is a label_replace back-reference
            assert used <= known_vars, f"panel {p['title']!r} uses undefined variables {used - known_vars}"
            assert "${datasource}" not in expr
            assert selectors(_substitute(expr, {k: ".*" for k in variables} | BUILTINS)), f"{expr!r}: no series selector"
        if p in d["panels"]:
            top_rects.append((p["id"], g["x"], g["y"], g["w"], g["h"]))
    for i, a in enumerate(top_rects):  # no two top-level panels overlap
        for b in top_rects[i + 1 :]:
            overlap = a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]
            assert not overlap, f"panels {a[0]} and {b[0]} overlap"


def test_host_dashboard_has_a_host_variable() -> None:
    d = load(DASH_DIR / "host.json")
    (var,) = [v for v in d["templating"]["list"] if v["name"] == "host"]
    assert var["type"] == "query" and var["datasource"] == DS_REF and "host" in var["definition"]
    for p in walk(d["panels"]):
        for t in p.get("targets", []):
            assert 'host="$host"' in t["expr"], f"{p['title']!r} ignores $host: {t['expr']}"


def test_every_series_on_a_dashboard_is_catalogued() -> None:
    cat = catalogue_series()
    unknown = []
    for f in DASHBOARD_FILES:
        d = load(f)
        vars_ = {v["name"]: v.get("allValue", ".*") for v in d["templating"]["list"]}
        for p in walk(d["panels"]):
            for t in p.get("targets", []):
                for sel, name in selectors(_substitute(t["expr"], vars_ | BUILTINS)):
                    if not metrics_of(name, cat):
                        unknown.append(f"{f.name} {p['title']!r}: {sel}")
    assert not unknown, "series no check or collector declares (a typo?):\n" + "\n".join(unknown)


def test_provisioning_files() -> None:
    vm = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "victoriametrics.yaml").read_text())
    (ds,) = vm["datasources"]
    assert vm["apiVersion"] == 1 and ds["type"] == "prometheus" and ds["uid"] == DS_UID and ds["url"].startswith("http")
    influx = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text())
    (ids,) = influx["datasources"]
    assert ids["type"] == "influxdb" and ids["jsonData"]["version"] == "Flux"
    assert ids["jsonData"]["organization"] and ids["jsonData"]["defaultBucket"]
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "infrawatch.yaml").read_text())
    (p,) = prov["providers"]
    assert prov["apiVersion"] == 1 and p["type"] == "file" and p["options"]["path"].startswith("/")
    assert (GRAFANA / "README.md").is_file()


# ---------------------------------------------------------------------------------------- every panel against VictoriaMetrics


def _substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


@pytest.fixture(scope="module")
def data_run(victoriametrics: Any) -> Any:
    """Produce real data in VictoriaMetrics once for every panel test.

    A real agent ships to a real collector whose influxdb sink writes to VictoriaMetrics (tests/grafana/datarun.py).
    """
    from tests.grafana import datarun

    run = asyncio.run(datarun.agent_collector_sink(victoriametrics.url))
    assert run.store, "the data run must go through the real collector (its store holds nothing)"
    victoriametrics.force_flush()
    time.sleep(2.0)  # query (end = now - 1 s) at least 1 s after the last write
    return run


def _resolve_variables(vm: Any, d: dict[str, Any], run: Any) -> dict[str, str]:
    """Values for the dashboard's variables, running each query variable against VictoriaMetrics."""
    values: dict[str, str] = dict(BUILTINS)
    for v in d["templating"]["list"]:
        name = v["name"]
        if v["type"] == "datasource":
            values[name] = DS_UID
        elif v["type"] == "custom":
            values[name] = v["allValue"]
        elif v["type"] == "query":
            q = _substitute(v["definition"], values)
            m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", q)
            assert m, f"variable {name}: unsupported query {q!r}"
            options = vm.label_values(m.group(2), m.group(1), start=run.start - 60)
            values[f"__options_{name}"] = ",".join(options)
            if v.get("includeAll"):
                values[name] = v.get("allValue") or ".*"
            else:
                values[name] = run.host if run.host in options else (options[0] if options else "")
        else:
            pytest.fail(f"variable {name}: unsupported type {v['type']}")
    return values


@pytest.mark.parametrize(("file", "panel_id", "title"), PANELS, ids=[f"{f[:-5]}-{i}-{t}" for f, i, t in PANELS])
def test_panel_returns_data(victoriametrics: Any, data_run: Any, file: str, panel_id: int, title: str) -> None:
    vm = victoriametrics
    d = load(DASH_DIR / file)
    (panel,) = [p for p in walk(d["panels"]) if p["id"] == panel_id]
    values = _resolve_variables(vm, d, data_run)
    cat = catalogue_series()
    start, end = data_run.start - 30, time.time() - 1
    empty_selectors: dict[str, set[str]] = {}
    empty_targets: list[str] = []
    for t in panel["targets"]:
        expr = _substitute(t["expr"], values)
        assert "$" not in expr.replace('"$1"', ""), f"unsubstituted variable in {expr!r}"
        for sel, name in selectors(expr):
            if not vm.series(sel, start=start, end=end):
                empty_selectors[sel] = metrics_of(name, cat)
        if t.get("instant"):
            result = vm.query(expr, at=end)
        else:
            # VictoriaMetrics aligns start/end down to a multiple of step: a 1 s step loses at most 1 s
            result = vm.query_range(expr, start, end, step=1)
        if not result:
            empty_targets.append(f"{t['refId']}: {expr}")
    if not empty_selectors and not empty_targets:
        return
    detail = (
        f"{file} panel {panel_id} {title!r}: "
        + (f"selectors without series: {sorted(empty_selectors)}; " if empty_selectors else "")
        + (f"queries without data: {empty_targets}" if empty_targets else "")
        + f" (data run: {data_run.mode}, host {data_run.host})"
    )
    pytest.fail(detail)


# ---------------------------------------------------------------------------------------- agent → collector → VictoriaMetrics


def test_victoriametrics_holds_exactly_what_the_store_holds(victoriametrics: Any, data_run: Any) -> None:
    """Every point of the run in the collector's embedded store is in VictoriaMetrics with the same time and value."""
    vm = victoriametrics
    exported: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = {}
    for h in sorted({h for _, h, _ in data_run.store}):
        for s in vm.export(f'{{host="{h}"}}', start=data_run.start - 60, end=time.time()):
            labels = dict(s["metric"])
            name = labels.pop("__name__")
            exported[(name, tuple(sorted(labels.items())))] = dict(zip(s["timestamps"], s["values"]))
    total = truncated = 0
    for (metric, host, tags), points in sorted(data_run.store.items()):
        if not points:
            continue
        labels = {k: v for k, v in tags if v != ""}
        labels.setdefault("host", host)
        key = (series_name(metric), tuple(sorted(labels.items())))
        assert key in exported, f"{metric} {dict(tags)} on {host}: not in VictoriaMetrics"
        # the collector keeps recording its self-metrics after the store was read: compare up to its last point
        got = [(ts, v) for ts, v in sorted(exported[key].items()) if ts <= points[-1][0] + 1]
        assert len(got) == len(points), f"{metric} {dict(tags)}: {len(got)} points in VictoriaMetrics, {len(points)} in the store"
        for (vm_ts, vm_v), (ts, v) in zip(got, points):
            if vm_ts != ts:
                # the sink rounds to the nearest millisecond; a store that truncates is 1 ms behind
                assert vm_ts - ts == 1, f"{metric} {dict(tags)}: timestamp {vm_ts} in VictoriaMetrics, {ts} in the store"
                truncated += 1
            # VictoriaMetrics keeps 12 significant decimal digits (docs/influxdb.md)
            assert math.isclose(vm_v, v, rel_tol=1e-11, abs_tol=1e-300), (metric, dict(tags), ts, v, vm_v)
        total += len(points)
    assert total > 500, f"the data run stored only {total} points"
    # and through the query API, one series at an instant
    (metric, host, tags), points = max(data_run.store.items(), key=lambda kv: len(kv[1]))
    ts, v = points[-1]
    sel = ",".join(f'{k}="{_promql_escape(val)}"' for k, val in sorted({**dict(tags), "host": host}.items()) if val != "")
    (q,) = vm.query(f"{series_name(metric)}{{{sel}}}", at=ts / 1000 + 0.1)  # +0.1 s: a store 1 ms behind (see below)
    assert math.isclose(float(q["value"][1]), v, rel_tol=1e-11, abs_tol=1e-300)
    assert not truncated, f"{truncated} of {total} store timestamps differ from VictoriaMetrics by 1 ms (store and sink must both round)"


def _promql_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def test_exception_counts_carry_the_agents_host(victoriametrics: Any, data_run: Any) -> None:
    """The Applications dashboard filters by `host`: app.exceptions.count must be tagged with the agent's host."""
    hosts = {h for m, h, _ in data_run.store if m == "app.exceptions.count"}
    assert hosts, "the collector stored no app.exceptions.count"
    assert data_run.host in hosts, f"app.exceptions.count stored under {sorted(hosts)}, not the agent's host {data_run.host}"
    got = vm_series = victoriametrics.series(f'app_exceptions_count{{host="{data_run.host}"}}', start=data_run.start - 60)
    assert {s["module"] for s in vm_series} == {"payment", "order"}, got
