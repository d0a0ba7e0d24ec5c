"""Zabbix key mapping, template generation and sink config — no server needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from checks.config import ConfigError, from_dict, load_yaml_file
from collector.sinks import load_sink_class
from collector.sinks.zabbix import ZabbixSink, ZabbixSinkConfig
from collector.sinks.zabbix_keys import (
    DISCOVERIES,
    TEMPLATE_ITEMS,
    KeyMapper,
    format_value,
    item_key,
    lld_payload,
    quote_param,
    split_ts,
    zabbix_host_name,
)
from collector.sinks.zabbix_template import TEMPLATE_FILE, render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "sinks" / "zabbix.yaml"
RUNNER_KEYS = ("queue_max_bytes", "backoff_initial", "backoff_max", "max_batches_per_send")


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("/", "/"),
        ("/srv/a,b", '"/srv/a,b"'),
        ("x]y", '"x]y"'),
        (' lead', '" lead"'),
        ('"q"', '"\\"q\\""'),
        ("https://shop.example/pay?a=1", "https://shop.example/pay?a=1"),
        ("", ""),
        ("[bracket", None),  # Zabbix would parse it as an array parameter
        ("a,b\\", None),  # quoting needed but a trailing backslash cannot be quoted
    ],
)
def test_quote_param_like_zabbix(value: str, quoted: str | None) -> None:
    assert quote_param(value) == quoted


@pytest.mark.parametrize(
    ("metric", "tags", "key", "disc", "entry", "covered"),
    [
        ("system.filesystem.used_percent", {"mountpoint": "/"}, "infrawatch.system.filesystem.used_percent[/]", "filesystems", ("/",), True),
        ("system.disk.read_bytes_per_second", {"device": "sda"}, "infrawatch.system.disk.read_bytes_per_second[sda]", "devices", ("sda",), True),
        ("system.network.rx_bytes_per_second", {"interface": "eth0"}, "infrawatch.system.network.rx_bytes_per_second[eth0]", "interfaces", ("eth0",), True),
        ("system.cpu.usage_percent", {"cpu": "total"}, "infrawatch.system.cpu.usage_percent[total]", None, None, True),
        ("system.cpu.usage_percent", {"cpu": "3"}, "infrawatch.system.cpu.usage_percent[3]", "cpus", ("3",), True),
        ("system.memory.used_percent", {"host": "web-1"}, "infrawatch.system.memory.used_percent", None, None, True),
        ("ping.loss_ratio", {"target": "10.0.0.1", "result": "success"}, "infrawatch.ping.loss_ratio[10.0.0.1]", "ping", ("10.0.0.1",), True),
        ("http.up", {"target": "https://x/", "result": "timeout"}, "infrawatch.probe.up[http,https://x/]", "probes", ("http", "https://x/"), True),
        ("http.tls_cert_expiry_days", {"target": "https://x/"}, "infrawatch.probe.tls_cert_expiry_days[http,https://x/]", "tls", ("http", "https://x/"), True),
        ("redis.used_memory_bytes", {"target": "127.0.0.1:6379"}, "infrawatch.probe.used_memory_bytes[redis,127.0.0.1:6379]", "probes", ("redis", "127.0.0.1:6379"), False),
        ("app.exceptions.count", {"module": "payment"}, "infrawatch.app.exceptions.count[payment]", "modules", ("payment",), True),
        ("app.request.duration_p95_seconds", {"module": "order", "endpoint": "/pay", "service": "shop"},
         "infrawatch.app.request.duration_p95_seconds[order,/pay]", "endpoints", ("order", "/pay"), True),
        ("system.network.tcp_connections", {"state": "LISTEN"}, "infrawatch.system.network.tcp_connections[LISTEN]", None, None, False),
        ("alerts.active", {"severity": "critical"}, "infrawatch.alerts.active[critical]", None, None, True),
        ("alerts.firing", {"alertname": "ProbeDown", "severity": "warning", "target": "https://x/", "host": "h"},
         "infrawatch.alerts.firing[ProbeDown,https://x/]", "alerts", ("ProbeDown", "https://x/", "warning"), True),
        ("alerts.firing", {"alertname": "HostDown", "severity": "critical"}, "infrawatch.alerts.firing[HostDown,]", "alerts",
         ("HostDown", "", "critical"), True),
    ],
)
def test_key_mapping(metric: str, tags: dict[str, str], key: str, disc: str | None, entry: tuple | None, covered: bool) -> None:
    m = KeyMapper().map(metric, tags)
    assert m is not None
    assert (m.key, m.discovery, m.entry, m.covered) == (key, disc, entry, covered)


def test_unrepresentable_tag_value_is_none_not_a_guess() -> None:
    assert KeyMapper().map("system.filesystem.used_percent", {"mountpoint": "[weird"}) is None
    assert item_key("x", ["a,b\\"]) is None


def test_template_prototype_keys_match_what_zabbix_makes_of_mapped_keys() -> None:
    """A discovered item's key is the prototype key with the macros replaced by the quoted values."""
    m = KeyMapper().map("system.filesystem.used_percent", {"mountpoint": "/srv/a,b"})
    assert m is not None and m.entry is not None
    proto = "infrawatch.system.filesystem.used_percent[{#MOUNTPOINT}]"
    assert proto.replace("{#MOUNTPOINT}", quote_param(m.entry[0]) or "") == m.key


def test_lld_payload_lists_every_entry_and_one_per_key() -> None:
    d = DISCOVERIES["filesystems"]
    assert lld_payload(d, {("/",), ("/var",)}) == [{"{#MOUNTPOINT}": "/"}, {"{#MOUNTPOINT}": "/var"}]
    alerts = lld_payload(DISCOVERIES["alerts"], {("A", "x", "critical"), ("A", "x", "warning"), ("B", "", "info")})
    assert alerts == [{"{#ALERTNAME}": "A", "{#SUBJECT}": "x", "{#SEVERITY}": "warning"},
                      {"{#ALERTNAME}": "B", "{#SUBJECT}": "", "{#SEVERITY}": "info"}]


def test_values_and_timestamps() -> None:
    assert split_ts(1700000000.123456789) == (1700000000, 123456768)  # nearest double
    assert split_ts(1700000000.9999999999) == (1700000001, 0)
    assert all(isinstance(x, int) for x in split_ts(1.5e9 + 0.25))
    assert format_value(3.0) == "3" and format_value(0.1) == "0.1" and format_value(float("nan")) == "0"
    assert zabbix_host_name("web 1/a", "iw-") == "iw-web 1_a"
    assert zabbix_host_name("x", host_map={"x": "X.prod"}) == "X.prod"


def test_template_items_are_real_metrics() -> None:
    """Every template item is a metric some part of infrawatch emits (catches renamed metrics)."""
    import agent.aggregate  # noqa: F401 - registers app.request.*
    import alerting.service  # noqa: F401 - registers alerts.*
    import collector.exceptions  # noqa: F401 - registers app.exceptions.count
    from checks.catalogue import all_metrics

    known = all_metrics()
    for disc, items in TEMPLATE_ITEMS.items():
        for spec, _, _ in items:
            name = spec.split("[")[0]
            if name == "heartbeat":
                continue
            if name.startswith("probe."):
                suffix = name.removeprefix("probe.")
                assert any(n.endswith("." + suffix) and "target" in m.tags for n, m in known.items()), name
                continue
            assert name in known, f"template item {spec} ({disc}) is not in the metric catalogue"


def test_shipped_template_is_generated_and_valid_export() -> None:
    text = TEMPLATE_FILE.read_text(encoding="utf-8")
    assert text == render(), "config/zabbix/infrawatch_template.yaml is stale: run python -m collector.sinks.zabbix_template"
    doc = yaml.safe_load(text)["zabbix_export"]
    assert doc["version"] == "6.0"
    uuids = re.findall(r"uuid: ([0-9a-f]+)", text)
    assert len(uuids) == len(set(uuids)) and all(re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", u) for u in uuids)
    (tpl,) = doc["templates"]
    assert {r["key"] for r in tpl["discovery_rules"]} == {d.rule_key for d in DISCOVERIES.values()}


def test_registry_and_example_config_validate() -> None:
    assert load_sink_class("zabbix") is ZabbixSink
    data, _ = load_yaml_file(EXAMPLE)
    (raw_all,) = data["sinks"]
    raw = {k: v for k, v in raw_all.items() if k not in RUNNER_KEYS}
    assert set(raw_all) - set(raw) == set(RUNNER_KEYS), "document the runner options too"
    cfg = from_dict(ZabbixSinkConfig, raw, "sinks[0]")
    # the example documents the defaults: equal to a config built from the required keys alone
    api = raw["api"]
    assert cfg == from_dict(ZabbixSinkConfig, {"api": {"url": api["url"], "user": api["user"], "password_file": api["password_file"]}})
    lines = EXAMPLE.read_text().splitlines()
    for key in [*raw_all, *raw["tls"], *raw["api"]]:  # every option has a comment right above it
        hits = [i for i, line in enumerate(lines) if re.match(rf"^\s+(- )?{key}:", line)]
        assert hits and all(lines[n - 1].strip().startswith("#") for n in hits), f"option {key} has no comment"
    from collector.config import collector_config_from_dict

    (spec,) = collector_config_from_dict({"data_dir": "/nonexistent", **data}).sinks
    assert spec.cls is ZabbixSink and spec.name == "zabbix"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"port": 0}, "port"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"tls": {"connect": "psk"}}, "psk_identity"),
        ({"tls": {"connect": "cert", "ca_file": "/x"}}, "cert_file"),
        ({"tls": {"connect": "kerberos"}}, "connect"),
        ({"api": {"url": "zabbix.example"}}, "url"),
        ({"api": {"url": "http://z/api_jsonrpc.php"}}, "user"),
        ({"api": {"url": "http://z/api_jsonrpc.php", "user": "a", "token": "t"}}, "token"),
        ({"servr": "x"}, "servr"),
    ],
)
def test_bad_config_names_the_option(raw: dict, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict(ZabbixSinkConfig, raw, "sinks[0]")
    assert words in str(ei.value)


def test_lld_entries_are_current_ones_and_survive_restart(tmp_path: Path) -> None:
    """A payload lists every entry a sample named recently; silent ones are forgotten (and the rule resent)."""
    import time

    from checks.model import Batch, Sample, new_batch_id
    from collector.sinks.base import SinkContext

    def fs(*mounts: str) -> Batch:
        now = time.time()
        return Batch(new_batch_id(), "h1", now,
                     [Sample("system.filesystem.used_percent", 1.0, now, {"mountpoint": m, "device": "/dev/x"}) for m in mounts])

    sink = ZabbixSink(from_dict(ZabbixSinkConfig, {"lld_forget_after": "1s"}), SinkContext(str(tmp_path)))
    sink._convert([fs("/", "/old")])
    assert sink.lld_entries("h1", "filesystems") == {("/",), ("/old",)}
    sink._lld_dirty.clear()
    time.sleep(1.1)
    sink._convert([fs("/")])
    sink._prune_lld()
    assert sink.lld_entries("h1", "filesystems") == {("/",)}
    assert ("h1", "filesystems") in sink._lld_dirty  # a payload without /old goes out
    sink._save_lld()
    again = ZabbixSink(from_dict(ZabbixSinkConfig, {}), SinkContext(str(tmp_path)))
    again._load_lld()
    assert again.lld_entries("h1", "filesystems") == {("/",)}


def test_unmappable_and_hold_overflow_are_counted_not_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import time

    from checks.model import Batch, Sample, new_batch_id
    from collector.sinks.base import SinkContext
    from collector.sinks.zabbix import _V

    seen: dict[tuple[str, tuple], float] = {}
    ctx = SinkContext(str(tmp_path), lambda name, value, tags=None: seen.__setitem__((name, tuple(sorted((tags or {}).items()))), value))
    sink = ZabbixSink(from_dict(ZabbixSinkConfig, {"hold_max_values": 3}), ctx)
    caplog.set_level(logging.WARNING, logger="collector.sinks.zabbix")
    now = time.time()
    vals, _ = sink._convert([Batch(new_batch_id(), "h1", now, [Sample("system.filesystem.used_percent", 1.0, now, {"mountpoint": "[odd"})])])
    assert vals == []
    assert sink.dropped_total["unmappable"] == 1
    sink._emit(force=True)
    assert seen[("collector.sink.zabbix.dropped_values_total", (("reason", "unmappable"), ("sink", "zabbix")))] == 1
    assert any(r.getMessage() == "zabbix sink dropped values" and r.reason == "unmappable" for r in caplog.records)
    for i in range(4):
        sink._first_seen[("h1", f"k{i}")] = float(i)
        sink._hold(_V("h1", f"k{i}", "1", int(now), i))
    assert sink.held_count == 3 and sink.dropped_total["hold_full"] == 1
    assert ("h1", "k0") not in sink._held  # the key held longest went first
