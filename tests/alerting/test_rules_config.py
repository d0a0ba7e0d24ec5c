"""Rule files and the `alerting:` section: validation errors name file, line, rule and field; the default set is quiet on a healthy fleet."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from alerting.config import DEFAULT_RULES_FILE, collect_rules, load_rules_file, parse_alerting_config
from alerting.matchers import parse_matchers
from alerting.rules import build_rule
from checks.config import ConfigError
from tests.alerting.helpers import T0, batch, engine, exc

BAD_RULES = [
    ("- name: cpu\n    type: threshold\n    metric: system.cpu.usage_percent\n    warning: 80\n    windw: 5m\n",
     "rules[0].windw", "rule 'cpu'", 6),
    ("- name: cpu\n    type: thresold\n    metric: x.y\n", "rules[0].type", "unknown rule type 'thresold'", 3),
    ("- name: cpu\n    type: threshold\n    metric: x.y\n    warning: 90\n    critical: 80\n", "rules[0].critical", "must be above", 6),
    ("- name: cpu\n    type: threshold\n    metric: x.y\n    warning: 90\n    recovery: 95\n", "rules[0].recovery", "healthy side", 6),
    ("- name: cpu\n    type: threshold\n    metric: x.y\n    warning: 90\n    agg: p93x\n", "rules[0].agg", "must be one of", 6),
    ("- name: cpu\n    type: threshold\n    metric: x.y\n", "rules[0].warning", "at least one of warning or critical", 2),
    ("- name: a\n    type: host_down\n  - name: a\n    type: host_down\n", "rules[1].name", "duplicate rule name", 4),
    ("- name: p\n    type: threshold\n    metric: x.y\n    warning: 1\n    match: ['host=~\"(\"']\n", "rules[0].match", "invalid regular expression", 6),
    ("- name: p\n    type: exceptions\n    warning: 1\n    window: 5 minutes\n", "rules[0].window", "duration", 5),
]


@pytest.mark.parametrize("body,path,message,line", BAD_RULES)
def test_invalid_rule_file_names_file_rule_field(tmp_path: Path, body: str, path: str, message: str, line: int) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("rules:\n  " + body)
    with pytest.raises(ConfigError) as ei:
        load_rules_file(f)
    e = ei.value
    assert e.path == path
    assert message in e.message
    assert e.file == str(f)
    assert e.line == line, str(e)
    assert str(f) in str(e)


def test_default_rule_set_loads_and_covers_the_issue() -> None:
    rcs = load_rules_file(DEFAULT_RULES_FILE)
    types = {rc.name: rc.type for rc in rcs}
    for name in ("host_down", "cpu_high", "memory_high", "disk_space_low", "disk_full_predicted", "ping_packet_loss", "probe_down",
                 "tls_cert_expiring", "payment_exception_burst", "order_exception_burst", "payment_latency_high", "order_latency_high"):
        assert name in types
    for rc in rcs:
        build_rule(rc)


def test_section_validation_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("rules:\n  - name: cpu_high\n    type: threshold\n    metric: system.cpu.usage_percent\n    warning: 50\n")
    cfg = parse_alerting_config({"rule_files": [str(f)], "disabled_rules": ["host_down"]})
    rules = dict((rc.name, (rc, src)) for rc, src in collect_rules(cfg))
    assert "host_down" not in rules
    assert rules["cpu_high"][0].warning == 50 and rules["cpu_high"][1] == str(f)
    with pytest.raises(ConfigError) as ei:
        parse_alerting_config({"rules": [{"name": "x", "type": "threshold", "metric": "a.b", "warning": 1, "forr": 3}]})
    assert ei.value.path == "alerting.rules[0].forr" and "rule 'x'" in ei.value.message
    with pytest.raises(ConfigError) as ei:
        parse_alerting_config({"receivers": [{"name": "ops", "notifiers": [{"type": "dingtalk"}]}], "route": {"receiver": "ops"}})
    assert ei.value.path == "alerting.receivers[0].notifiers[0].access_token"
    with pytest.raises(ConfigError) as ei:
        parse_alerting_config({"receivers": [{"name": "ops", "notifiers": [{"type": "pager"}]}]})
    assert "known types: dingtalk, email, feishu, webhook, wecom" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        parse_alerting_config({"receivers": [{"name": "ops"}], "route": {"receiver": "ops", "routes": [{"receiver": "oncall"}]}})
    assert ei.value.path == "alerting.route.routes[0].receiver" and "unknown receiver 'oncall'" in ei.value.message
    with pytest.raises(ConfigError) as ei:
        parse_alerting_config({"receivers": [{"name": "ops"}], "route": {"receiver": "ops", "escalate": [{"after": "10m", "receiver": "boss"}]}})
    assert ei.value.path == "alerting.route.escalate[0].receiver"


def test_matchers_syntax() -> None:
    ms = parse_matchers(['severity="critical"', 'module=~"pay.*|order"', "host!=db1", "team!~'x|y'"])
    labels = {"severity": "critical", "module": "payment", "host": "web1", "team": "z"}
    assert all(m.matches(labels) for m in ms)
    assert [str(m) for m in parse_matchers({"module": "~payment|order", "host": "!db1"})] == ['module=~"payment|order"', 'host!="db1"']
    assert [str(m) for m in parse_matchers('{a="x,y", b=~"1|2"}')] == ['a="x,y"', 'b=~"1|2"']
    with pytest.raises(ValueError, match="bad matcher"):
        parse_matchers(["just-a-word"])


def test_default_rules_quiet_on_healthy_fleet(tmp_path: Path) -> None:
    """20 hosts with normal, noisy metrics, probes that succeed (one transient failure), a few exceptions: no alert at all over 8 hours."""
    rcs = collect_rules(parse_alerting_config({}))
    raw_cfgs = [rc for rc, _src in rcs]
    e = engine(tmp_path, interval=60)
    e.set_rules([build_rule(rc) for rc in raw_cfgs])
    rnd = random.Random(7)
    hosts = [f"web{i:02d}" for i in range(20)]
    disk = {h: rnd.uniform(20, 80) for h in hosts}
    seen_alerts = set()
    for minute in range(8 * 60):
        now = T0 + minute * 60
        for h in hosts:
            disk[h] += rnd.uniform(-0.01, 0.012)  # slow churn, no trend towards full
            samples = [
                ("system.cpu.usage_percent", rnd.uniform(5, 60) + (30 if rnd.random() < 0.02 else 0), {"cpu": "total"}),
                ("system.memory.used_percent", rnd.uniform(40, 75), {}),
                ("system.filesystem.used_percent", disk[h], {"mountpoint": "/", "device": "sda1", "fstype": "ext4"}),
                ("system.filesystem.inodes_used_percent", 12.0, {"mountpoint": "/", "device": "sda1", "fstype": "ext4"}),
                ("ping.loss_ratio", 0.1 if rnd.random() < 0.03 else 0.0, {"target": "gw"}),
                ("ping.up", 1.0, {"target": "gw", "result": "success"}),
                ("http.up", 0.0 if (minute == 100 and h == "web03") else 1.0, {"target": "https://img", "result": "success"}),
                ("http.tls_cert_expiry_days", 80.0 - minute / 1440, {"target": "https://img"}),
                ("app.request.duration_p95_seconds", rnd.uniform(0.05, 0.8), {"module": "payment", "endpoint": "/pay"}),
                ("app.request.count", 300, {"module": "payment", "endpoint": "/pay"}),
                ("app.request.errors", rnd.choice([0, 0, 1, 2]), {"module": "payment", "endpoint": "/pay"}),
            ]
            events = [exc(now, module="payment", fp=f"known{rnd.randint(1, 3)}")] if rnd.random() < 0.05 else []
            e.ingest(batch(h, now, samples, events))
        e.evaluate(now)
        seen_alerts |= {(a.rule, a.labels.get("host")) for a in e.alerts.values()}
    # the three 'known' exception fingerprints are new once each: that rule is the only one allowed to speak
    assert {r for r, _h in seen_alerts} <= {"critical_module_new_exception"}
    assert len([1 for a in e.alerts.values() if a.rule == "critical_module_new_exception"]) <= 3


def test_default_rules_catch_slow_and_failing_payment(tmp_path: Path) -> None:
    """The agent's per-interval series (issue 4): p95 above 2 s for 5 min, and 10 % failed requests, fire for payment only."""
    e = engine(tmp_path, interval=60)
    e.set_rules([build_rule(rc) for rc, _src in collect_rules(parse_alerting_config({}))])
    for minute in range(12):
        now = T0 + minute * 60
        for module, p95, errors in (("payment", 3.0, 30), ("order", 0.3, 0)):
            tags = {"service": "shop", "module": module, "endpoint": f"/{module}"}
            e.ingest(batch("app1", now, [("app.request.duration_p95_seconds", p95, tags), ("app.request.count", 300, tags),
                                         ("app.request.errors", errors, tags)]))
        e.evaluate(now)
    got = {(a.rule, a.labels.get("module"), a.state, a.severity) for a in e.alerts.values()}
    assert got == {("payment_latency_high", "payment", "firing", "warning"), ("critical_module_error_rate", "payment", "firing", "warning")}
