"""HTTP probe against real aiohttp servers on loopback: statuses, timeouts, bodies, redirects, TLS expiry, images."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from aiohttp import web

from checks import build_check
from checks.config import ConfigError
from checks.http import HttpCheck
from tests.checks.test_tcp import assert_declared, assert_result, by_name, example_checks, run_isolated
from tests.servers.net import free_port
from tests.servers.tls import TlsFiles

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # 2056 bytes
SLOW = 0.3


def make_app() -> web.Application:
    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="hello infrawatch: status ok")

    async def error(_r: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def hang(_r: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="too late")

    async def slow(_r: web.Request) -> web.Response:
        await asyncio.sleep(SLOW)
        return web.Response(text="slow but fine")

    async def degraded(_r: web.Request) -> web.Response:
        return web.Response(text="service status: degraded; error=db")

    async def redirect(r: web.Request) -> web.Response:
        n = int(r.match_info["n"])
        raise web.HTTPFound("/ok" if n <= 1 else f"/redirect/{n - 1}")

    async def image(_r: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def broken_image(_r: web.Request) -> web.Response:
        return web.Response(text="<html>404 image not found</html>", content_type="text/html")

    async def auth(r: web.Request) -> web.Response:
        good = {"Basic " + base64.b64encode(b"ops:s3cret").decode(), "Bearer tok-123"}
        if r.headers.get("Authorization") not in good:
            return web.Response(status=401, text="unauthorized")
        return web.Response(text="welcome")

    async def echo(r: web.Request) -> web.Response:
        body = await r.text()
        return web.Response(text=f"method={r.method} x-probe={r.headers.get('X-Probe')} ua={r.headers.get('User-Agent')} body={body}")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/error", error)
    app.router.add_get("/hang", hang)
    app.router.add_get("/slow", slow)
    app.router.add_get("/degraded", degraded)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/image.png", image)
    app.router.add_get("/broken.png", broken_image)
    app.router.add_get("/auth", auth)
    app.router.add_route("*", "/echo", echo)
    return app


async def _start(ssl_context: Any = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(), handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def http_base():
    runner, port = await _start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def run_once(raw: dict[str, Any]) -> list[Any]:
    c = build_check({"type": "http", **raw})
    try:
        out = await c.run()
    finally:
        await c.close()
    assert_declared(c, out)
    return out


def phases(out: list[Any]) -> dict[str, float]:
    return {s.tags["phase"]: s.value for s in out if getattr(s, "name", "") == "http.phase_seconds"}


async def test_200_with_timing_phases(http_base: str) -> None:
    port = http_base.rsplit(":", 1)[1]
    target = f"http://localhost:{port}/ok"  # a name, so the DNS phase is real
    out = await run_once({"target": target, "body_must_match": [r"status ok"]})
    assert_result(out, "http", "success")
    s = by_name(out)
    assert s["http.status_code"].value == 200
    assert s["http.response_size_bytes"].value == len("hello infrawatch: status ok")
    assert s["http.redirects"].value == 0
    assert s["http.up"].tags["target"] == target
    p = phases(out)
    assert set(p) == {"dns", "connect", "processing", "transfer"}
    assert p["dns"] > 0 and p["connect"] > 0 and p["processing"] > 0
    assert s["http.first_byte_seconds"].value >= p["processing"]
    assert sum(p.values()) <= s["http.duration_seconds"].value
    assert "http.tls_cert_expiry_days" not in s


async def test_500_is_bad_status(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/error"})
    ev = assert_result(out, "http", "bad_status")
    assert "status 500" in ev.data["reason"] and "expected 2xx" in ev.data["reason"]
    assert by_name(out)["http.status_code"].value == 500
    assert ev.data["status"] == 500


async def test_500_accepted_when_expected(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/error", "expected_status": [500, "2xx"]})
    assert_result(out, "http", "success")


async def test_handler_sleeping_past_the_timeout_is_timeout(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/hang", "timeout": 0.5})
    ev = assert_result(out, "http", "timeout")
    assert "no answer within 0.45s while waiting for the response" in ev.data["reason"]
    assert 0.45 <= by_name(out)["http.duration_seconds"].value < 5


async def test_slow_response_shows_in_duration(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/slow"})
    assert_result(out, "http", "success")
    s = by_name(out)
    assert s["http.duration_seconds"].value >= SLOW
    assert phases(out)["processing"] >= SLOW
    assert s["http.first_byte_seconds"].value >= SLOW


async def test_body_mismatch(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/degraded", "body_must_match": [r"status: ok"]})
    ev = assert_result(out, "http", "mismatch")
    assert "does not match 'status: ok'" in ev.data["reason"]
    out = await run_once({"target": f"{http_base}/degraded", "body_must_not_match": [r"error=\w+"]})
    ev = assert_result(out, "http", "mismatch")
    assert "forbidden" in ev.data["reason"]


async def test_redirect_chain_followed_and_not(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/redirect/3"})
    assert_result(out, "http", "success")
    assert by_name(out)["http.redirects"].value == 3
    assert by_name(out)["http.status_code"].value == 200

    out = await run_once({"target": f"{http_base}/redirect/3", "follow_redirects": False})
    ev = assert_result(out, "http", "bad_status")
    assert "status 302" in ev.data["reason"]

    out = await run_once({"target": f"{http_base}/redirect/3", "follow_redirects": False, "expected_status": ["3xx"]})
    assert_result(out, "http", "success")
    assert by_name(out)["http.redirects"].value == 0

    out = await run_once({"target": f"{http_base}/redirect/3", "max_redirects": 2})
    ev = assert_result(out, "http", "bad_status")
    assert "more than 2 redirects" in ev.data["reason"]


async def test_image_content_type_and_size(http_base: str) -> None:
    out = await run_once({"target": f"{http_base}/image.png", "expect_content_type": "image/*", "min_size": "2KB"})
    assert_result(out, "http", "success")
    assert by_name(out)["http.response_size_bytes"].value == len(PNG)

    out = await run_once({"target": f"{http_base}/broken.png", "expect_content_type": "image/*"})
    ev = assert_result(out, "http", "mismatch")
    assert "'text/html' does not match 'image/*'" in ev.data["reason"]

    out = await run_once({"target": f"{http_base}/image.png", "expect_content_type": "image/png", "min_size": "1MiB"})
    ev = assert_result(out, "http", "mismatch")
    assert f"body is {len(PNG)} bytes, expected at least 1048576" in ev.data["reason"]


async def test_auth_method_headers_body(http_base: str) -> None:
    assert_result(await run_once({"target": f"{http_base}/auth", "username": "ops", "password": "s3cret"}), "http", "success")
    assert_result(await run_once({"target": f"{http_base}/auth", "bearer_token": "tok-123"}), "http", "success")
    out = await run_once({"target": f"{http_base}/auth", "username": "ops", "password": "wrong"})
    ev = assert_result(out, "http", "auth_failed")
    assert "status 401 Unauthorized, expected 2xx (credentials rejected)" in ev.data["reason"]
    assert "wrong" not in ev.message
    out = await run_once({"target": f"{http_base}/auth"})
    assert "(no credentials configured)" in assert_result(out, "http", "auth_failed").data["reason"]
    out = await run_once({"target": f"{http_base}/auth", "expected_status": [401]})  # a login wall that must stay up
    assert_result(out, "http", "success")
    out = await run_once(
        {
            "target": f"{http_base}/echo",
            "method": "post",
            "headers": {"X-Probe": "yes"},
            "body": '{"q": 1}',
            "body_must_match": [r'^method=POST x-probe=yes ua=infrawatch-probe/\S+ body=\{"q": 1\}$'],
        }
    )
    assert_result(out, "http", "success")


async def test_connection_refused() -> None:
    out = await run_once({"target": f"http://127.0.0.1:{free_port()}/"})
    ev = assert_result(out, "http", "connection_failed")
    assert "refused" in ev.data["reason"].lower()


async def test_self_signed_cert_expiring_in_5_days(self_signed_5d: TlsFiles) -> None:
    runner, port = await _start(self_signed_5d.server_context())
    url = f"https://localhost:{port}/ok"
    try:
        bad = await run_once({"target": url})
        unverified = await run_once({"target": url, "tls_verify": False})
        trusted = await run_once({"target": url, "tls_ca_file": self_signed_5d.ca_file})
    finally:
        await runner.cleanup()
    ev = assert_result(bad, "http", "tls_error")
    assert "certificate verification failed: self-signed certificate" in ev.data["reason"]
    # expiry is still reported when the chain does not verify
    assert 4.9 < by_name(bad)["http.tls_cert_expiry_days"].value <= 5.0
    assert by_name(bad)["http.tls_chain_valid"].value == 0
    for out in (unverified, trusted):
        assert_result(out, "http", "success")
        assert 4.9 < by_name(out)["http.tls_cert_expiry_days"].value <= 5.0
        p = phases(out)
        assert p["tls"] > 0 and p["connect"] > 0
    assert by_name(trusted)["http.tls_chain_valid"].value == 1
    assert "http.tls_chain_valid" not in by_name(unverified)  # not verified, so not known


async def test_expired_certificate(self_signed_expired: TlsFiles) -> None:
    runner, port = await _start(self_signed_expired.server_context())
    url = f"https://localhost:{port}/ok"
    try:
        trusted = await run_once({"target": url, "tls_ca_file": self_signed_expired.ca_file})
        unverified = await run_once({"target": url, "tls_verify": False})
    finally:
        await runner.cleanup()
    # trusted issuer, but expired: the chain does not verify
    ev = assert_result(trusted, "http", "tls_error")
    assert "certificate has expired" in ev.data["reason"]
    assert -3.1 < by_name(trusted)["http.tls_cert_expiry_days"].value < -2.9
    assert by_name(trusted)["http.tls_chain_valid"].value == 0
    assert_result(unverified, "http", "success")
    assert -3.1 < by_name(unverified)["http.tls_cert_expiry_days"].value < -2.9


async def test_silent_listener_is_timeout(silent_port: int) -> None:
    out = await run_once({"target": f"http://127.0.0.1:{silent_port}/", "timeout": 0.4})
    ev = assert_result(out, "http", "timeout")
    assert "while waiting for the response" in ev.data["reason"]
    out = await run_once({"target": f"https://127.0.0.1:{silent_port}/", "timeout": 0.4})  # stuck in the TLS handshake
    assert_result(out, "http", "timeout")


async def test_ca_signed_https(tls_ca: TlsFiles) -> None:
    runner, port = await _start(tls_ca.server_context())
    try:
        out = await run_once({"target": f"https://localhost:{port}/redirect/2", "tls_ca_file": tls_ca.ca_file})
    finally:
        await runner.cleanup()
    assert_result(out, "http", "success")
    assert by_name(out)["http.tls_cert_expiry_days"].value > 30
    assert by_name(out)["http.tls_chain_valid"].value == 1
    assert by_name(out)["http.redirects"].value == 2


async def test_mutual_tls(tls_ca: TlsFiles) -> None:
    runner, port = await _start(tls_ca.server_context(require_client_cert=True))
    base = {"target": f"https://localhost:{port}/ok", "tls_ca_file": tls_ca.ca_file}
    try:
        ok = await run_once({**base, "tls_cert_file": tls_ca.client_cert_file, "tls_key_file": tls_ca.client_key_file})
        without = await run_once(base)
    finally:
        await runner.cleanup()
    assert_result(ok, "http", "success")
    assert by_name(ok)["http.tls_chain_valid"].value == 1
    # TLS 1.3: the server rejects the missing client certificate after the handshake, while the request is read
    assert by_name(without)["http.up"].value == 0
    assert by_name(without)["http.up"].tags["result"] in ("tls_error", "connection_failed")


async def test_one_session_reused_across_runs_and_closed(http_base: str) -> None:
    c = build_check({"type": "http", "target": f"{http_base}/ok"})
    assert isinstance(c, HttpCheck)
    await c.run()
    s1 = c._session
    out = await c.run()
    assert c._session is s1 and s1 is not None
    assert_result(out, "http", "success")
    await c.close()
    assert s1.closed


async def test_tls_context_shared_between_checks_with_the_same_settings(tls_ca: TlsFiles) -> None:
    # loading the CA store costs ~30 ms per context: hundreds of http checks must not each build one
    a = build_check({"type": "http", "target": "https://a.example.org/", "tls_ca_file": tls_ca.ca_file})
    b = build_check({"type": "http", "name": "b", "target": "https://b.example.org/", "tls_ca_file": tls_ca.ca_file})
    c = build_check({"type": "http", "name": "c", "target": "https://c.example.org/"})
    assert a.config.ssl_context() is b.config.ssl_context()
    assert a.config.ssl_context() is not c.config.ssl_context()


def test_dns_failure_is_a_result() -> None:
    out = run_isolated({"type": "http", "target": "http://web.invalid/health"})
    up = next(r for r in out if r.get("name") == "http.up")
    assert up["tags"]["result"] == "dns_error"
    ev = next(r for r in out if r["event"])
    assert "cannot resolve 'web.invalid'" in ev["data"]["reason"]


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"target": "ftp://x/"}, "expected an http:// or https:// URL"),
        ({"target": "http://x/", "method": "FETCH"}, "method: must be one of"),
        ({"target": "http://x/", "expected_status": [700]}, "expected_status[0]"),
        ({"target": "http://x/", "expected_status": ["2yy"]}, "expected_status[0]"),
        ({"target": "http://x/", "body_must_match": ["("]}, "body_must_match[0]: invalid regular expression"),
        ({"target": "http://x/", "username": "a", "bearer_token": "b"}, "not both"),
        ({"target": "http://x/", "min_size": "lots"}, "checks[0].min_size"),
    ],
)
def test_invalid_config_is_rejected(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "http", **raw}, "checks[0]")
    assert where in str(ei.value)


def test_password_not_in_config_repr() -> None:
    c = build_check({"type": "http", "target": "http://x/", "username": "u", "password": "hunter2"})
    assert "hunter2" not in repr(c.config)


def test_example_config_is_valid() -> None:
    assert len(example_checks("http")) >= 3


async def test_password_in_url_stays_out_of_tags_and_events() -> None:
    port = free_port()
    out = await run_once({"target": f"http://ops:Url-Secret@127.0.0.1:{port}/x"})
    ev = assert_result(out, "http", "connection_failed")
    assert ev.tags["target"] == by_name(out)["http.up"].tags["target"] == f"http://ops:***@127.0.0.1:{port}/x"
    assert "Url-Secret" not in str(out)
