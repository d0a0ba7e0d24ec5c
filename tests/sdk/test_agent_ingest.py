"""The SDK against the real agent local ingest (agent.ingest.serve on loopback, a stand-in `agent` that
only collects what `submit` receives): a Flask app's requests, exceptions and SQL arrive as readings;
the same bug from two app instances is one exception group with the summed count; SQL literals never
arrive; literal-only differences are one SQL series."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from checks.model import APP_EXCEPTION, APP_PERF, Event
from tests.sdk.helpers import MODULES, call, serve_wsgi
from tests.sdk.shopapp import flask_app

ingest = pytest.importorskip("agent.ingest")


class StandInAgent:
    """Collects what the ingest hands to `agent.submit`."""

    def __init__(self) -> None:
        self.readings: list[Any] = []
        self.lock = threading.Lock()

    def submit(self, readings: list[Any], source: str = "") -> None:
        with self.lock:
            self.readings.extend(readings)


class RunningIngest:
    """agent.ingest.serve on 127.0.0.1:<free port>, in its own event loop on a thread."""

    def __init__(self) -> None:
        self.agent = StandInAgent()
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        ready: asyncio.Future[Any] = self.loop.create_future()
        cfg = ingest.Config(listen="127.0.0.1:0", interval=3600.0, exception_flush=0, service="shop")  # flush on stop only
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(ingest.serve(cfg, self.agent, self._stop, ready=ready),), daemon=True)
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 10), self.loop)
        host, port = fut.result(15)[:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving; the ingest ships its last interval to the agent on the way out."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(15)


@pytest.fixture
def agent_ingest() -> Iterator[RunningIngest]:
    r = RunningIngest()
    try:
        yield r
    finally:
        r.stop()
        r.loop.close()


def test_sdk_to_real_agent_ingest(agent_ingest: RunningIngest) -> None:
    url, agent = agent_ingest.url, agent_ingest.agent
    clients = [iw.Client(url, service="shop", flush_interval=0.05, modules=MODULES) for _ in range(2)]
    try:
        for c in clients:  # two app instances (as on two hosts) reporting the same bugs
            with serve_wsgi(iw.instrument_flask(flask_app.create_app(), client=c)) as base:
                assert call(f"{base}/orders/1") == 200
                for oid in (5, 6):
                    assert call(f"{base}/pay/{oid}", "POST") == 500
                assert call(f"{base}/orders/404") == 500
            db = iw.wrap_dbapi(sqlite3.connect(":memory:"), db="sqlite", client=c)
            db.execute("create table t (id integer, card text)")
            for i in (1, 2, 3):
                db.execute(f"select * from t where id = {i} and card = '4111-secret-{i}'")
            assert c.flush(10)
        assert all(c.stats()["sent"] > 0 and not any(c.stats()["dropped"].values()) for c in clients)
    finally:
        for c in clients:
            c.close(0)
    agent_ingest.stop()  # the ingest ships its last interval on stop

    excs = [r for r in agent.readings if isinstance(r, Event) and r.kind == APP_EXCEPTION]
    by_type = {r.data["type"].rsplit(".", 1)[-1]: r for r in excs}
    assert len(excs) == 2, [r.message for r in excs]
    pay, order = by_type["PaymentDeclined"], by_type["OrderNotFound"]
    assert pay.data["count"] == 4 and pay.tags["module"] == "payment"  # 2 per instance, one group
    assert order.data["count"] == 2 and order.tags["module"] == "order"
    assert pay.data["fingerprint"] != order.data["fingerprint"]
    assert "_gateway" in pay.data["stack"]

    perf = [r for r in agent.readings if isinstance(r, Event) and r.kind == APP_PERF]
    eps = {(r.tags.get("endpoint"), r.tags["module"]): r.data["count"] for r in perf if r.data["kind"] != "sql"}
    assert eps[("GET /orders/<int:oid>", "order")] == 4 and eps[("POST /pay/<int:oid>", "payment")] == 4
    sql = [r for r in perf if r.data["kind"] == "sql" and "from t" in r.data["statement"]]
    assert len(sql) == 1 and sql[0].data["count"] == 6 and sql[0].tags["db"] == "sqlite"
    assert "secret" not in repr(agent.readings) and "4111-1111" not in repr([r.data.get("statement") for r in perf])
