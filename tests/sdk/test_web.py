"""Must-show: a real Flask app (werkzeug, WSGI) and a real Starlette app (uvicorn, ASGI) on loopback,
instrumented with the SDK: requests timed by route template and module, exceptions in `payment` and
`order` reported with module, endpoint and stack; same bug on two app instances → same fingerprint,
different bugs → different fingerprints (the agent's own fingerprint function, checks.normalize)."""

from __future__ import annotations

from typing import Any, Callable

import infrawatch_sdk as iw
from checks.normalize import exception_fingerprint
from tests.sdk.helpers import MODULES, Receiver, call, serve_asgi, serve_wsgi
from tests.sdk.shopapp import asgi_app, flask_app


def fp(ev: dict[str, Any]) -> str:
    x = ev["exception"]
    return exception_fingerprint(x["type"], x["message"], x["frames"])


def by_type(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["type"] == "exception":
            out.setdefault(e["exception"]["type"].rsplit(".", 1)[-1], []).append(e)
    return out


def drive(base: str) -> None:
    assert call(f"{base}/orders/1") == 200
    assert call(f"{base}/orders/2") == 200
    assert call(f"{base}/orders/77") == 500  # OrderNotFound in order
    assert call(f"{base}/orders/78") == 500
    assert call(f"{base}/pay/5", "POST") == 500  # PaymentDeclined in payment (card and order id in the message)
    assert call(f"{base}/pay/6", "POST") == 500
    assert call(f"{base}/pay/7/fee") == 500  # ZeroDivisionError in payment: another bug


def check_common(rec: Receiver, templates: dict[str, str]) -> None:
    reqs = {(e["endpoint"], e.get("module"), e["status"]) for e in rec.of("request")}
    assert (f"GET {templates['order']}", "order", 200) in reqs
    assert (f"GET {templates['order']}", "order", 500) in reqs
    assert (f"POST {templates['pay']}", "payment", 500) in reqs
    assert (f"GET {templates['fee']}", "payment", 500) in reqs
    assert all("/77" not in e["endpoint"] and "/5" not in e["endpoint"] for e in rec.of("request"))
    assert all(e["duration"] > 0 for e in rec.of("request"))

    ex = by_type(rec.events)
    assert sum(e["count"] for e in ex["OrderNotFound"]) == 2 and sum(e["count"] for e in ex["PaymentDeclined"]) == 2
    for e in ex["OrderNotFound"]:
        assert e["module"] == "order" and e["endpoint"] == f"GET {templates['order']}"
        assert "order.py" in e["exception"]["stack"] and "in load" in e["exception"]["stack"]
    for e in ex["PaymentDeclined"]:
        assert e["module"] == "payment" and e["endpoint"] == f"POST {templates['pay']}"
        assert [f["function"] for f in e["exception"]["frames"] if f["in_app"]][-2:] == ["charge", "_gateway"]
        assert not any(f["module"].startswith("infrawatch_sdk") and f["in_app"] for f in e["exception"]["frames"])
    (zd,) = ex["ZeroDivisionError"]
    assert zd["module"] == "payment" and zd["endpoint"] == f"GET {templates['fee']}"
    # one bug → one fingerprint whatever the ids/card numbers in the message; different bugs differ
    assert len({fp(e) for e in ex["PaymentDeclined"]}) == 1 and len({fp(e) for e in ex["OrderNotFound"]}) == 1
    assert len({fp(ex["PaymentDeclined"][0]), fp(ex["OrderNotFound"][0]), fp(zd)}) == 3


def two_instances(make: Callable[[iw.Client], Any], serve: Callable[[Any], Any], templates: dict[str, str]) -> None:
    """The same app on two 'hosts' (two instances, two clients, two agents): same bug → same fingerprint."""
    recs = [Receiver(), Receiver()]
    clients = [iw.Client(r.url, service="shop", flush_interval=0.05, modules=MODULES) for r in recs]
    try:
        for c in clients:
            with serve(make(c)) as base:
                drive(base)
            assert c.flush(10)
        for r in recs:
            check_common(r, templates)
        a, b = (by_type(r.events) for r in recs)
        for t in ("PaymentDeclined", "OrderNotFound", "ZeroDivisionError"):
            assert fp(a[t][0]) == fp(b[t][0])
    finally:
        for c in clients:
            c.close(0)
        for r in recs:
            r.close()


FLASK_T = {"order": "/orders/<int:oid>", "pay": "/pay/<int:oid>", "fee": "/pay/<int:oid>/fee"}
ASGI_T = {"order": "/orders/{oid:int}", "pay": "/pay/{oid:int}", "fee": "/pay/{oid:int}/fee"}


def test_flask_app_two_hosts_same_fingerprints() -> None:
    two_instances(lambda c: iw.instrument_flask(flask_app.create_app(), client=c), serve_wsgi, FLASK_T)


def test_starlette_app_two_hosts_same_fingerprints() -> None:
    two_instances(lambda c: iw.ASGIMiddleware(asgi_app.create_app(), client=c), serve_asgi, ASGI_T)


def test_flask_module_by_package_and_global_client(client: iw.Client, receiver: Receiver) -> None:
    """/checkout has no URL rule: its view lives in the payment package, so the request and the error are `payment`."""
    app = iw.instrument_flask(flask_app.create_app())
    with serve_wsgi(app) as base:
        assert call(f"{base}/checkout/3") == 500
        assert call(f"{base}/health") == 200
        assert call(f"{base}/no/such/9") == 404
    assert iw.flush(10)
    reqs = {(e["endpoint"], e.get("module"), e["status"]) for e in receiver.of("request")}
    assert reqs == {("GET /checkout/<int:oid>", "payment", 500), ("GET /health", None, 200), ("GET /no/such/{id}", None, 404)}
    (ex,) = receiver.of("exception")
    assert ex["module"] == "payment" and ex["endpoint"] == "GET /checkout/<int:oid>" and ex["count"] == 1


def test_flask_propagating_exceptions_reported_once(client: iw.Client, receiver: Receiver) -> None:
    """With PROPAGATE_EXCEPTIONS Flask re-raises into the middleware: still one report."""
    app = iw.instrument_flask(flask_app.create_app())
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with serve_wsgi(app) as base:
        assert call(f"{base}/orders/55") == 500
    assert iw.flush(10)
    assert [e["count"] for e in receiver.of("exception")] == [1]


def test_starlette_mount_template_and_explicit_module(client: iw.Client, receiver: Receiver) -> None:
    app = asgi_app.create_app()
    with serve_asgi(iw.ASGIMiddleware(app)) as base:
        assert call(f"{base}/api/orders/1") == 200
    with serve_asgi(iw.ASGIMiddleware(app, module="order")) as base:
        assert call(f"{base}/pay/9/fee") == 500  # explicit module wins over URL and package rules
    assert iw.flush(10)
    reqs = {(e["endpoint"], e.get("module"), e["status"]) for e in receiver.of("request")}
    assert reqs == {("GET /api/orders/{oid:int}", "order", 200), ("GET /pay/{oid:int}/fee", "order", 500)}
    (ex,) = receiver.of("exception")
    assert ex["module"] == "order" and ex["exception"]["type"] == "ZeroDivisionError"


def test_aiohttp_middleware_canonical_route(client: iw.Client, receiver: Receiver) -> None:
    import asyncio

    from aiohttp import ClientSession, web

    from tests.sdk.shopapp import order

    async def get_order(request: web.Request) -> web.Response:
        return web.Response(text=str(order.load(int(request.match_info["oid"]))))

    async def main() -> list[int]:
        app = web.Application(middlewares=[iw.aiohttp_middleware()])
        app.router.add_get("/orders/{oid}", get_order)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with ClientSession() as s:
                out = []
                for oid in (1, 404):
                    async with s.get(f"http://127.0.0.1:{port}/orders/{oid}") as r:
                        out.append(r.status)
                return out
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == [200, 500]
    assert iw.flush(10)
    reqs = {(e["endpoint"], e.get("module"), e["status"]) for e in receiver.of("request")}
    assert reqs == {("GET /orders/{oid}", "order", 200), ("GET /orders/{oid}", "order", 500)}
    (ex,) = receiver.of("exception")
    assert ex["module"] == "order" and ex["endpoint"] == "GET /orders/{oid}" and ex["exception"]["type"].endswith("OrderNotFound")


def test_django_middleware(client: iw.Client, receiver: Receiver) -> None:
    """A real Django app (WSGI, werkzeug on loopback) with infrawatch_sdk.django.InfrawatchMiddleware."""
    import pytest

    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["127.0.0.1"], ROOT_URLCONF="tests.sdk.shopapp.django_urls",
                           MIDDLEWARE=["infrawatch_sdk.django.InfrawatchMiddleware"], SECRET_KEY="t", LOGGING_CONFIG=None)
        django.setup()
    from django.core.wsgi import get_wsgi_application

    with serve_wsgi(get_wsgi_application()) as base:
        assert call(f"{base}/orders/1") == 200
        assert call(f"{base}/orders/31") == 500
        assert call(f"{base}/pay/5", "POST") == 500
        assert call(f"{base}/checkout/6") == 500
    assert iw.flush(10)
    reqs = {(e["endpoint"], e.get("module"), e["status"]) for e in receiver.of("request")}
    assert reqs == {("GET /orders/<int:oid>", "order", 200), ("GET /orders/<int:oid>", "order", 500),
                    ("POST /pay/<int:oid>", "payment", 500), ("GET /checkout/<int:oid>", "payment", 500)}
    ex = {(e["exception"]["type"].rsplit(".", 1)[-1], e["module"], e["endpoint"]) for e in receiver.of("exception")}
    assert ex == {("OrderNotFound", "order", "GET /orders/<int:oid>"), ("PaymentDeclined", "payment", "POST /pay/<int:oid>"),
                  ("PaymentDeclined", "payment", "GET /checkout/<int:oid>")}
