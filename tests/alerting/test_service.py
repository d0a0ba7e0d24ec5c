"""The alerting extension end to end on loopback: batches in through after_commit, notifications out to real HTTP receivers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from tests.alerting.conftest import Receiver
from tests.alerting.harness import MemStore, running, section, webhook
from tests.alerting.helpers import exc

BURST = {"name": "payment_exception_burst", "type": "exceptions", "match": {"module": "payment"}, "window": 2, "warning": 5, "critical": 100}
GAUGE = {"name": "queue_high", "type": "threshold", "metric": "app.queue.depth", "window": 60, "agg": "last", "warning": 10, "recovery": 5}


def statuses(recv: Receiver, vendor: str = "webhook") -> list[str]:
    return [r.json["status"] for r in recv.of(vendor)]


async def test_payment_burst_notified_on_arrival_then_one_resolve(tmp_path: Path, receiver: Receiver) -> None:
    # a long evaluation interval: only on-arrival evaluation can be quick
    raw = section([webhook("ops", receiver.url)], [BURST], evaluation_interval=30)
    async with running(tmp_path, raw) as h:
        await h.send("app1", events=[exc(time.time()) for _ in range(3)])
        await h.send("app1", events=[exc(time.time(), module="order", count=50)])
        await asyncio.sleep(0.5)
        assert receiver.of("webhook") == []  # below the threshold: nothing
        t_sent = time.time()
        await h.send("app1", events=[exc(time.time(), count=3)])  # 6 > 5
        (r,) = await receiver.wait_for("webhook", 1, timeout=5.0)
        assert r.json["status"] == "firing" and r.json["alerts"][0]["labels"]["module"] == "payment"
        assert r.json["alerts"][0]["value"] == 6.0
        print(f"burst → webhook latency {r.ts - t_sent:.3f}s")
        # the window (2 s) passes; the periodic evaluation is 30 s away, so speed it up for the resolve
        h.ext.engine.interval = 0.1
        for rule in h.ext.engine.rules:
            rule.next_eval = 0
        h.ext._kick.set()  # type: ignore[union-attr]
        await receiver.wait_for("webhook", 2, timeout=10.0)
        await asyncio.sleep(1.0)
        assert statuses(receiver) == ["firing", "resolved"]


async def test_grouping_group_wait_and_group_interval(tmp_path: Path, receiver: Receiver) -> None:
    route = {"receiver": "ops", "group_by": ["alertname"], "group_wait": 0.5, "group_interval": 0.6, "repeat_interval": 3600}
    async with running(tmp_path, section([webhook("ops", receiver.url)], [GAUGE], route)) as h:
        for host in ("a", "b", "c"):
            await h.send(host, [("app.queue.depth", 50, {})])
        (r,) = await receiver.wait_for("webhook", 1)
        assert sorted(a["labels"]["host"] for a in r.json["alerts"]) == ["a", "b", "c"]
        assert r.json["groupLabels"] == {"alertname": "queue_high"}
        await h.send("d", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 2)
        assert sorted(a["labels"]["host"] for a in receiver.of("webhook")[1].json["alerts"]) == ["a", "b", "c", "d"]
        # d joined the group: one message for the group, not one per alert


async def test_flapping_with_hysteresis_no_storm(tmp_path: Path, receiver: Receiver) -> None:
    async with running(tmp_path, section([webhook("ops", receiver.url)], [GAUGE])) as h:
        for i in range(30):
            await h.send("db1", [("app.queue.depth", 11 if i % 2 else 9, {})])  # around 10, never below the recovery 5
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert statuses(receiver) == ["firing"]
        for _ in range(5):
            await h.send("db1", [("app.queue.depth", 1, {})])
            await asyncio.sleep(0.1)
        await receiver.wait_for("webhook", 2)
        await asyncio.sleep(0.3)
        assert statuses(receiver) == ["firing", "resolved"]


async def test_restart_while_firing_no_duplicate_and_resolve_later(tmp_path: Path, receiver: Receiver) -> None:
    raw = section([webhook("ops", receiver.url)], [GAUGE])
    store = MemStore(str(tmp_path / "store.db"))
    async with running(tmp_path, raw, store) as h:
        await h.send("db1", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 1)
        fired = (await h.alerts(state="firing"))[0]
    # the collector restarts; data keeps arriving above the threshold
    async with running(tmp_path, raw, store) as h:
        a = (await h.alerts())[0]
        assert a["id"] == fired["id"] and a["state"] == "firing" and a["firing_since"] == fired["firing_since"]
        for _ in range(8):
            await h.send("db1", [("app.queue.depth", 50, {})])
            await asyncio.sleep(0.1)
        assert statuses(receiver) == ["firing"]
    async with running(tmp_path, raw, store) as h:
        await h.send("db1", [("app.queue.depth", 0, {})])
        await receiver.wait_for("webhook", 2)
        await asyncio.sleep(0.3)
        assert statuses(receiver) == ["firing", "resolved"]
        assert receiver.of("webhook")[1].json["alerts"][0]["id"] == fired["id"]


async def test_receiver_500_retried_400_not(tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.script["webhook"] = [500, 503]
    receiver.script["webhook2"] = [400]
    raw = section([webhook("ops", receiver.url), webhook("dev", receiver.url, "webhook2")], [GAUGE],
                  {"receiver": "ops", "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": 0.2, "repeat_interval": 3600,
                   "routes": [{"matchers": {"host": "dev1"}, "receiver": "dev"}]})
    caplog.set_level(logging.INFO, "alerting")
    async with running(tmp_path, raw) as h:
        await h.send("web1", [("app.queue.depth", 50, {})])
        await h.send("dev1", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 3)
        await receiver.wait_for("webhook2", 1)
        await asyncio.sleep(0.6)
        assert len(receiver.of("webhook")) == 3 and len(receiver.of("webhook2")) == 1  # 400: one attempt only
        log = (await h.api("GET", "/api/v1/notifications"))["notifications"]
        ok = next(x for x in log if x["receiver"] == "ops")
        bad = next(x for x in log if x["receiver"] == "dev")
        assert (ok["outcome"], ok["attempts"]) == ("sent", 3)
        assert (bad["outcome"], bad["attempts"], bad["retryable"]) == ("failed", 1, False)
        assert "answered HTTP 400" in bad["error"]
        assert (await h.api("GET", "/api/v1/notifications?outcome=failed"))["count"] == 1
    msgs = [r for r in caplog.records if r.getMessage().startswith("notification failed (not retryable)")]
    assert msgs and "HTTP 400" in msgs[0].error  # type: ignore[attr-defined]


async def test_host_down_inhibits_that_hosts_probe_alerts(tmp_path: Path, receiver: Receiver) -> None:
    rules = [{"name": "host_down", "type": "host_down", "after": 0.5},
             {"name": "probe_down", "type": "probe", "failures": 2, "recover_after": 1, "window": 30}]
    async with running(tmp_path, section([webhook("ops", receiver.url)], rules)) as h:
        await h.send("web1")
        await h.send("mon")
        # web1 stops; the monitor keeps reporting
        async def monitor(up: float, n: int) -> None:
            for _ in range(n):
                await h.send("mon", [("ping.up", up, {"host": "web1", "target": "web1", "result": "success" if up else "timeout"})])
                await asyncio.sleep(0.1)

        await monitor(1, 8)
        (r,) = await receiver.wait_for("webhook", 1)
        assert r.json["alerts"][0]["labels"] == {"alertname": "host_down", "host": "web1", "severity": "critical"}
        await monitor(0, 4)
        probe = await h.wait_alert(lambda a: a["rule"] == "probe_down" and a["state"] == "firing")
        assert probe["labels"]["host"] == "web1" and probe["inhibited_by"] == "host_down"
        await monitor(0, 5)
        assert statuses(receiver) == ["firing"]  # the probe alert is muted while its host is down
        # web1 is back: host_down resolves and the still-failing probe speaks
        await h.send("web1")
        await monitor(0, 3)
        await receiver.wait_for("webhook", 3)
        got = sorted((r.json["status"], r.json["alerts"][0]["rule"]) for r in receiver.of("webhook")[1:])
        assert got == [("firing", "probe_down"), ("resolved", "host_down")]


async def test_silence_and_ack_stop_notifications(tmp_path: Path, receiver: Receiver) -> None:
    route = {"receiver": "ops", "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": 0.1, "repeat_interval": 0.3}
    async with running(tmp_path, section([webhook("ops", receiver.url)], [GAUGE], route)) as h:
        sil = (await h.api("POST", "/api/v1/silences", {"matchers": ['host="web1"'], "duration": "1m", "created_by": "alice",
                                                         "comment": "maintenance"}, write=True, status=201))["silence"]
        assert sil["status"] == "active"
        await h.api("POST", "/api/v1/silences", {"matchers": ["host=web1"], "duration": "1m"}, status=403)  # read token only
        await h.api("POST", "/api/v1/silences", {"matchers": ['host=~".*"'], "duration": "1m"}, write=True, status=400)
        for _ in range(8):
            await h.send("web1", [("app.queue.depth", 50, {})])
            await asyncio.sleep(0.1)
        a = (await h.alerts(state="firing"))[0]
        assert a["silenced_by"] == sil["id"]
        assert receiver.of("webhook") == []
        assert [s["id"] for s in (await h.api("GET", "/api/v1/silences?status=active"))["silences"]] == [sil["id"]]
        await h.api("DELETE", f"/api/v1/silences/{sil['id']}", write=True)
        await receiver.wait_for("webhook", 2, timeout=5)  # notified, then repeated every 0.3 s
        ack = await h.api("POST", f"/api/v1/alerts/{a['id'][:8]}/ack", {"by": "bob", "comment": "on it"}, write=True)
        assert ack["ack"]["by"] == "bob"
        n = len(receiver.of("webhook"))
        for _ in range(10):
            await h.send("web1", [("app.queue.depth", 50, {})])
            await asyncio.sleep(0.1)
        assert len(receiver.of("webhook")) <= n + 1  # at most one already in flight when the ack arrived
        a = (await h.alerts())[0]
        assert a["ack"]["by"] == "bob" and a["ack"]["comment"] == "on it"
        await h.api("POST", f"/api/v1/alerts/{a['id']}/ack", {"comment": "x"}, write=True, status=400)
        await h.api("POST", "/api/v1/alerts/ffffffffff/ack", {"by": "x"}, write=True, status=404)


async def test_escalation_when_nobody_acknowledges(tmp_path: Path, receiver: Receiver) -> None:
    route = {"receiver": "ops", "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": 0.1, "repeat_interval": 3600,
             "escalate": [{"after": 0.8, "receiver": "boss"}]}
    raw = section([webhook("ops", receiver.url), webhook("boss", receiver.url, "webhook2")], [GAUGE], route)
    async with running(tmp_path, raw) as h:
        await h.send("web1", [("app.queue.depth", 50, {})])
        await h.send("web2", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 2)
        acked = next(a for a in await h.alerts() if a["labels"]["host"] == "web2")
        await h.api("POST", f"/api/v1/alerts/{acked['id']}/ack", {"by": "carol"}, write=True)
        for _ in range(15):
            await h.send("web1", [("app.queue.depth", 50, {})])
            await h.send("web2", [("app.queue.depth", 50, {})])
            await asyncio.sleep(0.1)
        esc = receiver.of("webhook2")
        assert len(esc) == 1
        assert [a["labels"]["host"] for a in esc[0].json["alerts"]] == ["web1"]
        assert "[升级]" in esc[0].json["title"]


async def test_sighup_reload_rejects_invalid_file_and_keeps_rules(tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    rf = tmp_path / "rules.yaml"
    rf.write_text("rules:\n  - name: queue_high\n    type: threshold\n    metric: app.queue.depth\n    warning: 10\n")
    raw = section([webhook("ops", receiver.url)], [], rule_files=["rules.yaml"])
    async with running(tmp_path, raw, config_file=str(tmp_path / "collector.yaml")) as h:
        assert [r["name"] for r in (await h.api("GET", "/api/v1/rules"))["rules"]] == ["queue_high"]
        rf.write_text("rules:\n  - name: queue_high\n    type: threshold\n    metric: app.queue.depth\n    warning: 10\n"
                      "  - name: broken\n    type: threshold\n    metric: app.queue.depth\n    warnin: 5\n")
        caplog.set_level(logging.ERROR, "alerting")
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(5):
            while not any("reload rejected" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
        err = next(r for r in caplog.records if "reload rejected" in r.getMessage()).error  # type: ignore[attr-defined]
        assert str(rf) in err and "rules[1].warnin" in err and "rule 'broken'" in err and ":9:" in err
        assert [r["name"] for r in (await h.api("GET", "/api/v1/rules"))["rules"]] == ["queue_high"]
        # the old rules still work
        await h.send("web1", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 1)
        rf.write_text("rules:\n  - name: queue_high\n    type: threshold\n    metric: app.queue.depth\n    warning: 100\n"
                      "  - name: queue_low\n    type: threshold\n    metric: app.queue.depth\n    op: '<'\n    warning: 1\n")
        res = await h.api("POST", "/api/v1/rules/reload", write=True)
        assert res["ok"] and res["message"] == "2 rules loaded"
        await h.send("web1", [("app.queue.depth", 50, {})])
        await receiver.wait_for("webhook", 2)  # 50 is below the new warning 100: resolved
        assert statuses(receiver) == ["firing", "resolved"]


async def test_api_filters_and_receiver_test(tmp_path: Path, receiver: Receiver) -> None:
    async with running(tmp_path, section([webhook("ops", receiver.url)], [GAUGE, BURST])) as h:
        await h.send("web1", [("app.queue.depth", 50, {})], [exc(time.time(), count=10)])
        await h.wait_alert(lambda a: a["rule"] == "payment_exception_burst")
        await h.wait_alert(lambda a: a["rule"] == "queue_high")
        assert [a["rule"] for a in await h.alerts(module="payment")] == ["payment_exception_burst"]
        assert {a["rule"] for a in await h.alerts(state="firing", host="web1")} == {"queue_high"}  # the burst is per module
        assert (await h.api("GET", "/api/v1/alerts?state=bogus", status=400))["error"].startswith("state must be one of")
        one = (await h.alerts(rule="queue_high"))[0]
        got = (await h.api("GET", f"/api/v1/alerts/{one['id']}"))["alert"]
        assert got["source"] == "alerting.rules[0]" and got["details"]["metric"] == "app.queue.depth"
        res = await h.api("POST", "/api/v1/receivers/ops/test", write=True)
        assert res["ok"] and res["results"][0]["ok"]
        test_msgs = [r for r in receiver.of("webhook") if r.json["test"]]
        assert len(test_msgs) == 1 and "测试" in test_msgs[0].json["title"]
        await h.api("POST", "/api/v1/receivers/nobody/test", write=True, status=404)
        log = (await h.api("GET", "/api/v1/notifications?receiver=ops"))["notifications"]
        assert any(x["group_key"] == "test" and x["outcome"] == "sent" for x in log)
        # internal metric for the eval cycle
        assert any(s.name == "alerting.eval.duration_seconds" for s in h.emitted)
