"""The Python SDK against real web servers on loopback: Flask (werkzeug WSGI), Starlette (uvicorn ASGI),
DB-API timing on sqlite3, and a loopback HTTP receiver standing in for the agent's /v1/events endpoint
(the agent's own local-ingest tests use the real agent)."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from tests.servers.net import free_port, wait_port


class Receiver:
    def __init__(self, status: int = 202) -> None:
        self.events: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                if outer.status < 300:
                    outer.bodies.append(body)
                    outer.events.extend(body["events"])
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client(receiver: Receiver) -> Iterator[iw.Client]:
    c = iw.init(receiver.url, service="shop", flush_interval=0.05,
                modules={"payment": {"url_prefixes": ["/pay"], "packages": ["shop.payment"], "loggers": ["shop.payment"]},
                         "order": {"url_prefixes": ["/orders"]}})
    yield c
    c.enabled = False


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_flask_wsgi_requests_and_exceptions(client: iw.Client, receiver: Receiver) -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask("shopapp")

    @app.get("/orders/<int:oid>")
    def order(oid: int) -> str:
        return "ok"

    @app.post("/pay/<int:oid>")
    def pay(oid: int) -> str:
        raise RuntimeError(f"card declined for order {oid}")

    iw.instrument_flask(app)
    port = free_port()
    srv = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for i in range(3):
            assert _get(f"http://127.0.0.1:{port}/orders/{i}") == 200
        for i in range(2):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/pay/{i}", method="POST", data=b"")
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(req, timeout=5)
        assert iw.flush(5)
    finally:
        srv.shutdown()
    reqs = [e for e in receiver.events if e["type"] == "request"]
    assert sorted({(e["endpoint"], e["module"], e["status"]) for e in reqs}) == [
        ("GET /orders/<int:oid>", "order", 200),
        ("POST /pay/<int:oid>", "payment", 500),
    ]
    assert sum(1 for e in reqs if e["endpoint"].startswith("GET")) == 3
    excs = [e for e in receiver.events if e["type"] == "exception"]
    assert sum(e.get("count", 1) for e in excs) == 2
    ex = excs[0]
    assert ex["module"] == "payment" and ex["exception"]["type"] == "RuntimeError"
    assert any(f["function"] == "pay" for f in ex["exception"]["frames"]) and "card declined" in ex["exception"]["stack"]
    assert ex["endpoint"] == "POST /pay/<int:oid>"


def test_starlette_asgi_route_template(client: iw.Client, receiver: Receiver) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("x")

    async def boom(request: Any) -> PlainTextResponse:
        raise ValueError("order 17 not found")

    app = iw.ASGIMiddleware(Starlette(routes=[Route("/orders/{oid}", item), Route("/orders/{oid}/fail", boom)]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    wait_port("127.0.0.1", port)
    try:
        assert _get(f"http://127.0.0.1:{port}/orders/5") == 200
        assert _get(f"http://127.0.0.1:{port}/orders/6/fail") == 500
        assert iw.flush(5)
    finally:
        server.should_exit = True
        th.join(5)
    reqs = {(e["endpoint"], e["status"], e.get("module")) for e in receiver.events if e["type"] == "request"}
    assert ("GET /orders/{oid}", 200, "order") in reqs and ("GET /orders/{oid}/fail", 500, "order") in reqs
    excs = [e for e in receiver.events if e["type"] == "exception"]
    assert len(excs) == 1 and excs[0]["exception"]["type"] == "ValueError" and excs[0]["module"] == "order"


def test_dbapi_wrapper_times_statements(client: iw.Client, receiver: Receiver) -> None:
    import sqlite3

    conn = iw.wrap_dbapi(sqlite3.connect(":memory:"), db="sqlite")
    cur = conn.cursor()
    cur.execute("create table t (id integer, name text)")
    cur.executemany("insert into t values (?, ?)", [(1, "a"), (2, "b")])
    cur.execute("select name from t where id = 1")
    assert cur.fetchall() == [("a",)]
    with pytest.raises(sqlite3.OperationalError):
        cur.execute("select nope from t")
    assert iw.flush(5)
    sql = [e for e in receiver.events if e["type"] == "sql"]
    assert [e["statement"] for e in sql] == [
        "create table t (id integer, name text)", "insert into t values (?, ?)", "select name from t where id = 1", "select nope from t"]
    assert [e["error"] for e in sql] == [False, False, False, True] and all(e["duration"] >= 0 and e["db"] == "sqlite" for e in sql)


def test_exception_storm_counted_exactly_in_bounded_memory(receiver: Receiver) -> None:
    c = iw.init(receiver.url, service="storm", queue_size=100, flush_interval=0.05)
    try:
        for i in range(20_000):
            try:
                raise KeyError(f"sku {i % 1}")
            except KeyError as e:
                c.capture_exception(e, module="order")
        assert len(c._q) <= 100
        assert c.flush(10)
    finally:
        c.enabled = False
    excs = [e for e in receiver.events if e["type"] == "exception"]
    assert sum(e["count"] for e in excs) == 20_000
    assert len(excs) < 50 and c.stats()["dropped"]["queue_full"] == 0


def test_logging_handler_and_module_by_logger(client: iw.Client, receiver: Receiver) -> None:
    lg = logging.getLogger("shop.payment.gateway")
    h = iw.LoggingHandler()
    lg.addHandler(h)
    try:
        try:
            {}["x"]
        except KeyError:
            lg.exception("lookup failed")
        lg.error("refund %s rejected", 42)
        lg.warning("not reported")
    finally:
        lg.removeHandler(h)
    assert iw.flush(5)
    excs = [e for e in receiver.events if e["type"] == "exception"]
    assert {e["exception"]["type"] for e in excs} == {"KeyError", "LogError"}
    assert all(e["module"] == "payment" for e in excs)


def test_never_raises_or_blocks_when_agent_down() -> None:
    """Agent down and queue full: recording stays fast and silent; drops are counted."""
    c = iw.Client(f"http://127.0.0.1:{free_port()}", queue_size=50, flush_interval=0.05, timeout=0.2)
    t0 = time.perf_counter()
    for i in range(10_000):
        c.record_sql(0.001, f"select {i}")
        c.record_request(0.01, "GET /x", "GET", 200)
    elapsed = time.perf_counter() - t0
    assert c.stats()["dropped"]["queue_full"] > 0
    assert not c.flush(0.3)
    assert elapsed < 5  # sanity bound only: 20k recordings must not wait on the network
    with pytest.raises(ValueError):
        iw.Client("not a url")


def test_rejecting_agent_counts_drops() -> None:
    r = Receiver(status=400)
    try:
        c = iw.Client(r.url, flush_interval=0.05)
        c.record_request(0.01, "GET /x", "GET", 200)
        assert c.flush(5)
        assert c.stats()["dropped"]["send_failed"] == 1 and r.events == []
    finally:
        r.close()
