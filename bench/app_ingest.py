"""Benchmark: agent local-ingest throughput (events/s over HTTP, JSON and OTLP protobuf) and collector exception-ingest throughput.

    python bench/app_ingest.py [--seconds 5]

The ingest server runs in a child process (its own GIL), the load generator in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import multiprocessing as mp
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _server(port_q: Any, stop_ev: Any) -> None:
    from agent.ingest import Config, Ingest, serve
    from checks.config import from_dict

    class Sink:
        readings = 0

        def submit(self, rs: list[Any], *, source: str = "") -> None:
            Sink.readings += len(rs)

    async def main() -> None:
        cfg = from_dict(Config, {"listen": "127.0.0.1:0", "interval": "2s", "max_series": 100_000})
        stop = asyncio.Event()
        ready = asyncio.get_running_loop().create_future()
        ing = Ingest(cfg)
        task = asyncio.create_task(serve(cfg, Sink(), stop, ready=ready, ingest=ing))
        port_q.put((await ready)[1])
        while not stop_ev.is_set():
            await asyncio.sleep(0.1)
        stop.set()
        await task
        port_q.put({"requests": ing.requests, "readings_shipped": Sink.readings})

    asyncio.run(main())


def _events(n: int, rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        r = rng.random()
        if r < 0.6:
            out.append({"type": "request", "ts": time.time(), "duration": rng.lognormvariate(-4, 1), "module": "order",
                        "endpoint": f"GET /orders/{{id}}/v{i % 20}", "method": "GET", "status": 200, "error": False})
        elif r < 0.9:
            out.append({"type": "sql", "ts": time.time(), "duration": rng.lognormvariate(-6, 1), "module": "order",
                        "statement": f"SELECT * FROM orders WHERE id = {rng.randint(1, 10**6)} AND shop = {i % 30}", "db": "postgresql",
                        "error": False})
        else:
            k = i % 50
            out.append({"type": "exception", "ts": time.time(), "module": "payment", "count": 1, "endpoint": "POST /pay",
                        "exception": {"type": f"PaymentError{k}", "message": f"card {rng.randint(1000, 9999)} declined",
                                      "frames": [{"file": "/srv/shop/payment.py", "line": 40 + k, "function": f"charge{k}",
                                                  "module": "shop.payment", "in_app": True}],
                                      "stack": "Traceback (most recent call last):\n  ...\n" * 5}})
    return out


def bench_json(port: int, seconds: float, batch: int) -> tuple[float, float]:
    rng = random.Random(1)
    bodies = [gzip.compress(json.dumps({"service": "shop", "events": _events(batch, rng)}).encode(), 1) for _ in range(8)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = reqs = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.request("POST", "/v1/events", bodies[reqs % len(bodies)], {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 202, body
        sent += body["accepted"]
        reqs += 1
    dt = time.perf_counter() - t0
    return sent / dt, reqs / dt


def bench_otlp(port: int, seconds: float, spans: int) -> float:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="java-shop")))
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(spans):
        sp = ss.spans.add()
        sp.name = "GET /orders/{id}"
        sp.start_time_unix_nano = now
        sp.end_time_unix_nano = now + 1_000_000 * (i % 50 + 1)
        if i % 3:
            sp.kind = Span.SPAN_KIND_SERVER
            sp.attributes.append(KeyValue(key="http.route", value=AnyValue(string_value="/orders/{id}")))
            sp.attributes.append(KeyValue(key="http.request.method", value=AnyValue(string_value="GET")))
        else:
            sp.kind = Span.SPAN_KIND_CLIENT
            sp.attributes.append(KeyValue(key="db.query.text", value=AnyValue(string_value=f"SELECT * FROM t WHERE id = {i}")))
    body = req.SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        n += spans
    return n / (time.perf_counter() - t0)


def bench_sdk(port: int, n: int) -> float:
    import infrawatch_sdk as iw

    c = iw.Client(f"http://127.0.0.1:{port}", service="bench", queue_size=n + 10, flush_interval=0.01)
    t0 = time.perf_counter()
    for i in range(n):
        c.record_request(0.001 * (i % 100), "GET /orders/{id}", "GET", 200)
    ok = c.flush(120)
    dt = time.perf_counter() - t0
    c.enabled = False
    assert ok, c.stats()
    return n / dt


def bench_collector(seconds: float) -> tuple[float, float]:
    from agent.aggregate import Aggregator
    from checks.model import Batch, new_batch_id
    from collector.exceptions import ExceptionsConfig, ExceptionsExtension
    from collector.extension import ExtensionContext

    tmp = Path(tempfile.mkdtemp(prefix="iw-bench-"))
    db = str(tmp / "store.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")

    class Store:
        path = db

    ctx = ExtensionContext(None, tmp, Store(), lambda *a: None, lambda s: None, lambda r: None)  # type: ignore[arg-type]
    ext = ExceptionsExtension(ExceptionsConfig(), ctx)
    conn.execute("BEGIN")
    ext.migrate(conn)
    conn.execute("COMMIT")
    rng = random.Random(2)
    batches = []
    for b in range(20):
        agg = Aggregator()
        for i in range(200):  # 200 exception groups (agent-aggregated) + 100 perf series per batch
            agg.add_exception(f"Err{i}", f"boom {rng.randint(0, 99)}", frames=[{"module": "shop.x", "function": f"f{i}"}],
                              stack="Traceback ...\n" * 20, count=rng.randint(1, 50), module="payment")
            if i < 100:
                for _ in range(5):
                    agg.add_timing("request", rng.random() / 10, endpoint=f"GET /e{i}", module="order")
        evs = [r for r in agg.flush() if hasattr(r, "kind")]
        for e in evs:
            e.tags["host"] = f"host-{b % 4}"
        batches.append(Batch(new_batch_id(), f"host-{b % 4}", time.time(), [], evs))
    n_exc = n_perf = 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        b = batches[i % len(batches)]
        conn.execute("BEGIN")
        ext.in_transaction(conn, b)
        conn.execute("COMMIT")
        n_exc += sum(1 for e in b.events if e.kind == "app.exception")
        n_perf += sum(1 for e in b.events if e.kind == "app.perf")
        i += 1
    dt = time.perf_counter() - t0
    conn.close()
    return n_exc / dt, n_perf / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    stop = ctx.Event()
    p = ctx.Process(target=_server, args=(q, stop))
    p.start()
    port = q.get(timeout=60)
    print(f"cpu: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for batch in (100, 1000):
        ev_s, req_s = bench_json(port, a.seconds, batch)
        print(f"local ingest /v1/events  batch={batch:>5}: {ev_s:>10,.0f} events/s  ({req_s:,.0f} requests/s, gzip JSON, 1 client)")
    print(f"local ingest /v1/traces  protobuf, 500 spans/request: {bench_otlp(port, a.seconds, 500):>10,.0f} spans/s")
    print(f"SDK → local ingest, 200,000 record_request + flush: {bench_sdk(port, 200_000):>10,.0f} events/s")
    stop.set()
    stats = q.get(timeout=60)
    p.join(30)
    exc_s, perf_s = bench_collector(a.seconds)
    print(f"collector exceptions extension (SQLite, in_transaction+commit): {exc_s:>8,.0f} exception-group events/s, "
          f"{perf_s:,.0f} perf-series events/s")
    print(f"(server handled {stats['requests']:,} requests, shipped {stats['readings_shipped']:,} aggregated readings)")


if __name__ == "__main__":
    main()
