"""Web console fixtures: a real collector (up mode) on loopback seeded with real batches, and a headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import gzip
import math
import sqlite3
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from checks.model import Batch, Event, Sample, encode_batch, new_batch_id
from collector.config import CollectorConfig, collector_config_from_dict
from collector.main import run_collector
from collector.store import STORE_FILE
from tests.servers.net import free_port, wait_port
from tests.web.cdp import CHROMIUM, Browser, Tab

AGENT_TOKEN = "web-test-agent-token"
#: an application exception whose message tries to inject markup into the page
XSS_MESSAGE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> user <b>id</b> not found'
CPU_NOW = {"web-01": 42.5, "db-01": 87.25, "cache-01": 12.0, "web-02": 38.0, "web-03": 51.5, "mq-01": 23.0, "es-01": 64.0,
           "batch-01": 5.5}
#: hosts whose last report the seed moves into the past: stale (延迟) and down (离线)
AGED = {"mq-01": 120.0, "batch-01": 900.0}


@dataclass
class Collector:
    url: str
    data_dir: Path


def _post(url: str, batch: Batch) -> None:
    req = urllib.request.Request(
        f"{url}/api/v1/batches", data=gzip.compress(encode_batch(batch)), method="POST",
        headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Encoding": "gzip", "Content-Type": "application/json",
                 "User-Agent": "infrawatch-agent/0.9.2"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.read()


def host_samples(host: str, now: float, phase: float) -> list[Sample]:
    """An hour of system metrics every 30 s; the last two minutes of CPU sit exactly at CPU_NOW[host]."""
    out: list[Sample] = []
    t = {"host": host}
    for i in range(120):
        ts = now - 3600 + i * 30
        w = math.sin(i / 9 + phase)
        cpu = CPU_NOW[host] if ts > now - 120 else max(1.0, CPU_NOW[host] * 0.7 + 12 * w + 4 * math.sin(i / 2.3))
        out += [
            Sample("system.cpu.usage_percent", cpu, ts, {**t, "cpu": "total"}),
            Sample("system.cpu.user_percent", cpu * 0.7, ts, {**t, "cpu": "total"}),
            Sample("system.cpu.system_percent", cpu * 0.2, ts, {**t, "cpu": "total"}),
            Sample("system.cpu.iowait_percent", cpu * 0.1, ts, {**t, "cpu": "total"}),
            Sample("system.memory.used_percent", 38 + (phase * 13) % 45 + 8 * math.sin(i / 30 + phase), ts, t),
            Sample("system.load.1m", 1.2 + w + phase, ts, t),
            Sample("system.load.5m", 1.1 + w / 2 + phase, ts, t),
            Sample("system.load.15m", 1.0 + w / 4 + phase, ts, t),
            Sample("system.filesystem.used_percent", 41 + i / 40, ts, {**t, "mountpoint": "/", "device": "sda1", "fstype": "ext4"}),
            Sample("system.filesystem.used_percent", 30 + (phase * 17) % 62, ts, {**t, "mountpoint": "/data", "device": "sdb1", "fstype": "xfs"}),
            Sample("system.disk.read_bytes_per_second", 2e6 * (1.2 + w), ts, {**t, "device": "sda"}),
            Sample("system.disk.write_bytes_per_second", 5e6 * (1.1 + math.cos(i / 7)), ts, {**t, "device": "sda"}),
            Sample("system.network.rx_bytes_per_second", 8e6 * (1.3 + w), ts, {**t, "interface": "eth0"}),
            Sample("system.network.tx_bytes_per_second", 3e6 * (1.2 + math.cos(i / 5)), ts, {**t, "interface": "eth0"}),
            Sample("system.network.rx_bytes_per_second", 1e3, ts, {**t, "interface": "lo"}),
            Sample("system.cpu.count", 8, ts, t),
            Sample("system.memory.total_bytes", 32 * 2**30, ts, t),
            Sample("system.uptime_seconds", 86400 * 12 + i * 30, ts, t),
        ]
    return out


def app_readings(now: float) -> list[Sample | Event]:
    """Exceptions and API/SQL timings through the agent's real aggregator, as an instrumented app would send them."""
    from agent.aggregate import REQUEST, SQL, Aggregator

    agg = Aggregator(slowest=3)
    stack = (
        "Traceback (most recent call last):\n"
        '  File "/srv/shop/orders/views.py", line 88, in create_order\n'
        "    user = users.get(user_id)\n"
        '  File "/srv/shop/users/repo.py", line 41, in get\n'
        "    raise LookupError(f\"<script>alert('x')</script> user {user_id} not found\")\n"
        "LookupError: " + XSS_MESSAGE
    )
    frames = [{"file": "/srv/shop/orders/views.py", "line": 88, "function": "create_order"},
              {"file": "/srv/shop/users/repo.py", "line": 41, "function": "get"}]
    agg.add_exception("LookupError", XSS_MESSAGE, frames=frames, stack=stack, count=37, service="shop-api", module="orders",
                      endpoint="POST /api/orders", ts=now - 30)
    agg.add_exception("TimeoutError", "redis GET session:* timed out after 2.0s", count=12, service="shop-api", module="session",
                      stack='  File "/srv/shop/session.py", line 19, in load\nTimeoutError: redis GET timed out after 2.0s', ts=now - 200)
    agg.add_exception("KeyError", "'sku'", count=4, service="shop-worker", module="inventory",
                      stack='  File "/srv/shop/inventory/sync.py", line 57, in apply\nKeyError: \'sku\'', ts=now - 900)
    for i in range(400):
        agg.add_timing(REQUEST, 0.02 + (i % 50) / 400, service="shop-api", module="orders", endpoint="POST /api/orders", error=i % 40 == 0, ts=now - 60)
        agg.add_timing(REQUEST, 0.004 + (i % 10) / 2000, service="shop-api", module="catalog", endpoint="GET /api/products/{id}", ts=now - 60)
        agg.add_timing(SQL, 0.001 + (i % 25) / 1000, service="shop-api", module="orders", db="shop",
                       statement=f"SELECT * FROM orders WHERE user_id = {i} AND status = 'open'", ts=now - 60)
    agg.add_timing(SQL, 1.8, service="shop-api", module="orders", db="shop",
                   statement="UPDATE stock SET qty = qty - 1 WHERE sku = 'A-1'", ts=now - 60)
    return agg.flush(now - 5)


def seed(url: str, data_dir: Path, hosts: tuple[str, ...] = tuple(CPU_NOW)) -> None:
    now = time.time()
    for phase, host in enumerate(hosts):
        ss = host_samples(host, now - AGED.get(host, 0.0), phase * 0.7)
        for i in range(0, len(ss), 2000):
            _post(url, Batch(new_batch_id(), host, now, ss[i : i + 2000]))
    _post(url, Batch(new_batch_id(), "db-01", now, [], [
        Event("probe.failure", now - 400, "tcp 10.0.0.9:5432 connection refused", {"host": "db-01", "check": "pg"},
              {"result": "connection_failed", "target": "10.0.0.9:5432"}),
        Event("check.error", now - 1300, "redis: timed out after 5s", {"host": "db-01", "check": "redis"}, {"error": "timeout"}),
    ]))
    rs = app_readings(now)
    _post(url, Batch(new_batch_id(), "web-01", now, [r for r in rs if isinstance(r, Sample)], [r for r in rs if isinstance(r, Event)]))
    # a host's last report is when its batch arrived: move two of them back in time, as if their agents had gone quiet
    with contextlib.closing(sqlite3.connect(data_dir / STORE_FILE, timeout=10)) as db, db:
        for host, age in AGED.items() if set(AGED) <= set(hosts) else ():
            db.execute("UPDATE hosts SET last_seen = ? WHERE host = ?", (now - age, host))


@contextlib.contextmanager
def serve_collector(cfg: CollectorConfig, *, up_mode: bool) -> Iterator[str]:
    """Run a real collector (run_collector) in its own thread and event loop; yields its base URL."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run_collector(cfg, stop, up_mode=up_mode))
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)
        finally:
            loop.close()

    th = threading.Thread(target=run, name="web-collector", daemon=True)
    th.start()
    try:
        wait_port(cfg.listen_host, cfg.listen_port)
        yield f"http://{cfg.listen}"
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        th.join(30)
    assert not errors, errors


def make_config(data: Path, **extra: Any) -> CollectorConfig:
    return collector_config_from_dict({
        "listen": f"127.0.0.1:{free_port()}", "data_dir": str(data), "agents": [{"name": "*", "token": AGENT_TOKEN}],
        "self_metrics_interval": 0, "hostname": "iw-collector", **extra,
    })


@pytest.fixture(scope="session")
def web_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """`infrawatch up`-style collector (read API open on loopback, no alerting section) with seeded data."""
    data = tmp_path_factory.mktemp("web-collector")
    with serve_collector(make_config(data), up_mode=True) as url:
        seed(url, data)
        yield Collector(url, data)


#: alert rules for the alerts page: db-01 (CPU 87.25) fires at once; web-01 and db-01 (above 40 %) stay pending
ALERT_RULES = [
    {"name": "cpu_busy", "type": "threshold", "metric": "system.cpu.usage_percent", "match": {"cpu": "total"},
     "window": "5m", "agg": "last", "warning": 80, "critical": 95, "annotations": {"summary": "CPU {{ value }}% <b>busy</b>"}},
    {"name": "cpu_elevated", "type": "threshold", "metric": "system.cpu.usage_percent", "match": {"cpu": "total"},
     "window": "5m", "agg": "last", "warning": 40, "for": "1h"},
]


@pytest.fixture(scope="session")
def alerting_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    data = tmp_path_factory.mktemp("web-alerting")
    # the receiver's webhook points at a loopback port nobody listens on: its deliveries fail, visibly
    receivers = [{"name": "ops", "notifiers": [{"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook"}],
                  "retry": {"max_attempts": 1}}]
    cfg = make_config(data, alerting={"evaluation_interval": "1s", "default_rules": False, "rules": ALERT_RULES,
                                      "receivers": receivers, "route": {"receiver": "ops", "group_wait": "0s"}})
    with serve_collector(cfg, up_mode=True) as url:
        seed(url, data, ("web-01", "db-01", "cache-01"))
        yield Collector(url, data)


READ_TOKEN = "web-read-token-123"


@pytest.fixture(scope="session")
def token_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A production-style collector: reading needs a token even on loopback."""
    data = tmp_path_factory.mktemp("web-token")
    with serve_collector(make_config(data, read_tokens=[READ_TOKEN]), up_mode=False) as url:
        seed(url, data, ("web-01", "db-01", "cache-01"))
        yield Collector(url, data)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package `chromium` (.ci/packages.d/web.txt)")
    b = Browser()
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    """A fresh browser tab; the test fails if any page script threw."""
    async with aiohttp.ClientSession() as s:
        t = await browser.new_tab(s)
        yield t
        assert t.exceptions() == [], "the page threw: " + json.dumps(t.exceptions())[:2000]
        assert t.csp_violations() == []
        await t.close()


async def open_page(t: Tab, url: str, page: str, *, fresh: bool = False) -> None:
    """A real page load (not only a hash change); `fresh` first empties the origin's localStorage (language, token)."""
    if fresh:
        u = urlsplit(url)
        await open_page(t, f"{u.scheme}://{u.netloc}/ui/", "")
        await t.eval("localStorage.clear(), true")
    await t.goto("about:blank")
    await t.wait_for("location.href === 'about:blank'")
    await t.goto(url)
    await t.wait_for(f"document.body && document.body.dataset.ready === {json.dumps(page)}" if page else
                     "document.body && !!document.body.dataset.ready")


async def text(t: Tab, selector: str) -> str:
    return await t.eval(f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent")
