"""End to end with real apps and real processes: a Flask app (werkzeug) → agent `web-1`, a Starlette app (uvicorn)
→ agent `web-2`, both agents → one real collector; the test drives HTTP requests and reads the collector's API.

Issue 4, first must-show: the same payment bug on two hosts is one group with the summed count and both hosts;
a different bug in `order` is another group; module, endpoint (route template) and stack are kept; the
performance API shows every endpoint with the request and error counts the test sent.

The business code below is deliberately deeper than the collector's fingerprint window (the innermost 5 in-app
frames, `checks.normalize.exception_fingerprint`): the Flask view and the Starlette endpoint are different
functions (`pay_view`, `pay_endpoint`), so a bug raised only 1-2 frames under the view would (by design) give one
group per framework; `test_shallow_bug_under_different_views_is_two_groups` pins that boundary without processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from tests.e2e.procs import Proc, Stack
from tests.sdk.helpers import call, serve_asgi, serve_wsgi
from tests.servers.net import free_port, wait_port

SDK_MODULES = {"payment": {"url_prefixes": ["/pay"]}, "order": {"url_prefixes": ["/orders"]}}
HOSTS = ("web-1", "web-2")
FLASK_PAY, FLASK_ORDER, FLASK_HEALTH = "POST /pay/<int:oid>", "GET /orders/<int:oid>", "GET /health"
ASGI_PAY, ASGI_ORDER = "POST /pay/{oid:int}", "GET /orders/{oid:int}"


# ------------------------------------------------------------------ business code shared by both apps

class PaymentDeclined(Exception):
    pass


class OrderNotFound(LookupError):
    pass


ORDERS = {1: 10.0, 2: 25.5, 3: 7.0, 4: 99.9}


def charge(oid: int) -> str:
    return _authorize(oid, f"4111-1111-1111-{oid:04d}")


def _authorize(oid: int, card: str) -> str:
    return _risk_check(oid, card)


def _risk_check(oid: int, card: str) -> str:
    return _gateway(oid, card)


def _gateway(oid: int, card: str) -> str:
    return _post_to_bank(oid, card)


def _post_to_bank(oid: int, card: str) -> str:
    raise PaymentDeclined(f"card {card} declined for order {oid}")


def load_order(oid: int) -> float:
    return _repo_get(oid)


def _repo_get(oid: int) -> float:
    return _cache_get(oid)


def _cache_get(oid: int) -> float:
    return _db_get(oid)


def _db_get(oid: int) -> float:
    return _row(oid)


def _row(oid: int) -> float:
    try:
        return ORDERS[oid]
    except KeyError:
        raise OrderNotFound(f"order {oid} not found") from None


# ------------------------------------------------------------------ the two apps

def flask_app(client: iw.Client) -> Any:
    from flask import Flask

    app = Flask("shop")

    @app.post("/pay/<int:oid>")
    def pay_view(oid: int) -> str:
        return charge(oid)

    @app.get("/orders/<int:oid>")
    def get_order(oid: int) -> str:
        return str(load_order(oid))

    @app.get("/health")
    def health() -> str:
        return "ok"

    return iw.instrument_flask(app, client=client)


def starlette_app(client: iw.Client) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def pay_endpoint(request: Any) -> Any:
        return PlainTextResponse(charge(request.path_params["oid"]))

    async def get_order(request: Any) -> Any:
        return PlainTextResponse(str(load_order(request.path_params["oid"])))

    app = Starlette(routes=[Route("/pay/{oid:int}", pay_endpoint, methods=["POST"]), Route("/orders/{oid:int}", get_order)])
    return iw.ASGIMiddleware(app, client=client)


# ------------------------------------------------------------------ processes

@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, list[int]]]:
    """The real collector and two real agents (hosts web-1, web-2), each with local ingest on its own port."""
    ports = [free_port(), free_port()]
    st = Stack(tmp_path, [{"type": "memory", "interval": 30}],
               agent_extra=f"local_ingest:\n  listen: 127.0.0.1:{ports[0]}\n  interval: 1s\n")
    base = (tmp_path / "agent.yaml").read_text()
    (tmp_path / "agent.yaml").write_text(base.replace(f"host: {st.host}", f"host: {HOSTS[0]}"))
    text = base.replace(f"host: {st.host}", f"host: {HOSTS[1]}").replace(f"{tmp_path}/agent", f"{tmp_path}/agent2")
    (tmp_path / "agent2.yaml").write_text(text.replace(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"))
    agent2 = Proc("agent2", ["agent", "-c", str(tmp_path / "agent2.yaml")], tmp_path / "agent2.log")
    try:
        st.start_collector()
        st.agent.start()
        agent2.start()
        for p in ports:
            wait_port("127.0.0.1", p, timeout=30)
        yield st, ports
    finally:
        agent2.stop()
        st.close()


def _drive(base: str, pays: list[int], good_orders: list[int], bad_orders: list[int], health: int = 0) -> None:
    for oid in pays:
        assert call(f"{base}/pay/{oid}", "POST") == 500
    for oid in good_orders:
        assert call(f"{base}/orders/{oid}") == 200
    for oid in bad_orders:
        assert call(f"{base}/orders/{oid}") == 500
    for _ in range(health):
        assert call(f"{base}/health") == 200


def test_flask_and_starlette_through_two_agents_to_collector(stack: tuple[Stack, list[int]]) -> None:
    st, ports = stack
    clients = [iw.Client(f"http://127.0.0.1:{p}", service="shop", flush_interval=0.05, modules=SDK_MODULES) for p in ports]
    assert all(c.config_error is None for c in clients)
    try:
        with serve_wsgi(flask_app(clients[0])) as base:  # host web-1
            _drive(base, pays=[11, 12, 13], good_orders=[1, 2, 3], bad_orders=[404], health=2)
        with serve_asgi(starlette_app(clients[1])) as base:  # host web-2
            _drive(base, pays=[21, 22], good_orders=[1, 2, 3, 4], bad_orders=[77, 78])
        for c in clients:
            assert c.flush(10), c.stats()
            assert sum(c.stats()["dropped"].values()) == 0, c.stats()
    finally:
        for c in clients:
            c.close(0)

    # ---- exceptions: the same payment bug from two hosts → one group; the order bug → another group
    def groups() -> Any:
        gs = st.get("/api/v1/exceptions", window="1h")["groups"]
        by = {g["type"].rsplit(".", 1)[-1]: g for g in gs}
        done = by.get("PaymentDeclined", {}).get("count") == 5 and by.get("OrderNotFound", {}).get("count") == 3
        return (gs, by) if done else None

    gs, by = st.wait_for(groups, what="payment group with 5 and order group with 3")
    assert len(gs) == 2, gs  # two bugs → two groups, nothing else
    pay, order = by["PaymentDeclined"], by["OrderNotFound"]
    assert pay["id"] != order["id"] and pay["fingerprint"] != order["fingerprint"]
    assert (pay["module"], pay["service"], sorted(pay["hosts"])) == ("payment", "shop", list(HOSTS))
    assert (order["module"], order["service"], sorted(order["hosts"])) == ("order", "shop", list(HOSTS))
    assert pay["window_count"] == 5 and pay["window_hosts"] == 2
    assert pay["endpoint"] in (FLASK_PAY, ASGI_PAY) and order["endpoint"] in (FLASK_ORDER, ASGI_ORDER)
    # filters: by host (each host's share) and by module
    for host, n_pay, n_order in ((HOSTS[0], 3, 1), (HOSTS[1], 2, 2)):
        mine = {g["type"].rsplit(".", 1)[-1]: g["window_count"] for g in st.get("/api/v1/exceptions", window="1h", host=host)["groups"]}
        assert mine == {"PaymentDeclined": n_pay, "OrderNotFound": n_order}, (host, mine)
    assert [g["id"] for g in st.get("/api/v1/exceptions", window="1h", module="payment")["groups"]] == [pay["id"]]

    # ---- detail: per-host counts, endpoint per host (route templates, not raw URLs), sample stack
    d = st.get(f"/api/v1/exceptions/{pay['id']}")
    assert {h["host"]: h["count"] for h in d["hosts"]} == {HOSTS[0]: 3, HOSTS[1]: 2}
    assert {(o["host"], o["endpoint"]) for o in d["occurrences"]} == {(HOSTS[0], FLASK_PAY), (HOSTS[1], ASGI_PAY)}
    assert "PaymentDeclined" in d["sample_stack"] and "declined for order" in d["sample_stack"]
    assert "_post_to_bank" in d["sample_stack"]
    fns = [f["function"] for f in d["sample_frames"] if f.get("in_app")]
    assert fns[-5:] == ["charge", "_authorize", "_risk_check", "_gateway", "_post_to_bank"], fns
    assert fns[0] in ("pay_view", "pay_endpoint")  # the Flask view or Starlette endpoint that got the request
    od = st.get(f"/api/v1/exceptions/{order['id']}")
    assert {h["host"]: h["count"] for h in od["hosts"]} == {HOSTS[0]: 1, HOSTS[1]: 2}
    assert {(o["host"], o["endpoint"]) for o in od["occurrences"]} == {(HOSTS[0], FLASK_ORDER), (HOSTS[1], ASGI_ORDER)}
    assert "OrderNotFound" in od["sample_stack"] and [f["function"] for f in od["sample_frames"]][-1] == "_row"

    # ---- performance: every endpoint with the counts and errors the test sent
    want = {FLASK_PAY: ("payment", 3, 3), FLASK_ORDER: ("order", 4, 1), ASGI_PAY: ("payment", 2, 2), ASGI_ORDER: ("order", 6, 2)}

    def perf() -> Any:
        items = st.get("/api/v1/performance/endpoints", window="1h", limit=100)["items"]
        got = {i["endpoint"]: (i["module"], i["count"], i["errors"]) for i in items if i["endpoint"] != FLASK_HEALTH}
        health = [i for i in items if i["endpoint"] == FLASK_HEALTH]
        return items if got == want and health and health[0]["count"] == 2 else None

    items = st.wait_for(perf, what=f"endpoint counts {want}")
    assert len(items) == 5 and all(i["service"] == "shop" for i in items)
    eps = {i["endpoint"]: i for i in items}
    assert eps[FLASK_HEALTH]["errors"] == 0
    for ep in want:
        i = eps[ep]
        assert i["error_rate"] == pytest.approx(want[ep][2] / want[ep][1])
        assert 0 < i["min_seconds"] <= i["p50_seconds"] <= i["max_seconds"] * 1.01 and i["p95_seconds"] is not None
    assert not any("/pay/1" in e or "/orders/4" in e for e in eps)  # raw URLs never become endpoints
    assert {i["endpoint"] for i in st.get("/api/v1/performance/endpoints", window="1h", module="payment")["items"]} == {FLASK_PAY, ASGI_PAY}
    assert st.collector.alive() and st.agent.alive()


def test_shallow_bug_under_different_views_is_two_groups() -> None:
    """The fingerprint's frame window, as the agent computes it from what the SDK sends (no processes needed):
    the deep payment bug is one fingerprint under both views; a bug 2 frames under two different views is two."""
    from checks.normalize import exception_fingerprint
    from infrawatch_sdk._client import exception_payload

    def shallow() -> None:
        raise PaymentDeclined("card 4111-1111-1111-0001 declined for order 1")

    def via_flask_view() -> None:
        charge(1)

    def via_asgi_endpoint() -> None:
        charge(2)

    def shallow_a() -> None:
        shallow()

    def shallow_b() -> None:
        shallow()

    def fp(fn: Any) -> str:
        try:
            fn()
        except PaymentDeclined as e:
            p = exception_payload(e)
        return exception_fingerprint(p["type"], p["message"], p["frames"])

    assert fp(via_flask_view) == fp(via_asgi_endpoint)
    assert fp(shallow_a) != fp(shallow_b)
