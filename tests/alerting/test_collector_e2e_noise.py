"""Noise control end to end with a real collector process: retries (500) and no retry (400), silences, acknowledgements,
escalation, hysteresis against flapping and the resolve after a payment burst — batches POSTed to /api/v1/batches,
changes made through the alerting API and CLI, notifications counted on a loopback aiohttp webhook server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from checks.model import Batch, Event, Sample, encode_batch, new_batch_id
from tests.alerting.conftest import Receiver
from tests.alerting.helpers import exc
from tests.e2e.procs import ROOT, Stack

ADMIN = "noise-admin-token"
#: a gauge with hysteresis: fires above 10, resolves only below 5
GAUGE = {"name": "queue_high", "type": "threshold", "metric": "app.queue.depth", "window": 60, "agg": "last", "warning": 10, "recovery": 5}


def webhook(name: str, url: str, path: str = "webhook") -> dict[str, Any]:
    return {"name": name, "notifiers": [{"type": "webhook", "url": f"{url}/{path}"}],
            "retry": {"initial_backoff": "100ms", "max_backoff": "500ms", "max_attempts": 10}}


def alerting_section(receivers: list[dict[str, Any]], rules: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    return {
        "evaluation_interval": 0.2,
        "default_rules": False,
        "rules": rules,
        "receivers": receivers,
        "route": {"receiver": receivers[0]["name"], "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": "200ms",
                  "repeat_interval": "1h", **route},
    }


class Collector:
    """A real collector subprocess (tests/e2e/procs.py Stack, no agent started) with an `alerting:` section."""

    def __init__(self, tmp: Path, alerting: dict[str, Any]) -> None:
        extra = yaml.safe_dump({"admin_tokens": [ADMIN], "alerting": alerting}, allow_unicode=True, sort_keys=False)
        self.stack = Stack(tmp, [], collector_extra=extra)
        self.url = self.stack.url

    async def __aenter__(self) -> "Collector":
        await asyncio.to_thread(self.stack.start_collector)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.to_thread(self.stack.collector.stop)

    def output(self) -> str:
        return self.stack.collector.output()

    async def post(self, agent: str, samples: list[tuple[str, float]] = (), events: list[Event] = ()) -> None:  # type: ignore[assignment]
        """POST one batch as an agent would (checks.model wire encoding)."""
        now = time.time()
        b = Batch(new_batch_id(), agent, now, [Sample(n, v, now, {}) for n, v in samples], list(events))
        req = urllib.request.Request(f"{self.url}/api/v1/batches", data=encode_batch(b), method="POST",
                                     headers={"Authorization": f"Bearer {self.stack.token}", "Content-Type": "application/json"})

        def send() -> int:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status

        status = await asyncio.to_thread(send)
        assert 200 <= status < 300, status

    async def api(self, method: str, path: str, body: Any = None, *, token: str = ADMIN) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

        def call() -> tuple[int, Any]:
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    return e.code, json.loads(raw)
                except ValueError:
                    return e.code, raw.decode(errors="replace")

        return await asyncio.to_thread(call)

    async def alerts(self) -> list[dict[str, Any]]:
        status, data = await self.api("GET", "/api/v1/alerts")
        assert status == 200, data
        return data["alerts"]

    async def wait_alert(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for a in await self.alerts():
                    if pred(a):
                        return a
                await asyncio.sleep(0.1)

    async def notifications(self, **q: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in {"limit": "200", **q}.items())
        status, data = await self.api("GET", f"/api/v1/notifications?{qs}")
        assert status == 200, data
        return data["notifications"]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run([sys.executable, "-m", "infrawatch.cli", *args, "--url", self.url, "--token", ADMIN],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def statuses(recv: Receiver, vendor: str = "webhook", host: str | None = None) -> list[str]:
    return [r.json["status"] for r in recv.of(vendor) if host is None or r.json["alerts"][0]["labels"].get("host") == host]


def of_host(recv: Receiver, host: str, vendor: str = "webhook") -> list[Any]:
    return [r for r in recv.of(vendor) if any(a["labels"].get("host") == host for a in r.json["alerts"])]


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(step)


async def test_receiver_500_retried_until_delivered_400_not_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.script["webhook"] = [500, 502, 503]  # down for three attempts, then it recovers
    receiver.script["webhook2"] = [(400, {"error": "bad payload"})]  # a permanent rejection
    raw = alerting_section([webhook("ops", receiver.url), webhook("dev", receiver.url, "webhook2")], [GAUGE],
                           routes=[{"matchers": {"host": "dev1"}, "receiver": "dev"}])
    async with Collector(tmp_path, raw) as c:
        await c.post("web1", [("app.queue.depth", 50)])
        await c.post("dev1", [("app.queue.depth", 50)])
        await receiver.wait_for("webhook", 4, timeout=20)
        await receiver.wait_for("webhook2", 1, timeout=20)
        await asyncio.sleep(1.5)  # room for any (wrong) further attempt
        ops = receiver.of("webhook")
        assert len(ops) == 4, [r.json["status"] for r in ops]  # 3 failures + the delivery, nothing more
        assert {r.json["alerts"][0]["labels"]["host"] for r in ops} == {"web1"}
        assert len({(r.json["status"], r.json["alerts"][0]["id"]) for r in ops}) == 1  # the same message retried
        assert len(receiver.of("webhook2")) == 1  # 400: one attempt only
        log = await c.notifications()
        sent = [x for x in log if x["receiver"] == "ops"]
        bad = [x for x in log if x["receiver"] == "dev"]
        assert [(x["outcome"], x["attempts"]) for x in sent] == [("sent", 4)], sent
        assert [(x["outcome"], x["attempts"], x["retryable"]) for x in bad] == [("failed", 1, False)], bad
        assert "HTTP 400" in bad[0]["error"], bad
        assert [x["receiver"] for x in await c.notifications(outcome="failed")] == ["dev"]
        out = c.output()
        assert "notification failed (not retryable)" in out and "HTTP 400" in out, out


async def test_silence_and_ack_stop_notifications(tmp_path: Path, receiver: Receiver) -> None:
    raw = alerting_section([webhook("ops", receiver.url)], [GAUGE], repeat_interval="500ms")
    async with Collector(tmp_path, raw) as c:
        body = {"matchers": ['host="web1"'], "duration": "10m", "created_by": "alice", "comment": "maintenance"}
        status, data = await c.api("POST", "/api/v1/silences", body, token=c.stack.read_token)
        assert status == 403, data  # a read token may not silence
        status, data = await c.api("POST", "/api/v1/silences", body)
        assert status == 201, data
        sil = data["silence"]
        # web1 is silenced; web2 (not silenced) shows that repeats do go out meanwhile
        await c.post("web1", [("app.queue.depth", 50)])
        await c.post("web2", [("app.queue.depth", 50)])
        a1 = await c.wait_alert(lambda a: a["labels"].get("host") == "web1" and a["state"] == "firing")
        assert a1["silenced_by"] == sil["id"]
        await wait_until(lambda: len(of_host(receiver, "web2")) >= 3)  # first message + two repeats for web2
        assert of_host(receiver, "web1") == []
        # the silence is expired: web1 is notified and repeated like web2
        status, data = await c.api("DELETE", f"/api/v1/silences/{sil['id']}")
        assert status == 200, data
        await wait_until(lambda: len(of_host(receiver, "web1")) >= 2)
        assert statuses(receiver, host="web1")[:2] == ["firing", "firing"]
        # acknowledged: no more repeats for web1, while web2 keeps repeating
        status, data = await c.api("POST", f"/api/v1/alerts/{a1['id']}/ack", {"by": "bob", "comment": "on it"})
        assert status == 200 and data["ack"]["by"] == "bob", data
        n1 = len(of_host(receiver, "web1"))
        n2 = len(of_host(receiver, "web2"))
        await wait_until(lambda: len(of_host(receiver, "web2")) >= n2 + 4)  # four more repeat intervals
        assert len(of_host(receiver, "web1")) <= n1 + 1  # at most one already in flight when the ack arrived
        a1 = next(a for a in await c.alerts() if a["id"] == a1["id"])
        assert a1["state"] == "firing" and a1["ack"]["by"] == "bob" and a1["ack"]["comment"] == "on it"
        sent = [x for x in await c.notifications() if any(a["labels"].get("host") == "web1" for a in x["alerts"])]
        assert len(sent) == len(of_host(receiver, "web1")) and all(x["outcome"] == "sent" for x in sent)


async def test_escalation_reaches_second_receiver_when_unacknowledged(tmp_path: Path, receiver: Receiver) -> None:
    raw = alerting_section([webhook("ops", receiver.url), webhook("boss", receiver.url, "webhook2")], [GAUGE],
                           escalate=[{"after": "4s", "receiver": "boss"}])
    async with Collector(tmp_path, raw) as c:
        await c.post("web1", [("app.queue.depth", 50)])
        await c.post("web2", [("app.queue.depth", 50)])
        await wait_until(lambda: of_host(receiver, "web1") != [] and of_host(receiver, "web2") != [])
        assert receiver.of("webhook2") == []
        # web2 is acknowledged through the CLI (by a unique id prefix) before its escalation is due
        a2 = next(a for a in await c.alerts() if a["labels"].get("host") == "web2")
        res = await asyncio.to_thread(c.cli, "ack", a2["id"][:8], "--by", "carol", "-m", "looking")
        assert res.returncode == 0, res.stderr
        assert "acknowledged by carol" in res.stdout, res.stdout
        a2 = next(a for a in await c.alerts() if a["id"] == a2["id"])
        assert a2["ack"]["at"] < a2["firing_since"] + 4, a2  # (else the check below would not mean anything)
        # nobody acknowledges web1: after 4 s the second receiver gets it, marked as an escalation
        (esc,) = await receiver.wait_for("webhook2", 1, timeout=20)
        assert esc.json["status"] == "firing" and esc.json["receiver"] == "boss"
        assert [a["labels"]["host"] for a in esc.json["alerts"]] == ["web1"]
        assert "[升级]" in esc.json["title"], esc.json["title"]
        await asyncio.sleep(1.5)
        assert len(receiver.of("webhook2")) == 1  # once, and never for the acknowledged web2
        assert [x["outcome"] for x in await c.notifications(receiver="boss")] == ["sent"]


async def test_flapping_around_threshold_with_hysteresis_no_storm(tmp_path: Path, receiver: Receiver) -> None:
    raw = alerting_section([webhook("ops", receiver.url)], [GAUGE])
    async with Collector(tmp_path, raw) as c:
        # around the threshold 10 for ~4 s (20 evaluation cycles), never below the recovery level 5
        for i in range(30):
            await c.post("db1", [("app.queue.depth", 11 if i % 2 == 0 else 9)])
            await asyncio.sleep(0.12)
        await asyncio.sleep(1.0)
        assert statuses(receiver) == ["firing"]
        a = (await c.alerts())[0]
        assert a["state"] == "firing" and a["labels"]["host"] == "db1"
        # a real recovery: exactly one resolve message
        for _ in range(5):
            await c.post("db1", [("app.queue.depth", 1)])
            await asyncio.sleep(0.12)
        await receiver.wait_for("webhook", 2, timeout=15)
        await asyncio.sleep(1.0)
        assert statuses(receiver) == ["firing", "resolved"]
        assert receiver.of("webhook")[1].json["alerts"][0]["id"] == a["id"]


async def test_payment_burst_then_exactly_one_resolve_after_window(tmp_path: Path, receiver: Receiver) -> None:
    burst = {"name": "payment_exception_burst", "type": "exceptions", "match": {"module": "payment"}, "window": "3s", "warning": 5}
    raw = alerting_section([webhook("ops", receiver.url)], [burst])
    async with Collector(tmp_path, raw) as c:
        # below the threshold (5 payment exceptions; 50 in another module): nothing
        await c.post("app1", events=[exc(time.time(), count=5), exc(time.time(), module="order", count=50)])
        await asyncio.sleep(1.0)
        assert receiver.of("webhook") == []
        # one more payment exception: above the threshold → notified
        await c.post("app1", events=[exc(time.time(), fp="fp2")])
        (r,) = await receiver.wait_for("webhook", 1, timeout=10)
        assert r.json["status"] == "firing" and r.json["alerts"][0]["labels"]["module"] == "payment"
        assert r.json["alerts"][0]["value"] == 6.0
        # the burst is over; once the window has passed, exactly one resolve message
        await receiver.wait_for("webhook", 2, timeout=15)
        await asyncio.sleep(1.5)
        assert statuses(receiver) == ["firing", "resolved"]
        assert receiver.of("webhook")[1].json["alerts"][0]["id"] == r.json["alerts"][0]["id"]
        (a,) = await c.alerts()
        assert a["state"] == "resolved"
