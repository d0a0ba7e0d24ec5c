"""End to end with real processes: a collector daemon with an `alerting:` section and a real agent; notifications reach
an aiohttp server (webhook, DingTalk, WeCom, Feishu — signatures verified) and an aiosmtpd server, all on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from typing import Any, Callable


from checks.model import Batch, encode_batch, new_batch_id
from tests.alerting.conftest import DING_SECRET, FEISHU_SECRET, WEBHOOK_SECRET, Receiver
from tests.alerting.helpers import exc
from tests.e2e.procs import Stack
from tests.servers.net import free_port
from tests.servers.smtp import SmtpServer

ADMIN = "e2e-admin-token"


def collector_alerting(recv: Receiver, smtp: SmtpServer, rules_file: Path) -> str:
    cfg = {
        "admin_tokens": [ADMIN],
        "alerting": {
            "evaluation_interval": 0.5,
            "default_rules": False,
            "rule_files": [str(rules_file)],
            "receivers": [{
                "name": "ops",
                "notifiers": [
                    {"type": "webhook", "url": f"{recv.url}/webhook", "secret": WEBHOOK_SECRET},
                    {"type": "dingtalk", "url": f"{recv.url}/dingtalk", "access_token": "tok", "secret": DING_SECRET, "at_mobiles": ["13800138000"]},
                    {"type": "wecom", "url": f"{recv.url}/wecom", "key": "k1", "mentioned_mobile_list": ["13800138000"]},
                    {"type": "feishu", "url": f"{recv.url}/feishu/hook/x", "secret": FEISHU_SECRET},
                    {"type": "email", "host": smtp.host, "port": smtp.port, "security": "none", "from": "iw@example.org", "to": ["ops@example.org"]},
                ],
                "retry": {"initial_backoff": "100ms", "max_backoff": "1s"},
            }],
            "route": {"receiver": "ops", "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": "500ms", "repeat_interval": "1h"},
        },
    }
    return _yaml(cfg)


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, allow_unicode=True, sort_keys=False)


RULES = """rules:
  - name: host_down
    type: host_down
    after: 3s
  - name: probe_down
    type: probe
    failures: 2
    recover_after: 1
    window: 1m
  - name: payment_exception_burst
    type: exceptions
    match: {module: payment}
    window: 1m
    warning: 20
"""


def post_batch(stack: Stack, batch: Batch) -> int:
    req = urllib.request.Request(f"{stack.url}/api/v1/batches", data=encode_batch(batch), method="POST",
                                 headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


async def test_real_collector_and_agent(tmp_path: Path, receiver: Receiver, smtp_server_factory: Callable[..., SmtpServer]) -> None:
    smtp = smtp_server_factory()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    closed = free_port()
    stack = Stack(tmp_path, [{"type": "tcp", "name": "db", "target": f"127.0.0.1:{closed}", "timeout": 0.4}], interval=0.5,
                  collector_extra=collector_alerting(receiver, smtp, rules))
    try:
        await asyncio.to_thread(stack.start_collector)
        stack.agent.start()
        # the probe fails twice in a row → probe_down reaches every channel
        for vendor in ("webhook", "dingtalk", "wecom", "feishu"):
            await receiver.wait_for(vendor, 1, timeout=30)
        assert receiver.of("dingtalk")[0].signed_ok is True and receiver.of("feishu")[0].signed_ok is True
        assert receiver.of("webhook")[0].signed_ok is True
        assert receiver.of("webhook")[0].json["alerts"][0]["labels"]["alertname"] == "probe_down"
        assert "tcp 探测连续" in receiver.of("wecom")[0].json["markdown"]["content"]
        async with asyncio.timeout(10):
            while not smtp.messages:
                await asyncio.sleep(0.1)
        assert "probe_down" in smtp.messages[0][2]["Subject"]

        # a payment burst POSTed as a batch: below the threshold nothing, above it a message within seconds
        await asyncio.to_thread(post_batch, stack, Batch(new_batch_id(), "app1", time.time(), [], [exc(time.time(), count=20)]))
        await asyncio.sleep(1.5)
        assert not [r for r in receiver.of("webhook") if r.json["alerts"][0]["rule"] == "payment_exception_burst"]
        t0 = time.time()
        await asyncio.to_thread(post_batch, stack, Batch(new_batch_id(), "app1", time.time(), [], [exc(time.time(), count=5)]))
        async with asyncio.timeout(5):
            while not [r for r in receiver.of("webhook") if r.json["alerts"][0]["rule"] == "payment_exception_burst"]:
                await asyncio.sleep(0.02)
        print(f"payment burst → webhook through a real collector: {time.time() - t0:.3f}s")

        # the agent stops: host_down for its host; its probe alert is inhibited (app1, silent since its POSTs, goes down too)
        n_before = len(receiver.of("webhook"))
        await asyncio.to_thread(stack.agent.stop)
        async with asyncio.timeout(20):
            while not [r for r in receiver.of("webhook")[n_before:]
                       if r.json["alerts"][0]["rule"] == "host_down" and r.json["alerts"][0]["labels"]["host"] == stack.host]:
                await asyncio.sleep(0.1)
        alerts = await asyncio.to_thread(stack.get, "/api/v1/alerts")
        probe = next(a for a in alerts["alerts"] if a["rule"] == "probe_down")
        assert probe["state"] == "firing" and probe["inhibited_by"] == "host_down", alerts

        # SIGHUP with an invalid rule file: rejected, the old rules kept
        rules.write_text(RULES + "  - name: broken\n    type: threshold\n")
        os.kill(stack.collector.pid, signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert stack.collector.alive()
        names = [r["name"] for r in (await asyncio.to_thread(stack.get, "/api/v1/rules"))["rules"]]
        assert names == ["host_down", "probe_down", "payment_exception_burst"]
        assert "reload rejected" in stack.collector.output() and "rule 'broken'" in stack.collector.output()
        # and the delivery log shows every channel delivered
        log = (await asyncio.to_thread(stack.get, "/api/v1/notifications", limit="200"))["notifications"]
        assert {x["integration"] for x in log if x["outcome"] == "sent"} >= {"ops/webhook", "ops/dingtalk", "ops/wecom", "ops/feishu", "ops/email"}

        # the collector restarts while host_down and probe_down fire: no second "firing" message for them ...
        def firing_about(since: int) -> list[tuple[str, str]]:
            return [(a["rule"], a["labels"].get("host", "")) for r in receiver.of("webhook")[since:] if r.json["status"] == "firing"
                    for a in r.json["alerts"] if a["rule"] == "probe_down" or a["labels"].get("host") in (stack.host, "app1")]

        n = len(receiver.of("webhook"))
        await asyncio.to_thread(stack.collector.stop)
        # (started with the broken rule file, the collector would refuse to run, naming the file, line, rule and field)
        from collector.config import load_collector_config
        from checks.config import ConfigError

        with pytest.raises(ConfigError) as ei:
            load_collector_config(tmp_path / "collector.yaml")
        assert f"{rules}:15: rules[3].metric: rule 'broken': is required" in str(ei.value)
        rules.write_text(RULES)
        await asyncio.to_thread(stack.start_collector)
        await asyncio.sleep(2.0)
        assert firing_about(n) == []
        # ... and when the agent is back, host_down resolves with exactly one message; the probe alert stays quiet
        stack.agent.start()
        async with asyncio.timeout(20):
            while not [r for r in receiver.of("webhook")[n:] if r.json["status"] == "resolved"
                       and any(a["rule"] == "host_down" and a["labels"]["host"] == stack.host for a in r.json["alerts"])]:
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        assert firing_about(n) == []
    finally:
        await asyncio.to_thread(stack.close)
