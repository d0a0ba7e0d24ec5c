"""Pipeline pieces on their own: routing tree, configured inhibition (gateway down), robot rate limits with merging."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alerting.config import RetryConfig, parse_alerting_config
from alerting.dispatch import DBWorker, Integration, Job
from alerting.inhibit import Inhibitor, compile_rules
from alerting.notifiers import build_notifier, parse_notifier_config
from alerting.notifiers.base import Notification, NotifierContext
from alerting.notifylog import DeliveryLog, Entry
from alerting.render import Renderer
from alerting.routing import build_route
from alerting.state import AlertDB
from tests.alerting.conftest import Receiver
from tests.alerting.test_notifiers import mk_alert


def test_route_tree_matching_and_inheritance() -> None:
    cfg = parse_alerting_config({
        "receivers": [{"name": n} for n in ("ops", "pay", "dba", "all")],
        "route": {"receiver": "ops", "group_by": ["alertname"], "group_wait": "10s", "repeat_interval": "2h", "routes": [
            {"matchers": ['module=~"payment|order"'], "receiver": "pay", "group_by": ["module"], "continue": True},
            {"matchers": {"severity": "critical"}, "receiver": "all", "repeat_interval": "30m",
             "routes": [{"matchers": ["team=dba"], "receiver": "dba"}]},
        ]},
    })
    root = build_route(cfg.route)  # type: ignore[arg-type]
    got = [(r.receiver, r.group_by, r.group_wait, r.repeat_interval) for r in root.match({"module": "payment", "severity": "critical"})]
    assert got == [("pay", ("module",), 10.0, 7200.0), ("all", ("alertname",), 10.0, 1800.0)]
    assert [r.receiver for r in root.match({"severity": "critical", "team": "dba"})] == ["dba"]
    assert [r.receiver for r in root.match({"severity": "warning"})] == ["ops"]


def test_configured_inhibition_gateway_down_mutes_hosts_behind_it() -> None:
    cfg = parse_alerting_config({"inhibit_rules": [
        {"name": "gateway_down", "source_matchers": ['alertname="probe_down"', 'role="gateway"'], "target_matchers": ['gateway!=""'],
         "equal": ["target=gateway"]},
    ]})
    inh = Inhibitor(compile_rules(cfg.inhibit_rules, default_inhibit=True))
    gw = mk_alert(1, alertname="probe_down", role="gateway", target="gw1")
    behind = mk_alert(2, alertname="host_down", gateway="gw1")
    other = mk_alert(3, alertname="host_down", gateway="gw2")
    same_host = mk_alert(4, alertname="cpu_high")
    same_host.labels["host"] = "db009"
    hd = mk_alert(5, alertname="host_down")
    hd.labels["host"] = "db009"
    hd.details = {"type": "host_down"}
    inh.refresh([gw, behind, other, same_host, hd])
    assert inh.muted_by(behind) == "gateway_down"
    assert inh.muted_by(other) is None
    assert inh.muted_by(gw) is None
    assert inh.muted_by(same_host) == "host_down"  # built-in: a host that is down mutes its other alerts
    assert inh.muted_by(hd) is None  # but not itself


async def test_robot_rate_limit_queues_and_merges(tmp_path: Path, receiver: Receiver) -> None:
    """20 messages a minute for robots: beyond that, queued messages wait and are merged into one."""
    cfg = parse_notifier_config({"type": "dingtalk", "url": receiver.url + "/dingtalk", "access_token": "t", "rate_limit": 2}, "n")
    n = build_notifier(cfg, NotifierContext(Renderer("zh-CN")))
    assert build_notifier(parse_notifier_config({"type": "wecom", "key": "k"}, "n"), NotifierContext(Renderer())).rate_limit == 20
    db = AlertDB(str(tmp_path / "a.db"))
    dbw = DBWorker()
    done: list[Job] = []

    async def on_done(job: Job, ok: bool) -> None:
        done.append(job)

    integ = Integration("ops", 0, n, RetryConfig(), db=dbw, deliveries=DeliveryLog(db), on_done=on_done)
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:  # the minute-long wait is recorded, not slept
        waits.append(s)
        integ._sent.clear()

    integ.sleep = fake_sleep  # type: ignore[assignment]
    task = asyncio.create_task(integ.run())
    try:
        for i in range(5):
            integ.submit(Job(Notification("ops", "firing", [mk_alert(i)], f"g{i}"), [(f"k{i}", Entry())]))
        async with asyncio.timeout(10):
            while len(done) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        dbw.shutdown()
    assert len(receiver.of("dingtalk")) == 3
    assert len(waits) == 1 and 0 < waits[0] <= 60.01
    merged = receiver.of("dingtalk")[2].json["markdown"]["text"]
    assert "3 条通知已合并为一条" in merged
    assert sorted(k for k, _e in done[2].updates) == ["k2", "k3", "k4"]
