"""The exceptions' fast lane: with the agent's defaults an exception reaches the collector within seconds,
while a storm stays bounded (exact counts, one event per group per fast flush, one sample stack per interval).

The collector is the agent tests' stand-in (a real aiohttp server on loopback speaking the batch API, see
tests/agent/conftest.py): it records every batch, and can be told to fail to drive the backoff path.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from agent.aggregate import Aggregator
from agent.buffer import Buffer
from agent.config import parse_agent_config
from agent.ingest import Config
from agent.main import Agent
from agent.shipper import Shipper
from checks.config import ConfigError, from_dict
from checks.model import Event, Sample
from tests.agent.conftest import TOKEN, StubCollector, make_config, wait_until
from tests.servers.net import free_port, wait_port


@pytest.fixture
async def stub() -> AsyncIterator[StubCollector]:
    st = StubCollector()
    app = web.Application()
    app.router.add_post("/api/v1/batches", st.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    st.url = f"http://127.0.0.1:{port}"
    try:
        yield st
    finally:
        await runner.cleanup()


def _exc_event(i: int = 0) -> dict[str, Any]:
    return {"type": "exception", "module": "payment",
            "exception": {"type": "CardDeclined", "message": f"card declined for order {i}",
                          "frames": [{"file": "/srv/shop/pay.py", "line": 7, "function": "charge", "module": "shop.pay", "in_app": True}],
                          "stack": "Traceback (most recent call last):\n  File \"/srv/shop/pay.py\", line 7, in charge\nCardDeclined: card declined"}}


def _post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    req = urllib.request.Request(url + "/v1/events", data=json.dumps({"service": "shop", "events": events}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 202
        return json.loads(r.read())


async def _default_agent(tmp_path: Path, stub: StubCollector) -> tuple[Agent, str]:
    """An agent with every default (shipping 5 s, aggregation 10 s, exception_flush 1 s) but ports and dirs."""
    port = free_port()
    cfg = parse_agent_config({
        "collector": {"url": stub.url, "token": TOKEN},
        "host": "fp-host",
        "state_dir": str(tmp_path / "state"),
        "checks": [{"type": "memory", "interval": "1h", "jitter": 0}],
        "local_ingest": {"listen": f"127.0.0.1:{port}"},
    })
    assert cfg.ship.flush_interval == 5 and cfg.local_ingest.interval == 10 and cfg.local_ingest.exception_flush == 1
    return Agent(cfg), f"http://127.0.0.1:{port}"


async def test_an_exception_reaches_the_collector_within_seconds_with_default_settings(tmp_path: Path, stub: StubCollector) -> None:
    agent, url = await _default_agent(tmp_path, stub)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.to_thread(wait_port, "127.0.0.1", int(url.rsplit(":", 1)[1]), 30)
        t0 = time.monotonic()
        assert (await asyncio.to_thread(_post, url, [_exc_event()]))["accepted"] == 1
        await wait_until(lambda: bool(stub.events("app.exception")), timeout=30, what="the exception at the collector")
        first = next(a for a in stub.attempts if a.batch and any(e.kind == "app.exception" for e in a.batch.events))
        # the defaults alone would take 10 s (aggregation) + 5 s (shipping); the fast lane takes about 0.3 s
        assert first.at - t0 < 4.0
        (ev,) = stub.events("app.exception")
        assert ev.tags["module"] == "payment" and ev.tags["host"] == "fp-host" and ev.data["count"] == 1
        assert "CardDeclined" in ev.data["stack"] and ev.data["frames"][0]["function"] == "charge"
    finally:
        stop.set()
        await task


async def test_a_storm_of_100000_exceptions_is_counted_exactly_in_few_events(tmp_path: Path, stub: StubCollector) -> None:
    agent, url = await _default_agent(tmp_path, stub)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.to_thread(wait_port, "127.0.0.1", int(url.rsplit(":", 1)[1]), 30)
        ev = _exc_event(42)
        for _ in range(20):
            assert (await asyncio.to_thread(_post, url, [ev] * 5_000))["accepted"] == 5_000
        await wait_until(lambda: sum(e.data["count"] for e in stub.events("app.exception")) >= 100_000, timeout=60,
                         what="100,000 exceptions at the collector")
        await asyncio.sleep(1.5)  # a late extra event would show up here
    finally:
        stop.set()
        await task
    evs = stub.events("app.exception")
    assert sum(e.data["count"] for e in evs) == 100_000  # exact: nothing lost, nothing counted twice
    assert len({e.data["fingerprint"] for e in evs}) == 1
    # bounded: one event per fast flush (at most one a second), never one per exception
    assert 1 <= len(evs) < 50
    # the sample stack travels once per aggregation interval, not with every event; every full (10 s) flush
    # during the storm also ships the moved app.ingest.events_total counter, which counts those intervals
    with_stack = [e for e in evs if e.data.get("stack")]
    full_flushes = len(stub.samples("app.ingest.events_total"))
    assert 1 <= len(with_stack) <= 1 + full_flushes
    assert len(with_stack) < len(evs) or len(evs) <= 1 + full_flushes
    assert stub.duplicates == 0


def test_fast_flushes_keep_exact_counts_and_one_stack_per_interval() -> None:
    agg = Aggregator()
    frames = [{"file": "/srv/pay.py", "line": 3, "function": "charge", "module": "pay", "in_app": True}]
    events: list[Any] = []
    for burst in range(10):  # 10 fast flushes of 10,000 identical exceptions each
        for _ in range(10_000):
            agg.add_exception("TimeoutError", "gateway timeout", frames=frames, stack="Traceback ...", module="payment")
        agg.add_timing("request", 0.1, endpoint="POST /pay")
        events += agg.flush_exceptions()
        assert len(agg.excs) == 0 and len(agg.perf) == 1  # timings wait for the full interval
    assert len(events) == 10 and sum(e.data["count"] for e in events) == 100_000
    assert [bool(e.data.get("stack")) for e in events] == [True] + [False] * 9
    assert all(e.data["type"] == "TimeoutError" and e.data["fingerprint"] == events[0].data["fingerprint"] for e in events)
    full = agg.flush()
    perf = [r for r in full if isinstance(r, Event) and r.kind == "app.perf"]
    assert len(perf) == 1 and perf[0].data["count"] == 10
    assert not [r for r in full if isinstance(r, Event) and r.kind == "app.exception"]  # nothing left over
    # a new interval: the group's first event carries the sample again
    agg.add_exception("TimeoutError", "gateway timeout", frames=frames, stack="Traceback ...", module="payment")
    (again,) = agg.flush_exceptions()
    assert again.data["stack"] == "Traceback ..." and again.data["frames"][0]["function"] == "charge"


def test_exception_flush_option_is_validated() -> None:
    assert from_dict(Config, {}, "local_ingest").exception_flush == 1.0
    assert from_dict(Config, {"exception_flush": "500ms"}, "local_ingest").exception_flush == 0.5
    assert from_dict(Config, {"exception_flush": 0}, "local_ingest").exception_flush == 0
    with pytest.raises(ConfigError, match="exception_flush"):
        from_dict(Config, {"exception_flush": -1}, "local_ingest")


async def test_only_exception_events_are_urgent(tmp_path: Path) -> None:
    agent = Agent(make_config(tmp_path, checks=[]))
    try:
        now = time.time()
        agent.submit([Sample("test.value", 1.0, now, {})])
        assert agent.shipper._urgent_due is None  # ordinary readings wait for ship.flush_interval
        agent.submit([Event("check.error", now, "boom", {"check": "c"}, {})])
        assert agent.shipper._urgent_due is None
        agent.submit([Event("app.exception", now, "E: x", {"module": "payment"}, {"type": "E", "count": 1})])
        assert agent.shipper._urgent_due is not None
    finally:
        agent._release()


async def test_urgent_readings_never_cut_a_backoff_short(tmp_path: Path, stub: StubCollector) -> None:
    stub.always = (503, {}, "down")
    cfg = make_config(tmp_path, stub.url, checks=[], ship={"backoff_initial": 0.5, "backoff_max": 1, "flush_interval": 5, "shutdown_timeout": 0.5})
    buf = Buffer(tmp_path / "state", cfg.buffer.max_bytes)
    sh = Shipper(cfg, buf)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    try:
        for i in range(60):  # 60 urgent submissions over ~3 s while the collector answers 503
            buf.append([Event("app.exception", time.time(), "E: x", {"module": "payment", "host": "h"}, {"type": "E", "count": 1})])
            sh.expedite()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        sh.close()
        buf.close()
    # the first urgent reading was tried promptly; the rest waited for the backoff (full jitter, ≤ 1 s)
    assert 1 <= len(stub.attempts) <= 20
    assert buf.stats.dropped == 0
