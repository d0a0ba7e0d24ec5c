"""Elasticsearch probe against a real aiohttp server on loopback serving recorded Elasticsearch 8.x responses.

No Elasticsearch server can run here. The bodies in tests/fixtures/elasticsearch/ are hand-written to the
Elasticsearch 8.x response format (field for field; see its README) — not captured from a live cluster —
and the HTTP layer (auth, status codes, headers, JSON bodies, timeouts) is real.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from checks import build_check
from checks.config import ConfigError
from tests.checks.test_tcp import assert_declared, assert_result, by_name, example_checks, run_isolated
from tests.servers.net import free_port
from tests.servers.tls import TlsFiles

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "elasticsearch"
ES_HEADERS = {"X-elastic-product": "Elasticsearch"}
GOOD_AUTH = {"Basic " + base64.b64encode(b"monitor:pw").decode(), "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="}


def fixture_json(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def reply(name: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=(FIX / name).read_bytes(), status=status, content_type="application/json", charset="UTF-8",
        headers={**ES_HEADERS, **(headers or {})},
    )


def make_app(received: list[dict[str, Any]]) -> web.Application:
    async def health(r: web.Request) -> web.Response:
        cluster = r.match_info["cluster"]
        if cluster == "secure" and r.headers.get("Authorization") not in GOOD_AUTH:
            return reply("error_401.json", 401, {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'})
        if cluster == "slow":
            await asyncio.sleep(3)
        if cluster == "notes":
            return web.Response(text="<html>not a search engine</html>", content_type="text/html")
        name = "green" if cluster == "secure" else cluster
        if not (FIX / f"cluster_health_{name}.json").exists():
            return web.Response(status=404, text="no such route")
        return reply(f"cluster_health_{name}.json")

    async def search(r: web.Request) -> web.Response:
        assert r.content_type == "application/json"
        received.append({"index": r.match_info["index"], "body": await r.json()})
        index = r.match_info["index"]
        if index == "logs-partial":
            return reply("search_partial_failure.json")
        if index.startswith("logs-"):
            return reply("search_logs.json")
        return reply("error_index_not_found.json", 404)

    app = web.Application()
    app.router.add_get("/{cluster}/_cluster/health", health)
    app.router.add_post("/{cluster}/{index}/_search", search)
    return app


@pytest.fixture
async def es():
    received: list[dict[str, Any]] = []
    runner = web.AppRunner(make_app(received), handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://localhost:{port}", received
    await runner.cleanup()


async def run_once(raw: dict[str, Any]) -> list[Any]:
    c = build_check({"type": "elasticsearch", **raw})
    try:
        out = await c.run()
    finally:
        await c.close()
    assert_declared(c, out)
    return out


@pytest.mark.parametrize("status, code", [("green", 0), ("yellow", 1), ("red", 2)])
async def test_cluster_health_status_and_shards(es: tuple[str, list[Any]], status: str, code: int) -> None:
    base, _ = es
    out = await run_once({"target": f"{base}/{status}"})
    h = fixture_json(f"cluster_health_{status}.json")
    s = by_name(out)
    assert s["elasticsearch.cluster_status"].value == code
    assert s["elasticsearch.cluster_status"].tags["cluster"] == h["cluster_name"]
    assert s["elasticsearch.nodes"].value == h["number_of_nodes"]
    assert s["elasticsearch.unassigned_shards"].value == h["unassigned_shards"]
    assert s["elasticsearch.active_shards_percent"].value == pytest.approx(h["active_shards_percent_as_number"])
    assert s["elasticsearch.health_seconds"].value > 0
    if status == "red":  # default fail_on_status: red
        ev = assert_result(out, "elasticsearch", "bad_status")
        assert "cluster logs-prod is red: 8 unassigned shards, 2 nodes" in ev.data["reason"]
    else:
        assert_result(out, "elasticsearch", "success")


async def test_fail_on_yellow_or_never(es: tuple[str, list[Any]]) -> None:
    base, _ = es
    out = await run_once({"target": f"{base}/yellow", "fail_on_status": "yellow"})
    assert "is yellow" in assert_result(out, "elasticsearch", "bad_status").data["reason"]
    out = await run_once({"target": f"{base}/red", "fail_on_status": None})
    assert_result(out, "elasticsearch", "success")
    assert by_name(out)["elasticsearch.cluster_status"].value == 2


async def test_query_latency_and_hits(es: tuple[str, list[Any]]) -> None:
    base, received = es
    body = {"size": 0, "query": {"range": {"@timestamp": {"gte": "now-5m"}}}, "aggs": {"by_level": {"terms": {"field": "level"}}}}
    out = await run_once({"target": f"{base}/green", "query": {"index": "logs-*", "body": body}})
    assert_result(out, "elasticsearch", "success")
    assert received == [{"index": "logs-*", "body": body}]
    s = by_name(out)
    assert s["elasticsearch.query_seconds"].value > 0 and s["elasticsearch.query_seconds"].tags["index"] == "logs-*"
    assert s["elasticsearch.query_took_seconds"].value == pytest.approx(0.017)
    assert s["elasticsearch.query_hits"].value == 1342


async def test_query_failures(es: tuple[str, list[Any]]) -> None:
    base, _ = es
    out = await run_once({"target": f"{base}/green", "query": {"index": "logs-partial"}})
    assert "1 of 3 shards failed" in assert_result(out, "elasticsearch", "bad_status").data["reason"]
    out = await run_once({"target": f"{base}/green", "query": {"index": "metrics-app"}})
    ev = assert_result(out, "elasticsearch", "bad_status")
    assert "HTTP 404: index_not_found_exception: no such index [metrics-app]" in ev.data["reason"]
    # a red cluster stays the result when the search fails too
    out = await run_once({"target": f"{base}/red", "query": {"index": "metrics-app"}})
    reason = assert_result(out, "elasticsearch", "bad_status").data["reason"]
    assert reason.startswith("cluster logs-prod is red") and "index_not_found_exception" in reason


async def test_basic_auth_and_api_key(es: tuple[str, list[Any]]) -> None:
    base, _ = es
    assert_result(await run_once({"target": f"{base}/secure", "username": "monitor", "password": "pw"}), "elasticsearch", "success")
    key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
    assert_result(await run_once({"target": f"{base}/secure", "api_key": key}), "elasticsearch", "success")
    out = await run_once({"target": f"{base}/secure", "username": "monitor", "password": "wrong"})
    ev = assert_result(out, "elasticsearch", "auth_failed")
    assert "security_exception: unable to authenticate user [monitor]" in ev.data["reason"]
    assert "wrong" not in ev.message


async def test_timeout_not_es_and_refused(es: tuple[str, list[Any]]) -> None:
    base, _ = es
    out = await run_once({"target": f"{base}/slow", "timeout": 0.3})
    assert "_cluster/health" in assert_result(out, "elasticsearch", "timeout").data["reason"]
    out = await run_once({"target": f"{base}/notes"})
    assert "expected a JSON object" in assert_result(out, "elasticsearch", "mismatch").data["reason"]
    out = await run_once({"target": f"http://127.0.0.1:{free_port()}"})
    assert "refused" in assert_result(out, "elasticsearch", "connection_failed").data["reason"].lower()


async def test_silent_listener_is_timeout(silent_port: int) -> None:
    out = await run_once({"target": f"http://127.0.0.1:{silent_port}", "timeout": 0.4})
    assert "requesting _cluster/health" in assert_result(out, "elasticsearch", "timeout").data["reason"]


async def test_https_with_ca(tls_ca: TlsFiles) -> None:
    runner = web.AppRunner(make_app([]), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_ca.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        ok = await run_once({"target": f"https://localhost:{port}/green", "tls_ca_file": tls_ca.ca_file})
        bad = await run_once({"target": f"https://localhost:{port}/green"})
    finally:
        await runner.cleanup()
    assert_result(ok, "elasticsearch", "success")
    assert "certificate verification failed" in assert_result(bad, "elasticsearch", "tls_error").data["reason"]


def test_dns_failure_is_a_result() -> None:
    out = run_isolated({"type": "elasticsearch", "target": "http://es.invalid:9200"})
    assert next(r for r in out if r.get("name") == "elasticsearch.up")["tags"]["result"] == "dns_error"


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"target": "es:9200"}, "expected an http:// or https:// URL"),
        ({"target": "http://es:9200", "fail_on_status": "green"}, "fail_on_status: must be one of"),
        ({"target": "http://es:9200", "query": {"body": {}}}, "query.index: is required"),
        ({"target": "http://es:9200", "query": {"index": "a/b"}}, "not an index name"),
        ({"target": "http://es:9200", "username": "u", "api_key": "k"}, "not both"),
    ],
)
def test_invalid_config_is_rejected(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "elasticsearch", **raw}, "checks[0]")
    assert where in str(ei.value)


def test_example_config_is_valid() -> None:
    assert len(example_checks("elasticsearch")) >= 2
