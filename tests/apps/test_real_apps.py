"""Real applications instrumented with infrawatch_sdk → the real local ingest → the collector extension's API:
a Flask (WSGI, werkzeug) app, a Starlette (ASGI, uvicorn) app, PostgreSQL through psycopg and SQLAlchemy."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from checks.sketch import DEFAULT_ALPHA
from tests.apps.helpers import CollectorExt, IngestServer, LoopThread
from tests.servers.net import free_port, wait_port

SDK_MODULES = {"payment": {"url_prefixes": ["/pay"]}, "order": {"url_prefixes": ["/orders"]}}


def _req(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method == "POST" else None), timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _flask_app() -> Any:
    from flask import Flask

    app = Flask("shop")

    @app.get("/orders/<int:oid>")
    def order(oid: int) -> str:
        if oid % 5 == 0:
            raise LookupError(f"order {oid} not found")
        return "ok"

    @app.post("/pay/<int:oid>")
    def pay(oid: int) -> str:
        raise RuntimeError(f"card declined for order {oid}")

    return iw.instrument_flask(app)


@pytest.fixture
def flask_server() -> Iterator[str]:
    from werkzeug.serving import make_server

    port = free_port()
    srv = make_server("127.0.0.1", port, _flask_app(), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()


def _drive_flask(base: str) -> None:
    for i in range(1, 11):
        assert _req(f"{base}/orders/{i}") == (500 if i % 5 == 0 else 200)
    for i in range(3):
        assert _req(f"{base}/pay/{i}", "POST") == 500


def test_flask_same_bugs_from_two_hosts_group_with_summed_counts(loop_thread: LoopThread, collector: CollectorExt,
                                                                  flask_server: str) -> None:
    # the same application on two hosts, each reporting to its own agent
    for host in ("web-1", "web-2"):
        ing = IngestServer(loop_thread, host)
        try:
            c = iw.init(ing.url, service="shop", modules=SDK_MODULES, flush_interval=0.05)
            _drive_flask(flask_server)
            assert iw.flush(10)
            c.enabled = False
            collector.ingest(ing.flush())
        finally:
            ing.close()
    groups = {g["type"]: g for g in collector.get("/api/v1/exceptions")[1]["groups"]}
    assert set(groups) == {"RuntimeError", "LookupError"}  # two bugs → two groups
    pay, look = groups["RuntimeError"], groups["LookupError"]
    assert (pay["module"], pay["count"], sorted(pay["hosts"])) == ("payment", 6, ["web-1", "web-2"])
    assert (look["module"], look["count"]) == ("order", 4)
    assert pay["endpoint"] == "POST /pay/<int:oid>"
    d = collector.get(f"/api/v1/exceptions/{pay['id']}")[1]
    assert "card declined" in d["sample_stack"] and any(f["function"] == "pay" for f in d["sample_frames"])
    eps = {e["endpoint"]: e for e in collector.get("/api/v1/perf/endpoints")[1]["items"]}
    assert eps["GET /orders/<int:oid>"]["count"] == 20 and eps["GET /orders/<int:oid>"]["errors"] == 4
    assert eps["POST /pay/<int:oid>"]["module"] == "payment" and eps["POST /pay/<int:oid>"]["error_rate"] == 1.0


def test_starlette_asgi_exceptions_and_routes(ingest: IngestServer, collector: CollectorExt) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def order(request: Any) -> Any:
        oid = int(request.path_params["oid"])
        if oid == 3:
            raise ValueError(f"bad order id {oid}")
        return PlainTextResponse("ok")

    async def pay(request: Any) -> Any:
        raise ConnectionError("payment gateway unreachable at 10.0.0.7:443")

    app = Starlette(routes=[Route("/orders/{oid:int}", order), Route("/pay", pay, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(iw.ASGIMiddleware(app), host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    wait_port("127.0.0.1", port)
    c = iw.init(ingest.url, service="shop-asgi", modules=SDK_MODULES, flush_interval=0.05)
    try:
        base = f"http://127.0.0.1:{port}"
        for i in range(1, 6):
            assert _req(f"{base}/orders/{i}") == (500 if i == 3 else 200)
        assert _req(f"{base}/pay", "POST") == 500
        assert iw.flush(10)
    finally:
        c.enabled = False
        server.should_exit = True
        t.join(10)
    collector.ingest(ingest.flush())
    groups = {g["type"]: g for g in collector.get("/api/v1/exceptions")[1]["groups"]}
    assert set(groups) == {"ValueError", "ConnectionError"}, groups
    assert groups["ValueError"]["module"] == "order" and groups["ConnectionError"]["module"] == "payment"
    assert groups["ValueError"]["service"] == "shop-asgi"
    eps = {e["endpoint"]: e for e in collector.get("/api/v1/perf/endpoints?module=order")[1]["items"]}
    assert list(eps) == ["GET /orders/{oid:int}"] and eps["GET /orders/{oid:int}"]["count"] == 5


def _spy(ing: IngestServer) -> list[float]:
    seen: list[float] = []
    orig = ing.ingest.timing

    def timing(kind: str, duration: float, **kw: Any) -> bool:
        if kind == "sql" and "pg_sleep" in kw.get("statement", ""):
            seen.append(duration)
        return orig(kind, duration, **kw)

    ing.ingest.timing = timing  # type: ignore[method-assign]
    return seen


def _check_sql(collector: CollectorExt, durations: list[float], n: int) -> None:
    items = [i for i in collector.get("/api/v1/perf/sql?limit=100")[1]["items"] if "pg_sleep" in i["statement"]]
    assert len(items) == 1, items  # literal-only differences: one fingerprint
    it = items[0]
    assert it["count"] == n == len(durations) and it["db"] == "postgresql"
    assert it["statement"] == "select pg_sleep(?), ?"
    srt = sorted(durations)
    true_p95 = srt[int(0.95 * (len(srt) - 1))]
    assert abs(it["p95_seconds"] - true_p95) <= DEFAULT_ALPHA * true_p95 * 1.0001
    assert it["max_seconds"] == pytest.approx(max(durations))
    assert "'tag-" not in str(it)  # literals never in clear


def test_psycopg_queries_timed_and_fingerprinted(ingest: IngestServer, collector: CollectorExt, postgres_server: dict[str, Any]) -> None:
    import psycopg

    seen = _spy(ingest)
    c = iw.init(ingest.url, service="shop", flush_interval=0.05)
    try:
        conn = iw.wrap_dbapi(psycopg.connect(postgres_server["dsn"], autocommit=True), db="postgresql")
        with iw.span("nightly-report", module="order"):
            cur = conn.cursor()
            for i in range(60):
                cur.execute(f"SELECT pg_sleep({(i % 6) / 1000}), 'tag-{i}'")
                cur.fetchall()
        conn.close()
        assert iw.flush(10)
    finally:
        c.enabled = False
    collector.ingest(ingest.flush())
    _check_sql(collector, seen, 60)
    spans = collector.get("/api/v1/perf/endpoints?kind=span")[1]["items"]
    assert [(s["endpoint"], s["module"], s["count"]) for s in spans] == [("nightly-report", "order", 1)]


def test_sqlalchemy_queries_timed_and_fingerprinted(ingest: IngestServer, collector: CollectorExt, postgres_server: dict[str, Any]) -> None:
    import sqlalchemy as sa

    seen = _spy(ingest)
    c = iw.init(ingest.url, service="shop", flush_interval=0.05)
    engine = sa.create_engine(postgres_server["dsn"].replace("postgresql://", "postgresql+psycopg://"))
    try:
        iw.instrument_sqlalchemy(engine, db="postgresql")
        with engine.connect() as conn:
            for i in range(40):
                conn.execute(sa.text(f"SELECT pg_sleep({(i % 4) / 1000}), 'tag-{i}'")).fetchall()
        assert iw.flush(10)
    finally:
        c.enabled = False
        engine.dispose()
    collector.ingest(ingest.flush())
    _check_sql(collector, seen, 40)


def test_app_requests_succeed_when_agent_is_down(flask_server: str) -> None:
    port = free_port()  # nothing listens here
    c = iw.init(f"http://127.0.0.1:{port}", service="shop", flush_interval=0.01, queue_size=5)
    try:
        for i in range(1, 5):
            assert _req(f"{flask_server}/orders/{i}") == 200
        iw.flush(0.5)
        assert c.stats()["sent"] == 0
    finally:
        c.enabled = False
