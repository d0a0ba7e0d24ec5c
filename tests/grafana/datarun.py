"""A real data run for the dashboard test: a real agent (system, ping, http, tcp checks, app timings) → a real collector → its InfluxDB sink → VictoriaMetrics."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from collector.sinks.base import SinkContext
from collector.sinks.influxdb import InfluxDBSink
from tests.servers.net import free_port
from tests.servers.tls import make_ca_files

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DataRun:
    host: str
    start: float
    end: float
    #: how the data got there (named in failure messages)
    mode: str
    #: infrawatch metric names this run produced
    produced: set[str] = field(default_factory=set)
    #: what the collector's embedded store holds after the run: (metric, host, tags) → [(ts_ms, value), ...]
    store: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = field(default_factory=dict)


def check_configs(http_port: int, https_port: int, ca_file: str) -> list[dict[str, Any]]:
    """What an agent on this host would run: the default system checks, ping of loopback, http and tcp probes."""
    return [
        {"type": "cpu"},
        {"type": "memory"},
        {"type": "disk"},
        {"type": "network"},
        {"type": "system"},
        {"type": "ping", "targets": ["127.0.0.1", "::1"], "count": 3, "echo_interval": 0.05, "echo_timeout": 0.5},
        {"type": "http", "name": "web", "target": f"http://127.0.0.1:{http_port}/"},
        {"type": "http", "name": "web-broken", "target": f"http://127.0.0.1:{http_port}/fail"},  # a failing probe: bad_status
        {"type": "http", "name": "web-tls", "target": f"https://localhost:{https_port}/", "tls_ca_file": ca_file},
        {"type": "tcp", "name": "tls-port", "target": f"localhost:{https_port}", "tls": True, "tls_ca_file": ca_file},
    ]


def app_readings() -> list[Any]:
    """What the agent's application aggregation (issue 4) flushes after an interval of API and SQL timings."""
    try:
        from agent.aggregate import REQUEST, SQL, Aggregator
    except ImportError:  # issue 4 not in this tree: the Performance panels then report what is missing
        return []
    agg = Aggregator()
    for i in range(200):
        agg.add_timing(REQUEST, 0.01 + (i % 20) * 0.005, service="shop", module="payment", endpoint="POST /pay", error=i % 50 == 0)
        agg.add_timing(REQUEST, 0.002 + (i % 10) * 0.001, service="shop", module="order", endpoint="GET /orders/{id}")
        agg.add_timing(SQL, 0.001 + (i % 7) * 0.0005, service="shop", module="order", db="orders",
                       statement=f"SELECT * FROM orders WHERE id = {i}")
    frames = [{"filename": "shop/pay.py", "function": "charge", "lineno": 42}]
    agg.add_exception("PaymentDeclined", "card declined", frames=frames, count=3, service="shop", module="payment")
    agg.add_exception("KeyError", "'sku'", frames=[{"filename": "shop/order.py", "function": "add", "lineno": 7}],
                      service="shop", module="order")
    return agg.flush()


async def _serve(app: web.Application, port: int, ssl_context: Any = None) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner


def _sink_runner(sink: InfluxDBSink, tmp: str, ctx: SinkContext) -> Any:
    """The collector's SinkRunner around the sink when it exists in this tree (its queue metrics then reach VM)."""
    try:
        from collector.sinkrunner import SinkRunner
    except ImportError:
        return None
    Path(tmp, "sinks").mkdir(exist_ok=True)
    return SinkRunner(sink, queue_path=str(Path(tmp, "sinks", "influxdb.db")), backoff_initial=0.1, backoff_max=1.0,
                      emit_metric=ctx.emit_metric)


async def agent_collector_sink(vm_url: str, seconds: float = 3.5) -> DataRun:
    """The whole path: a real agent ships to a real collector (collector.app.make_app) whose `influxdb`
    sink (behind the collector's SinkRunner) writes to VictoriaMetrics. The collector's self-metrics and
    the exceptions extension's app.exceptions.count reach VictoriaMetrics the same way."""
    from agent.config import parse_agent_config
    from agent.main import Agent
    from collector.app import CORE, make_app
    from collector.config import collector_config_from_dict

    host = f"iw-grafana-{uuid.uuid4().hex[:6]}"
    start = time.time()
    token = uuid.uuid4().hex

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="hello from infrawatch test")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text="broken on purpose")

    with tempfile.TemporaryDirectory(prefix="iw-grafana-") as tmp:
        collector_port = free_port()
        ccfg = collector_config_from_dict({
            "listen": f"127.0.0.1:{collector_port}",
            "data_dir": str(Path(tmp) / "collector"),
            "shared_token": token,
            "hostname": f"{host}-collector",
            "self_metrics_interval": 0.5,
            "sinks": [{"type": "influxdb", "url": vm_url, "batch_size": 500, "backoff_initial": 0.1, "backoff_max": 1.0}],
        })
        collector = make_app(ccfg)
        app = web.Application()
        app.router.add_get("/", ok)
        app.router.add_get("/fail", fail)
        tls = make_ca_files(Path(tmp) / "tls")
        http_port, https_port = free_port(), free_port()
        runners = [await _serve(collector, collector_port)]
        try:
            runners += [await _serve(app, http_port), await _serve(app, https_port, tls.server_context())]
            checks = [dict(c, interval=1.0) for c in check_configs(http_port, https_port, tls.ca_file)]
            cfg = parse_agent_config({
                "collector": {"url": f"http://127.0.0.1:{collector_port}", "token": token},
                "host": host,
                "state_dir": str(Path(tmp) / "agent"),
                "ship": {"flush_interval": 0.3, "backoff_initial": 0.2, "backoff_max": 1.0},
                "self_metrics_interval": 0.5,
                "checks": checks,
            })
            agent = Agent(cfg)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(0.2)
            agent.submit(app_readings(), source="sdk")  # what the application SDK hands the agent's local ingest
            await asyncio.sleep(seconds)
            stop.set()
            await task
            await asyncio.sleep(2.0)  # collector self-metrics (0.5 s) and internal samples (1 s) reach the sink queue
            core = collector[CORE]
            for r in core.runners:
                assert await r.flush(timeout=30), f"sink {r.name} did not drain: {r.stats}"
            store = store_contents(core.reader, {host, ccfg.hostname}, start - 60, time.time() + 60)
        finally:
            for r in runners:
                await r.cleanup()
    return DataRun(host, start, time.time(), "agent→collector→sink", {m for m, _, _ in store}, store)


def store_contents(reader: Any, hosts: set[str], start: float, end: float) -> dict[Any, list[tuple[int, float]]]:
    """Every raw point the collector's embedded store holds for `hosts`."""
    out: dict[Any, list[tuple[int, float]]] = {}
    for _sid, metric, h, tags in reader.find_series(None, None, {}):
        if h not in hosts:
            continue
        results, _res = reader.query_ex(metric, tags, start, end, host=h, resolution="raw")
        for r in results:
            if r["tags"] == tags and r["host"] == h:
                out[(metric, h, tuple(sorted(tags.items())))] = [(round(ts * 1000), v) for ts, v in r["points"]]
    return out
