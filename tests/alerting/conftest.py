"""Fixtures for the alerting tests: a real aiohttp server on loopback standing in for webhook, DingTalk, WeCom and Feishu endpoints.

The vendors' endpoints cannot be reached from the test machine (loopback only), so this server
implements the parts of their contract the notifiers rely on: it verifies DingTalk's and Feishu's
signatures with the vendors' documented algorithms (written out here independently of the
notifier code), checks the payload shape, and answers like the vendor does (`errcode`/`code`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import unquote_plus

import orjson
import pytest
from aiohttp import web

DING_SECRET = "SEC0123456789abcdef"
FEISHU_SECRET = "feishu-secret-xyz"
WEBHOOK_SECRET = "webhook-secret"


@dataclass
class Received:
    vendor: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    json: Any
    ts: float
    #: what the signature check concluded: True (valid), False (invalid), None (not signed)
    signed_ok: bool | None = None


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    #: per vendor, statuses (or (status, json[, headers])) to answer the next requests with, before the normal answer
    script: dict[str, list[Any]] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, vendor: str) -> list[Received]:
        return [r for r in self.received if r.vendor == vendor]

    async def wait_for(self, vendor: str, n: int = 1, timeout: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.of(vendor)) < n:
                self.event.clear()
                await self.event.wait()
        return self.of(vendor)


def dingtalk_expected_sign(secret: str, timestamp: str) -> str:
    """https://open.dingtalk.com/document/robots/customize-robot-security-settings — HmacSHA256(secret, ts+"\\n"+secret), Base64."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def feishu_expected_sign(secret: str, timestamp: str) -> str:
    """Feishu custom bot: HmacSHA256 keyed with ts+"\\n"+secret over an empty message, Base64."""
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _scripted(recv: Receiver, vendor: str) -> web.Response | None:
    lst = recv.script.get(vendor)
    if not lst:
        return None
    item = lst.pop(0)
    if isinstance(item, int):
        item = (item, {"error": "scripted"})
    status, body, headers = item if len(item) == 3 else (*item, None)
    return web.json_response(body, status=status, headers=headers)


def make_app(recv: Receiver) -> web.Application:
    async def handle(request: web.Request, vendor: str) -> web.Response:
        raw = await request.read()
        try:
            js = orjson.loads(raw)
        except orjson.JSONDecodeError:
            js = None
        r = Received(vendor, request.path, dict(request.query), dict(request.headers), raw, js, time.time())
        ans = _scripted(recv, vendor)
        if ans is None:
            ans = check(r)
        recv.received.append(r)
        recv.event.set()
        return ans

    def check(r: Received) -> web.Response:
        js = r.json
        if r.vendor == "dingtalk":
            if not r.query.get("access_token"):
                return web.json_response({"errcode": 300001, "errmsg": "access_token is empty"})
            if "sign" in r.query:
                ts = r.query["timestamp"]
                # aiohttp already URL-decoded the query; the vendor compares the decoded Base64
                r.signed_ok = r.query["sign"] == dingtalk_expected_sign(DING_SECRET, ts) and abs(time.time() * 1000 - int(ts)) < 3600_000
                if not r.signed_ok:
                    return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
            ok = isinstance(js, dict) and js.get("msgtype") in ("markdown", "text") and isinstance(js.get(js["msgtype"]), dict)
            if not ok or len(r.raw) > 20000:
                return web.json_response({"errcode": 40035, "errmsg": "invalid parameter"})
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        if r.vendor == "wecom":
            if not r.query.get("key"):
                return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
            mt = js.get("msgtype") if isinstance(js, dict) else None
            if mt not in ("markdown", "text") or not isinstance(js.get(mt), dict) or not js[mt].get("content"):
                return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
            limit = 4096 if mt == "markdown" else 2048
            if len(js[mt]["content"].encode()) > limit:
                return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        if r.vendor == "feishu":
            if not isinstance(js, dict) or js.get("msg_type") not in ("interactive", "text"):
                return web.json_response({"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
            if "sign" in js:
                ts = js["timestamp"]
                r.signed_ok = js["sign"] == feishu_expected_sign(FEISHU_SECRET, ts) and abs(time.time() - int(ts)) < 3600
                if not r.signed_ok:
                    return web.json_response({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})
            if len(r.raw) > 20 * 1024:
                return web.json_response({"code": 11246, "msg": "request body too large"})
            return web.json_response({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
        # generic webhook
        sig = r.headers.get("X-Infrawatch-Signature")
        if sig is not None:
            r.signed_ok = sig == "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), r.raw, hashlib.sha256).hexdigest()
            if not r.signed_ok:
                return web.json_response({"error": "bad signature"}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    def handler(vendor: str) -> Any:
        async def h(request: web.Request) -> web.Response:
            return await handle(request, vendor)

        return h

    for vendor in ("dingtalk", "wecom", "feishu", "webhook", "webhook2", "webhook3"):
        app.router.add_post(f"/{vendor}", handler(vendor))
        app.router.add_post(f"/{vendor}/{{rest:.*}}", handler(vendor))
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """An HTTP server on 127.0.0.1 (random port) for every HTTP notifier; `receiver.url + "/dingtalk"` etc."""
    recv = Receiver("")
    runner = web.AppRunner(make_app(recv), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recv.url = f"http://127.0.0.1:{port}"
    yield recv
    await runner.cleanup()


def unq(s: str) -> str:
    return unquote_plus(s)
