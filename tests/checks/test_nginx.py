"""nginx check: a real nginx (session fixture, loopback, temp prefix) with stub_status; failures become results and events."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from checks import build_check
from checks.base import BAD_STATUS, CONNECTION_FAILED, MISMATCH, SUCCESS
from checks.config import ConfigError, load_yaml_file
from checks.model import PROBE_FAILURE, Event, Sample
from checks.nginx import NginxCheck, parse_stub_status
from tests.servers.net import free_port
from tests.servers.nginx import Nginx

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {m.name for m in NginxCheck.METRICS}


def val(readings: list, name: str, **tags: str) -> float | None:
    out = [r.value for r in readings if isinstance(r, Sample) and r.name == name and all(r.tags.get(k) == v for k, v in tags.items())]
    assert len(out) <= 1, (name, tags, out)
    return out[0] if out else None


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"type": "nginx"}, "target", "is required"),
        ({"type": "nginx", "target": "127.0.0.1/nginx_status"}, "target", "http://"),
        ({"type": "nginx", "target": "http://127.0.0.1/s", "username": "u"}, "", "username and password"),
        ({"type": "nginx", "target": "http://127.0.0.1/s", "url": "x"}, "url", "unknown key"),
    ],
)
def test_invalid_config_names_the_problem(raw: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check(raw)
    assert ei.value.path == path
    assert words in ei.value.message


def test_example_config_is_valid() -> None:
    data, _ = load_yaml_file(ROOT / "config" / "checks" / "nginx.yaml")
    checks = [c for c in data["checks"] if c["type"] == "nginx"]
    assert checks
    for i, c in enumerate(checks):
        assert isinstance(build_check(c, f"checks[{i}]"), NginxCheck)


def test_parse_stub_status() -> None:
    body = b"Active connections: 291 \nserver accepts handled requests\n 16630948 16630946 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n"
    assert parse_stub_status(body) == {
        "active": 291, "accepted": 16630948, "handled": 16630946, "requests": 31070465, "reading": 6, "writing": 179, "waiting": 106,
    }
    assert parse_stub_status(b"<html>hello</html>") is None


async def test_stub_status_counts_and_rates(nginx_session: Nginx) -> None:
    ngx = nginx_session
    check = build_check({"type": "nginx", "target": f"{ngx.url}/nginx_status"})
    t1a = time.monotonic()
    first = await check.run()
    t1b = time.monotonic()
    assert {r.name for r in first if isinstance(r, Sample)} <= DECLARED
    assert val(first, "nginx.up") == 1.0
    assert val(first, "nginx.up", result=SUCCESS) == 1.0
    assert val(first, "nginx.requests_per_second") is None  # rates need a previous scrape
    # our own request is being served while nginx renders the page: at least one active, writing connection
    assert val(first, "nginx.connections_active") >= 1
    assert val(first, "nginx.connections", state="writing") >= 1
    assert val(first, "nginx.connections", state="reading") >= 0
    assert val(first, "nginx.connections", state="waiting") >= 0
    assert val(first, "nginx.connections_dropped_total") == 0

    # 20 requests on 20 connections, plus 5 requests on one keep-alive connection
    for _ in range(20):
        ngx.get("/ok")
    with socket.create_connection(("127.0.0.1", ngx.port)) as s:
        for _ in range(5):
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while not buf.endswith(b"ok\n"):
                buf += s.recv(4096)
    t2a = time.monotonic()
    second = await check.run()
    t2b = time.monotonic()
    await check.close()
    # the session nginx may serve other tests' requests too: lower bounds on the deltas
    d_req = val(second, "nginx.requests_total") - val(first, "nginx.requests_total")
    d_acc = val(second, "nginx.connections_accepted_total") - val(first, "nginx.connections_accepted_total")
    d_hnd = val(second, "nginx.connections_handled_total") - val(first, "nginx.connections_handled_total")
    assert d_req >= 26  # 20 + 5 + the stub_status request of the second scrape
    assert d_acc >= 22 and d_hnd == d_acc  # 20 + the keep-alive one + the second scrape's
    for metric, delta in (("nginx.requests_per_second", d_req), ("nginx.connections_accepted_per_second", d_acc),
                          ("nginx.connections_handled_per_second", d_hnd)):
        rate = val(second, metric)
        assert delta / (t2b - t1a) <= rate <= delta / (t2a - t1b), metric
    assert not [r for r in second if isinstance(r, Event)]


async def test_failures_are_results_with_events(nginx_session: Nginx) -> None:
    ngx = nginx_session
    cases = [
        (f"{ngx.url}/no_such_page", BAD_STATUS, "HTTP status 404"),
        (f"{ngx.url}/not_status", MISMATCH, "not nginx stub_status output"),
        (f"http://127.0.0.1:{free_port()}/nginx_status", CONNECTION_FAILED, "cannot connect"),
    ]
    for target, result, words in cases:
        check = build_check({"type": "nginx", "target": target})
        r = await check.run()
        await check.close()
        assert val(r, "nginx.up", result=result) == 0.0, target
        assert val(r, "nginx.duration_seconds", result=result) >= 0
        assert val(r, "nginx.requests_total") is None
        (ev,) = [e for e in r if isinstance(e, Event)]
        assert ev.kind == PROBE_FAILURE and ev.tags["result"] == result and ev.tags["target"] == target
        assert words in ev.data["reason"], ev.data["reason"]


async def test_restart_resets_counters_without_negative_rates(tmp_path: Path) -> None:
    """nginx restarted between two scrapes: totals drop, so no rate is emitted (never a negative one)."""
    ngx = Nginx(tmp_path / "nginx")
    check = build_check({"type": "nginx", "target": f"{ngx.url}/nginx_status"})
    try:
        for _ in range(10):
            ngx.get("/ok")
        before = await check.run()
    finally:
        ngx.stop()
    ngx2 = Nginx(tmp_path / "nginx2", port=ngx.port)
    try:
        after = await check.run()
        again = await check.run()
    finally:
        ngx2.stop()
        await check.close()
    assert val(after, "nginx.up") == 1.0
    assert val(after, "nginx.requests_total") < val(before, "nginx.requests_total")
    assert val(after, "nginx.requests_per_second") is None
    assert val(again, "nginx.requests_per_second") > 0
