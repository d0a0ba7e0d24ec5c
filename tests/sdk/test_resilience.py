"""Must-show: the SDK never raises into the app nor blocks it — agent down (connection refused), agent
hanging (a silent listener), queue full, agent rejecting, bad configuration. A real Flask app on loopback
serves every request; drops are counted by reason. (Time bounds here are sanity bounds far above
normal: the SDK's own timeout is set to 30 s so that any blocking would show.)"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from infrawatch_sdk import _client as C
from tests.sdk.helpers import MODULES, Receiver, call, serve_wsgi
from tests.sdk.shopapp import flask_app


@pytest.fixture(autouse=True)
def _reset_client() -> Iterator[None]:
    yield
    if C._client is not None:
        C._client.close(0)
    C._client = None


def hammer(base: str, n: int) -> float:
    """n requests mixing successes and app errors; all must get their normal status. Returns the slowest."""
    worst = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        assert call(f"{base}/orders/1") == 200
        assert call(f"{base}/pay/{i}", "POST") == 500  # the app's own error, reported by the SDK
        worst = max(worst, time.perf_counter() - t0)
    return worst


def app() -> Any:
    return iw.instrument_flask(flask_app.create_app())


def refused_url() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}"


def test_agent_down_requests_succeed_drops_counted() -> None:
    c = iw.init(refused_url(), modules=MODULES, queue_size=20, flush_interval=0.02, timeout=30)
    with serve_wsgi(app()) as base:
        hammer(base, 40)
    assert not c.flush(0.2)
    st = c.stats()
    assert st["sent"] == 0 and st["queued"] <= 2 * 20
    assert st["dropped"]["agent_down"] + st["dropped"]["queue_full"] > 0


def test_agent_hanging_never_blocks_the_app(silent_port: int) -> None:
    c = iw.init(f"http://127.0.0.1:{silent_port}", modules=MODULES, queue_size=10, flush_interval=0.01, timeout=30)
    with serve_wsgi(app()) as base:
        worst = hammer(base, 20)
    assert worst < 10  # the sender is stuck for 30 s in its POST; the app never waits for it
    t0 = time.perf_counter()
    assert not c.flush(0.2) and time.perf_counter() - t0 < 5  # flush honours its own timeout
    assert c.stats()["dropped"]["queue_full"] > 0 and c.stats()["sent"] == 0


def test_queue_full_counts_drops_and_recovers(receiver: Receiver) -> None:
    c = iw.init(receiver.url, modules=MODULES, queue_size=5, flush_interval=60)  # sender asleep: the queue fills
    for i in range(30):
        c.record_sql(0.001, f"select {i}")
    assert c.stats()["dropped"]["queue_full"] == 25 and c.stats()["queued"] == 5
    assert c.flush(10)
    assert len(receiver.of("sql")) == 5 and c.stats()["sent"] == 5
    with serve_wsgi(app()) as base:
        hammer(base, 1)  # 2 requests + 1 exception: fits in the emptied queue
    assert c.flush(10) and len(receiver.of("request")) == 2 and len(receiver.of("exception")) == 1


def test_agent_rejecting_counts_drops() -> None:
    r = Receiver(status=400)
    try:
        c = iw.init(r.url, flush_interval=0.02)
        with serve_wsgi(app()) as base:
            hammer(base, 2)
        assert c.flush(5)
        st = c.stats()["dropped"]
        assert st["rejected"] == 6 and r.events == []  # 4 requests + 2 exceptions
    finally:
        r.close()


@pytest.mark.parametrize("kw", [
    {"agent_url": "not a url"},
    {"agent_url": "ftp://127.0.0.1:9311"},
    {"agent_url": "http://127.0.0.1:notaport"},
    {"agent_url": 9311},
    {"queue_size": -1},
    {"flush_interval": "soon"},
    {"modules": {"payment": "/pay"}},
    {"modules": {"payment": {"url_prefix": ["/pay"]}}},
    {"no_such_option": True},
])
def test_bad_config_disables_without_raising(kw: dict[str, Any]) -> None:
    kw.setdefault("agent_url", "http://127.0.0.1:9")
    c = iw.init(**kw)
    assert c.config_error and not c.enabled
    with serve_wsgi(app()) as base:
        hammer(base, 2)
    iw.record_sql(0.1, "select 1")
    assert iw.flush(1)
    assert c.stats()["dropped"]["disabled"] == 7 and c.stats()["sent"] == 0


def test_no_client_at_all_is_a_no_op() -> None:
    C._client = None
    with serve_wsgi(app()) as base:
        hammer(base, 2)
    iw.record_sql(0.1, "select 1")
    iw.capture_exception(ValueError("x"))
    assert iw.flush(0.1) and iw.stats()["sent"] == 0


def test_close_flushes_then_ignores(receiver: Receiver) -> None:
    c = iw.Client(receiver.url, flush_interval=60)
    c.record_request(0.01, "GET /x", "GET", 200)
    assert c.close(5) and len(receiver.of("request")) == 1
    c.record_request(0.01, "GET /x", "GET", 200)
    assert c.stats()["queued"] == 0
